"""``artquant tiny-sd3 --out DIR [--seed N]``: write the tiny random-init Stable Diffusion 3 (flow matching).

Load it with ``StableDiffusion3Pipeline.from_pretrained(DIR, text_encoder_3=None, tokenizer_3=None)``
(it has no T5 encoder).
"""

from __future__ import annotations

from artquant_core.cli_args import command_parser


def main(argv: list[str]) -> int:
    parser = command_parser("artquant tiny-sd3", description=__doc__)
    parser.add_argument("--out", required=True, help="folder to write the pipeline into")
    parser.add_argument("--seed", type=int, default=0, help="initialisation seed")
    args = parser.parse_args(argv)
    from alignment.tiny_sd3 import build_tiny_sd3

    print(build_tiny_sd3(args.out, seed=args.seed))
    return 0
