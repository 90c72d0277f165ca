"""Write the painter's fine-tuning prompt files: ``configs/prompts/painter_{train,eval}.txt``.

Prompts are SynthArt captions (content only) of a draw no model trains on
(seed 6000). A caption goes to the evaluation file when its main subject's
(colour, shape, position) combination is held out — ``(colour + shape +
position) % 3 == 0`` over the indices of :mod:`artquant_core.synthart.captions`'
word lists — so every evaluation prompt asks for a combination that no training
prompt asks for (colours, shapes and positions each still appear in both files).

    python -m scripts.make_painter_prompts [--n-train 256 --n-eval 64]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from artquant_core.synthart.attributes import SHAPES
from artquant_core.synthart.captions import COLOUR_WORDS

ROOT = Path(__file__).resolve().parents[1]
PROMPT_SEED = 6000


def main_subject(caption: str) -> tuple[str, str, str]:
    """(colour, shape, position phrase) of a caption's main subject."""
    head = caption.split(",", 1)[0].split()  # ["a", colour, shape, *position]
    return head[1], head[2], " ".join(head[3:])


def is_held_out(caption: str) -> bool:
    colour, shape, position = main_subject(caption)
    positions = sorted({"in the centre", "at the upper centre", "at the lower centre", "on the left", "on the right",
                        "on the upper left", "on the upper right", "on the lower left", "on the lower right"})
    return (COLOUR_WORDS.index(colour) + SHAPES.index(shape) + positions.index(position)) % 3 == 0


def painter_prompts(n_train: int, n_eval: int, seed: int = PROMPT_SEED) -> tuple[list[str], list[str]]:
    """Unique training and held-out captions, in draw order."""
    from artquant_core.synthart.dataset import synth_item

    train: dict[str, None] = {}
    held_out: dict[str, None] = {}
    index = 0
    while len(train) < n_train or len(held_out) < n_eval:
        text = synth_item(seed, index, None)["caption"]
        target = held_out if is_held_out(text) else train
        if len(target) < (n_eval if target is held_out else n_train):
            target[text] = None
        index += 1
    return list(train), list(held_out)


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
