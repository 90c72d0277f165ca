"""Write the painter's fine-tuning prompt files: ``configs/prompts/painter_{train,eval}.txt``.

The prompts are :func:`artquant_core.synthart.captions.painter_prompts`: SynthArt
captions of a draw no model trains on, split so that every evaluation prompt asks
for a main-subject (colour, shape, position) combination that no training prompt
asks for.

    python -m scripts.make_painter_prompts [--n-train 256 --n-eval 64]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from artquant_core.synthart.captions import painter_prompts

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-train", type=int, default=256)
    parser.add_argument("--n-eval", type=int, default=64)
    parser.add_argument("--out-dir", default=str(ROOT / "configs" / "prompts"))
    args = parser.parse_args(argv)
    train, held_out = painter_prompts(args.n_train, args.n_eval)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "painter_train.txt").write_text("\n".join(train) + "\n")
    (out / "painter_eval.txt").write_text("\n".join(held_out) + "\n")
    print(f"{len(train)} training and {len(held_out)} held-out prompts in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
