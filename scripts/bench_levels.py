"""Benchmark: vectorised exact soft labels vs a per-row optimiser in the reference's style.

    OMP_NUM_THREADS=1 python -m scripts.bench_levels [--n 100000] [--ref-n 2000] [--seed 0]

Ours: ``score_to_level_probs`` on ``n`` scores spread over the APDD range, ends included.
Reference style: for each row, ``scipy.optimize.minimize(L-BFGS-B)`` of ``|E(mu, sigma) - s|``
over ``(mu, sigma)`` started at ``(s, 1)`` with bounds, on a ``ref-n`` subsample (it is ~1000x
slower). Prints rows/s of both, the ratio, and both error figures (max |E - s|, NaN rows).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from scipy.optimize import minimize
from scipy.stats import norm

from artquant_core.levels import APDD_SCALE, LevelScale, level_probs_to_score, score_to_level_probs


def reference_row(score: float, scale: LevelScale) -> np.ndarray:
    """One row the reference way: bounded quasi-Newton on |expectation - score| over (mu, sigma)."""
    anchors = np.asarray(scale.anchors)

    def probs(params: np.ndarray) -> np.ndarray:
        density = norm.pdf(anchors, loc=params[0], scale=params[1])
        return density / density.sum()

    def objective(params: np.ndarray) -> float:
        return abs(float(probs(params) @ anchors) - score)

    result = minimize(objective, x0=np.array([score, 1.0]), method="L-BFGS-B",
                      bounds=[(scale.min, scale.max), (1e-3, scale.range)])
    with np.errstate(invalid="ignore", divide="ignore"):
        return probs(result.x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--ref-n", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    scale = APDD_SCALE
    rng = np.random.default_rng(args.seed)
    # Mostly uniform, plus the hard cases: exact ends, anchors, and scores a hair inside the ends.
    edges = np.array([scale.min, scale.max, *scale.anchors, scale.min + 1e-9, scale.max - 1e-9,
                      scale.min + 1e-4, scale.max - 1e-4])
    scores = np.concatenate([edges, rng.uniform(scale.min, scale.max, args.n - edges.size)])

    start = time.perf_counter()
    ours = score_to_level_probs(scores, scale)
    ours_s = time.perf_counter() - start
    ours_err = np.abs(level_probs_to_score(ours, scale) - scores)

    subsample = np.concatenate([edges, scores[edges.size:][: args.ref_n - edges.size]])
    start = time.perf_counter()
    ref = np.stack([reference_row(float(s), scale) for s in subsample])
    ref_s = time.perf_counter() - start
    ref_nan = np.isnan(ref).any(axis=1)
    ref_err = np.abs(level_probs_to_score(np.nan_to_num(ref), scale) - subsample)[~ref_nan]

    ours_rate, ref_rate = scores.size / ours_s, subsample.size / ref_s
    report = {
        "ours_rows": int(scores.size), "ours_rows_per_s": round(ours_rate),
        "ours_max_abs_err": float(ours_err.max()), "ours_nan_rows": int(np.isnan(ours).any(axis=1).sum()),
        "ours_max_row_sum_err": float(np.abs(ours.sum(axis=1) - 1).max()),
        "ref_rows": int(subsample.size), "ref_rows_per_s": round(ref_rate, 1),
        "ref_max_abs_err": float(ref_err.max()) if ref_err.size else float("nan"),
        "ref_nan_rows": int(ref_nan.sum()),
        "speedup": round(ours_rate / ref_rate),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
