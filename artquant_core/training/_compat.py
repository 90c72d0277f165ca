"""Temporary bridges until artquant_core.records / metrics land (the real modules win when present)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace


def load_records(path):
    try:
        from artquant_core.records import load_records as real
    except ImportError:
        real = None
    if real is not None:
        return real(path)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"records file not found: {path}")
    rows = json.loads(path.read_text())
    keys = ("id", "image", "gt_score", "level_probs", "conversations", "task_type", "attributes", "std")
    return [SimpleNamespace(**{k: r.get(k) for k in keys}) for r in rows]


def evaluate_scores(pred, gt) -> dict:
    try:
        from artquant_core.metrics import evaluate_scores as real
    except ImportError:
        real = None
    if real is not None:
        return real(pred, gt)
    import numpy as np
    from scipy import stats

    p, g = np.asarray(pred, float), np.asarray(gt, float)
    return {"srcc": float(stats.spearmanr(p, g)[0]), "plcc": float(stats.pearsonr(p, g)[0]),
            "mse": float(((p - g) ** 2).mean()), "mae": float(np.abs(p - g).mean()), "n": len(p)}
