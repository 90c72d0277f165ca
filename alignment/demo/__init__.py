"""``artquant demo``: the end-to-end run on the embedded defaults (``run``), its settings and resumable state
(``config``) and what it hands back, ``summary.json`` and ``report.html`` (``report``, ``report_html``).

The demo reaches all three packages (data and scorer, reward, fine-tuning), so it lives in the top one.
"""
