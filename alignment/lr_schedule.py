"""Learning-rate schedules of the alignment trainers, set by hand each update from the number of updates done.

Both read the count from state a checkpoint already holds (the optimizer's step, the stage's step), so a
resumed run continues the schedule where it stopped without a scheduler object to save.
"""

from __future__ import annotations

import math


def linear_warmup_factor(updates_done: int, warmup_steps: int) -> float:
    """The share of the peak rate for the coming update: ``min(1, (n + 1) / warmup_steps)``, n the updates
    already applied; 1 when ``warmup_steps`` is 0 (no warm-up)."""
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, (updates_done + 1) / warmup_steps)


def warmup_cosine_rate(step: int, peak: float, warmup_steps: int, total_steps: int, floor: float = 0.05) -> float:
    """Linear warm-up to ``peak`` over ``warmup_steps``, then a half cosine down to ``floor * peak`` at
    ``total_steps`` (held there after)."""
    if step < warmup_steps:
        return peak * linear_warmup_factor(step, warmup_steps)
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))
