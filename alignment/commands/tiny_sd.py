"""``artquant tiny-sd --out DIR [--random-init] [--seed N]``: write the tiny Stable Diffusion pipeline.

By default the shipped painter (a tiny SD trained on SynthArt captions by
``scripts/pretrain_tiny_sd.py``); ``--random-init`` writes the random-init model.
"""

from __future__ import annotations

from artquant_core.cli_args import command_parser


def main(argv: list[str]) -> int:
    parser = command_parser("artquant tiny-sd", description=__doc__)
    parser.add_argument("--out", required=True, help="folder to write the pipeline into")
    parser.add_argument("--random-init", action="store_true",
                        help="write the random-init tiny SD instead of the shipped painter")
    parser.add_argument("--seed", type=int, default=0, help="initialisation seed (with --random-init)")
    args = parser.parse_args(argv)
    from alignment.tiny_sd import build_tiny_sd

    print(build_tiny_sd(args.out, seed=args.seed, pretrained=not args.random_init))  # FileNotFoundError: exit 1
    return 0
