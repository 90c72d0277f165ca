"""Scatter plot of ground truth against predicted scores, with the fitted logistic and the metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from artquant_core.metrics import evaluate_scores, logistic4
from artquant_core.plots import _pyplot, save_figure


def plot_score_scatter(pred: Any, gt: Any, path: str | Path, title: str = "",
                       metrics: dict[str, Any] | None = None) -> Path:
    """Write a PNG: one dot per item (x = prediction, y = ground truth), the 4-parameter
    logistic fitted by :func:`evaluate_scores`, the identity line, and SRCC / PLCC /
    PLCC-after-fit / MAE / n in the title. ``metrics`` reuses an earlier ``evaluate_scores``."""
    metrics = metrics or evaluate_scores(pred, gt)
    pred = np.asarray(pred.detach().cpu() if hasattr(pred, "detach") else pred, dtype=np.float64).reshape(-1)
    gt = np.asarray(gt.detach().cpu() if hasattr(gt, "detach") else gt, dtype=np.float64).reshape(-1)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 5.0), dpi=100)
    ax.scatter(pred, gt, s=10, alpha=0.6, edgecolors="none", label="items")
    low, high = min(pred.min(), gt.min()), max(pred.max(), gt.max())
    ax.plot([low, high], [low, high], ls="--", lw=0.8, color="grey", label="y = x")
    if metrics.get("logistic_params"):
        xs = np.linspace(pred.min(), pred.max(), 200)
        ax.plot(xs, logistic4(xs, *metrics["logistic_params"]), color="C3", lw=1.5, label="logistic fit")
    ax.set_xlabel("predicted score")
    ax.set_ylabel("ground-truth score")
    fit = "" if metrics.get("logistic_fit_ok", True) else " (fit failed)"
    summary = (f"SRCC {metrics['srcc']:.3f}  PLCC {metrics['plcc']:.3f}  PLCC-fit {metrics['plcc_logistic']:.3f}"
               f"{fit}\nMAE {metrics['mae']:.3f}  n {metrics['n']}")
    ax.set_title(f"{title}\n{summary}" if title else summary, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return save_figure(fig, path)
