"""Score-prediction metrics: SRCC, PLCC, PLCC after the standard 4-parameter logistic fit, MSE, MAE.

The logistic (VQEG) fit maps predictions onto the ground-truth scale before PLCC, so
PLCC measures agreement rather than linearity of the raw outputs:
``f(x) = (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.stats import pearsonr, spearmanr


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """The 4-parameter logistic: from ``b2`` (x -> -inf) to ``b1`` (x -> +inf), centre ``b3``, width ``|b4|``."""
    z = np.clip(-(np.asarray(x, dtype=np.float64) - b3) / max(abs(b4), 1e-12), -500, 500)
    return (b1 - b2) / (1.0 + np.exp(z)) + b2


def _as_vector(values: Any, name: str) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a sequence of numbers: {exc}") from exc
    if array.ndim != 1:
        array = array.reshape(-1) if array.ndim == 2 and 1 in array.shape else array
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    bad = ~np.isfinite(array)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{index}] is {array[index]} (NaN or inf)")
    return array


def fit_logistic(pred: np.ndarray, gt: np.ndarray) -> np.ndarray | None:
    """Least-squares 4-parameter logistic from ``pred`` to ``gt``; ``None`` if the fit fails."""
    if pred.size <= 4:  # four parameters: nothing left to fit
        return None
    rising = pearsonr(pred, gt).statistic >= 0
    high, low = (gt.max(), gt.min()) if rising else (gt.min(), gt.max())
    spread = pred.std() or 1.0
    # Start from the ground truth's range and the predictions' centre and spread (scale-free).
    start = [high, low, float(np.median(pred)), spread / 2]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            params, _ = curve_fit(logistic4, pred, gt, p0=start, maxfev=20000)
    except (RuntimeError, ValueError, TypeError):
        return None
    fitted = logistic4(pred, *params)
    if not np.all(np.isfinite(params)) or not np.all(np.isfinite(fitted)) or np.ptp(fitted) == 0:
        return None
    return params


def evaluate_scores(pred: Any, gt: Any) -> dict[str, Any]:
    """Metrics of predicted scores ``pred`` against ground truth ``gt`` (same length, >= 3).

    Returns ``srcc``, ``plcc`` (``scipy.stats.spearmanr`` / ``pearsonr``), ``plcc_logistic``
    (PLCC of the logistic-fitted predictions, negative when the fitted curve falls; if the fit fails, the plain PLCC and
    ``logistic_fit_ok = False``), ``logistic_params`` (b1..b4 or ``None``), ``mse``, ``mae``, ``n``.
    Raises ``ValueError`` on a length mismatch, NaN/inf (naming the index), fewer than 3
    items, or constant input (naming which argument).
    """
    pred, gt = _as_vector(pred, "pred"), _as_vector(gt, "gt")
    if pred.shape != gt.shape:
        raise ValueError(f"pred has {pred.size} values but gt has {gt.size}")
    if pred.size < 3:
        raise ValueError(f"need at least 3 items to compute correlations, got {pred.size}")
    for name, values in (("pred", pred), ("gt", gt)):
        if np.ptp(values) == 0:
            raise ValueError(f"{name} is constant (every value is {values[0]:g}): correlations are undefined")
    plcc = float(pearsonr(pred, gt).statistic)
    params = fit_logistic(pred, gt)
    plcc_logistic = plcc
    if params is not None:
        # The fit maps pred onto gt, so its PLCC is positive even for a reversed predictor;
        # keep the sign of the fitted curve's direction so it agrees with SRCC and PLCC.
        direction = 1.0 if params[0] >= params[1] else -1.0
        plcc_logistic = direction * float(pearsonr(logistic4(pred, *params), gt).statistic)
    return {
        "srcc": float(spearmanr(pred, gt).statistic),
        "plcc": plcc,
        "plcc_logistic": plcc_logistic,
        "logistic_fit_ok": params is not None,
        "logistic_params": None if params is None else [float(p) for p in params],
        "mse": float(np.mean((pred - gt) ** 2)),
        "mae": float(np.mean(np.abs(pred - gt))),
        "n": int(pred.size),
    }
