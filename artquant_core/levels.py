"""Level scales and the score <-> level-distribution maps behind the scorer's soft labels.

A scorer answers with one of a few level words (``excellent … bad``); each word has
a score anchor. Training turns a human score ``s`` into a soft label over the words:
a Gaussian ``N(mu, sigma)`` evaluated at the anchors and normalised, with ``mu``
chosen so that the label's expectation is exactly ``s``.

Spread rule. ``sigma`` is in score units. By default it is fixed for every row:
``default_spread(scale) = (max anchor - min anchor) / 9`` — 1.0 on the APDD 1–10
scale (the reference implementation's starting sigma) and 0.444 on the Q-Align 1–5
scale. Pass ``spread=`` for another fixed value, or ``std=`` (one value per row) to
use per-record rater spreads as DeQA-Score does; unlike DeQA-Score's affine
correction, the label stays an exact normalised Gaussian and only ``mu`` moves.

Solver. With ``sigma`` fixed the label is an exponential tilt of the anchors in
``mu`` (``log p_i = (a_i mu - a_i^2 / 2) / sigma^2 + const``), so its expectation
``E(mu)`` is strictly increasing with derivative ``Var(mu) / sigma^2``. Every row's
``mu`` is one 1-D root, found for all rows at once: a bracket grown by doubling,
then Newton steps that fall back to bisection whenever they leave the bracket.
``E`` only reaches the end anchors as ``mu -> ±inf``, so a score exactly at an end
gets the limit, a one-hot label. Higher scores never move mass to lower levels
(first-order stochastic dominance), because the tilt is monotone in ``mu``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

# |E - s| the solver aims for, relative to the largest |anchor| (float64 resolves ~2e-16 of it);
# the public guarantee is 1e-6 absolute.
SOLVER_TOLERANCE = 1e-12
_MAX_ITERATIONS = 200


@dataclass(frozen=True)
class LevelScale:
    """Level words and their score anchors, in the order the scorer's logits use.

    Anchors need not be evenly spaced or sorted, only distinct and finite.
    """

    words: tuple[str, ...]
    anchors: tuple[float, ...]

    def __post_init__(self) -> None:
        words, anchors = tuple(self.words), tuple(float(a) for a in self.anchors)
        object.__setattr__(self, "words", words)
        object.__setattr__(self, "anchors", anchors)
        if len(words) != len(anchors):
            raise ValueError(f"LevelScale: {len(words)} words but {len(anchors)} anchors")
        if len(words) < 2:
            raise ValueError(f"LevelScale needs at least 2 levels, got {len(words)}")
        if len(set(words)) != len(words) or not all(isinstance(w, str) and w for w in words):
            raise ValueError(f"LevelScale words must be distinct non-empty strings, got {words}")
        if not all(np.isfinite(anchors)):
            raise ValueError(f"LevelScale anchors must be finite, got {anchors}")
        if len(set(anchors)) != len(anchors):
            raise ValueError(f"LevelScale anchors must be distinct, got {anchors}")

    def __len__(self) -> int:
        return len(self.words)

    @property
    def min(self) -> float:
        return min(self.anchors)

    @property
    def max(self) -> float:
        return max(self.anchors)

    @property
    def range(self) -> float:
        return self.max - self.min


APDD_SCALE = LevelScale(("excellent", "good", "fair", "poor", "bad"), (10.0, 7.5, 5.0, 3.5, 1.0))
QALIGN_SCALE = LevelScale(("excellent", "good", "fair", "poor", "bad"), (5.0, 4.0, 3.0, 2.0, 1.0))


def default_spread(scale: LevelScale) -> float:
    """The default fixed sigma in score units: a ninth of the anchor range (1.0 on APDD)."""
    return scale.range / 9.0


def _as_float64(values: Any, name: str) -> tuple[np.ndarray, Any]:
    """``values`` as a 1-D float64 numpy array, plus what to convert results back to."""
    if isinstance(values, torch.Tensor):
        kind = ("torch", values.dtype if values.is_floating_point() else torch.float32, values.device)
        array = values.detach().to("cpu", torch.float64).numpy()
    else:
        array = np.asarray(values)
        if array.dtype.kind not in "fiub":
            raise ValueError(f"{name} must be numeric, got dtype {array.dtype}")
        kind = ("numpy", array.dtype if array.dtype.kind == "f" else np.dtype(np.float64), None)
        array = array.astype(np.float64)
    return array, kind


def _restore(array: np.ndarray, kind: Any) -> Any:
    library, dtype, device = kind
    if library == "torch":
        return torch.from_numpy(array).to(device=device, dtype=dtype)
    return array.astype(dtype, copy=False)


def _check_scores(scores: np.ndarray, scale: LevelScale) -> None:
    if scores.ndim != 1:
        raise ValueError(f"scores must be 1-D (N,), got shape {scores.shape}")
    bad = ~((scores >= scale.min) & (scores <= scale.max))  # NaN fails both comparisons
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(f"scores[{index}] = {float(scores[index])!r} is outside the scale's range "
                         f"[{scale.min:g}, {scale.max:g}] (or NaN)")


def _sigmas(n: int, scale: LevelScale, spread: float | None, std: Any) -> np.ndarray:
    if std is None:
        sigma = default_spread(scale) if spread is None else float(spread)
        if not (np.isfinite(sigma) and sigma > 0):
            raise ValueError(f"spread must be a positive finite number, got {spread!r}")
        return np.full(n, sigma)
    sigmas, _ = _as_float64(std, "std")
    if sigmas.ndim > 1 or (sigmas.ndim == 1 and sigmas.shape[0] != n):
        raise ValueError(f"std must be a scalar or have one value per score ({n}), got shape {sigmas.shape}")
    sigmas = np.broadcast_to(sigmas, (n,)).astype(np.float64)
    bad = ~(np.isfinite(sigmas) & (sigmas > 0))
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(f"std[{index}] = {float(sigmas[index])!r} must be positive and finite")
    return sigmas


def _tilted(mu: np.ndarray, anchors: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, ...]:
    """Level probabilities, expectation and variance for each row's ``mu``.

    The logits are written as ``(a mu - a^2/2) / sigma^2`` (the ``mu^2`` term cancels in the
    normalisation) so that a huge ``|mu|`` never subtracts two huge squares.
    """
    logits = (mu[:, None] * anchors - 0.5 * anchors ** 2) / (sigma[:, None] ** 2)
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    mean = probs @ anchors
    var = np.einsum("nl,nl->n", probs, (anchors - mean[:, None]) ** 2)
    return probs, mean, var


def _solve_mu(target: np.ndarray, anchors: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """The ``mu`` with ``E(mu) = target`` for every row (targets strictly inside the range)."""
    width = np.full_like(target, anchors.max() - anchors.min())
    low, high = target - width, target + width
    # Grow each side of the bracket by doubling until it contains the root (E is monotone).
    for _ in range(128):
        _, e_low, _ = _tilted(low, anchors, sigma)
        _, e_high, _ = _tilted(high, anchors, sigma)
        grow_low, grow_high = e_low > target, e_high < target
        if not (grow_low.any() or grow_high.any()):
            break
        width = np.where(grow_low | grow_high, width * 2.0, width)
        low = np.where(grow_low, low - width, low)
        high = np.where(grow_high, high + width, high)
    mu = np.clip(target, low, high)
    tolerance = SOLVER_TOLERANCE * max(1.0, float(np.abs(anchors).max()))
    active = np.ones(target.shape, dtype=bool)
    for _ in range(_MAX_ITERATIONS):
        index = np.flatnonzero(active)
        if index.size == 0:
            break
        m, t, s, lo, hi = mu[index], target[index], sigma[index], low[index], high[index]
        _, mean, var = _tilted(m, anchors, s)
        error = mean - t
        done = np.abs(error) <= tolerance
        lo = np.where(error < 0, m, lo)
        hi = np.where(error > 0, m, hi)
        slope = var / s ** 2
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            newton = m - error / slope
        # Newton where it stays strictly inside the bracket, bisection otherwise.
        inside = np.isfinite(newton) & (newton > lo) & (newton < hi)
        step = np.where(inside, newton, 0.5 * (lo + hi))
        stalled = (hi - lo) <= 4 * np.finfo(float).eps * np.maximum(np.abs(lo), np.abs(hi))
        done |= stalled
        mu[index] = np.where(done, m, step)
        low[index], high[index] = lo, hi
        active[index[done]] = False
    return mu


def score_to_level_probs(scores: Any, scale: LevelScale = APDD_SCALE, spread: float | None = None,
                         std: Any = None) -> Any:
    """Soft labels ``(N, len(scale))`` whose expectations equal ``scores`` (see module doc).

    ``scores``: 1-D numpy array / torch tensor / sequence (a scalar counts as one row), every
    value inside ``[scale.min, scale.max]`` (ends included: they give one-hot labels).
    ``spread``: fixed sigma in score units (default :func:`default_spread`). ``std``: per-row
    sigma (``(N,)`` or scalar), overriding ``spread``. Returns the same kind as ``scores``
    (numpy stays numpy with its float dtype; torch keeps dtype and device, computed in float64
    numpy on the CPU: labels are data, so the result carries no gradient).
    Raises ``ValueError`` naming the first score that is NaN or out of range.
    """
    values, kind = _as_float64(scores, "scores")
    if values.ndim == 0:
        values = values.reshape(1)
    _check_scores(values, scale)
    anchors = np.asarray(scale.anchors, dtype=np.float64)
    sigma = _sigmas(values.shape[0], scale, spread, std)
    probs = np.zeros((values.shape[0], len(scale)), dtype=np.float64)
    at_max, at_min = values == scale.max, values == scale.min
    probs[at_max, int(np.argmax(anchors))] = 1.0
    probs[at_min, int(np.argmin(anchors))] = 1.0
    interior = np.flatnonzero(~(at_max | at_min))
    if interior.size:
        mu = _solve_mu(values[interior], anchors, sigma[interior])
        probs[interior] = _tilted(mu, anchors, sigma[interior])[0]
    return _restore(probs, kind)


def _check_probs(probs: Any, scale: LevelScale) -> None:
    if probs.shape[-1] != len(scale):
        raise ValueError(f"level probabilities must have {len(scale)} columns (one per level of "
                         f"{scale.words}), got shape {tuple(probs.shape)}")


def level_probs_to_score(probs: Any, scale: LevelScale = APDD_SCALE) -> Any:
    """Expected score ``sum_i p_i a_i`` over the last axis (differentiable for torch input)."""
    _check_probs(probs, scale)
    if isinstance(probs, torch.Tensor):
        anchors = torch.tensor(scale.anchors, dtype=probs.dtype if probs.is_floating_point() else torch.float32,
                               device=probs.device)
        return (probs * anchors).sum(dim=-1)
    return np.asarray(probs, dtype=np.float64) @ np.asarray(scale.anchors)


def expected_score_and_spread(probs: torch.Tensor, anchors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Expected score ``mu = sum_i p_i a_i`` and spread ``sqrt(sum_i p_i (a_i - mu)^2)`` over the last axis.

    The one rule of the toolkit (scorer read-out, training losses, :func:`level_probs_to_std`):
    rows are renormalised to sum to 1, and a zero variance gives a spread of exactly 0 with a
    finite (zero) gradient — ``sqrt`` has an infinite slope at 0, so zero variances are routed
    around it. Differentiable; computed in ``probs``' dtype.
    """
    p = probs / probs.sum(dim=-1, keepdim=True).clamp_min(1e-30)
    anchors = anchors.to(device=p.device, dtype=p.dtype)
    mu = (p * anchors).sum(dim=-1)
    var = (p * (anchors - mu.unsqueeze(-1)) ** 2).sum(dim=-1).clamp_min(0.0)
    positive = var > 0
    spread = torch.where(positive, torch.sqrt(torch.where(positive, var, torch.ones_like(var))), torch.zeros_like(var))
    return mu, spread


def level_probs_to_std(probs: Any, scale: LevelScale = APDD_SCALE) -> Any:
    """Spread ``sqrt(sum_i p_i (a_i - mu)^2)`` with ``mu`` the expected score (a confidence)."""
    if isinstance(probs, torch.Tensor):
        _check_probs(probs, scale)
        dtype = probs.dtype if probs.is_floating_point() else torch.float32
        return expected_score_and_spread(probs.to(dtype), torch.tensor(scale.anchors, dtype=dtype))[1]
    mean = level_probs_to_score(probs, scale)
    probs = np.asarray(probs, dtype=np.float64)
    var = np.einsum("...l,...l->...", probs, (np.asarray(scale.anchors) - np.asarray(mean)[..., None]) ** 2)
    return np.sqrt(np.maximum(var, 0.0))
