"""``artquant synthart --out DIR --n N [--seed S] [--size PX] [--rater NAME]``: write the SynthArt data set."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from artquant_core.cli_args import UsageError, command_parser
from artquant_core.synthart.attributes import SCORE_NAMES


def _parser() -> argparse.ArgumentParser:
    p = command_parser("artquant synthart", description="Write the procedural SynthArt data set (images + records).")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--n", type=int, required=True, help="number of paintings (>= 3)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (>= 16)")
    p.add_argument("--rater", default="overall", choices=SCORE_NAMES,
                   help="score used as gt_score: overall or one attribute, e.g. composition")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.n < 3:
        raise UsageError(f"--n must be >= 3 (train, val and test need one image each), got {args.n}")
    if args.size < 16:
        raise UsageError(f"--size must be >= 16 pixels, got {args.size}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise NotADirectoryError(f"--out {args.out!r} exists and is a file, not a directory")

    from tqdm.auto import tqdm

    from artquant_core.synthart import make_synthart

    start = time.perf_counter()
    with tqdm(total=args.n, desc="synthart", unit="img") as bar:
        path = make_synthart(args.out, args.n, seed=args.seed, size=args.size, progress=bar.update,
                             rater=args.rater)
    meta = json.loads((Path(path).parent / "synthart_meta.json").read_text())
    print(f"wrote {path}: n={args.n} size={args.size} seed={args.seed} "
          f"ceiling_srcc={meta['ceiling_srcc']:.3f} in {time.perf_counter() - start:.1f}s")
    return 0
