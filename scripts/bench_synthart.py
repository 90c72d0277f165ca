"""Benchmark SynthArt: generation time, noise ceiling and the pixel-statistics baseline.

    python -m scripts.bench_synthart --out /tmp/synthart_bench --n 10000

Prints one JSON line: wall and CPU seconds for writing ``n`` images (single
process), images/s, the noise-ceiling SRCC, and the pixel baselines' test SRCC
(ridge on global statistics, and on them plus a 4x4 colour thumbnail; fit on
train, alpha picked on val).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--skip-baseline", action="store_true")
    args = p.parse_args(argv)

    from artquant_core.baseline import pixel_baselines_srcc
    from artquant_core.synthart import make_synthart

    wall, cpu = time.perf_counter(), time.process_time()
    path = make_synthart(args.out, args.n, seed=args.seed, size=args.size)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    meta = json.loads((Path(path).parent / "synthart_meta.json").read_text())
    row = {"n": args.n, "size": args.size, "seed": args.seed, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
           "images_per_cpu_s": round(args.n / cpu, 1), "ceiling_srcc": round(meta["ceiling_srcc"], 4),
           "gt_mean": round(meta["gt_mean"], 2), "gt_std": round(meta["gt_std"], 2)}
    if not args.skip_baseline:
        start = time.perf_counter()
        bases = pixel_baselines_srcc(path, ("global", "spatial"))
        base, spatial = bases["global"], bases["spatial"]
        row.update(baseline_test_srcc=round(base["srcc"], 4), baseline_test_plcc=round(base["plcc"], 4),
                   baseline_alpha=base["alpha"], baseline_spatial_test_srcc=round(spatial["srcc"], 4),
                   baseline_spatial_test_plcc=round(spatial["plcc"], 4), baseline_spatial_alpha=spatial["alpha"],
                   baseline_s=round(time.perf_counter() - start, 1))
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
