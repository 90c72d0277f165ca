"""``artquant tiny-sd --out DIR [--seed N]``: write the tiny random-init Stable Diffusion pipeline."""

from __future__ import annotations

import argparse


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="artquant tiny-sd", description=__doc__)
    parser.add_argument("--out", required=True, help="folder to write the pipeline into")
    parser.add_argument("--seed", type=int, default=0, help="initialisation seed")
    args = parser.parse_args(argv)
    from alignment.tiny_sd import build_tiny_sd

    print(build_tiny_sd(args.out, seed=args.seed))
    return 0
