"""``artquant score --model PATH IMAGES... [--describe] [--aspect A] [--format json|table]``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="artquant score", description="Score (and describe) images with a scorer.")
    p.add_argument("--model", required=True,
                   help="scorer folder, LoRA adapter folder, hub id, or 'tiny' for the embedded default")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--describe", action="store_true", help="also generate the hierarchical description")
    p.add_argument("--aspect", default=None, help="attribute prompt, e.g. composition (default: overall score)")
    p.add_argument("--format", choices=("json", "table"), default="table")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=128)
    return p


def _load_image(path: str):
    try:
        from artquant_core.images import load_image
    except ImportError:
        load_image = None
    if not Path(path).is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    if load_image is not None:
        return load_image(path)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"image {path} cannot be read: {exc}") from None


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    images = [_load_image(p) for p in args.images]  # bad paths fail before the model loads
    from transformers.utils import logging as hf_logging

    from artquant_core.tiny import load_scorer

    hf_logging.disable_progress_bar()
    scorer = load_scorer(args.model).eval()
    out = scorer.score(images, aspect=args.aspect, batch_size=args.batch_size)
    descriptions = None
    if args.describe:
        descriptions = []
        for start in range(0, len(images), args.batch_size):
            descriptions += scorer.describe(images[start:start + args.batch_size], max_new_tokens=args.max_new_tokens)
    rows = []
    for i, path in enumerate(args.images):
        row = {"image": path, "score": round(float(out.score[i]), 6), "std": round(float(out.std[i]), 6),
               "level_probs": {w: round(float(p), 6) for w, p in zip(scorer.scale.words, out.level_probs[i])}}
        if args.aspect:
            row["aspect"] = args.aspect
        if descriptions is not None:
            row["description"] = descriptions[i]
        rows.append(row)
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    else:
        width = max(len("image"), *(len(r["image"]) for r in rows))
        print(f"{'image':<{width}}  {'score':>7}  {'std':>6}")
        for r in rows:
            print(f"{r['image']:<{width}}  {r['score']:>7.3f}  {r['std']:>6.3f}")
            if "description" in r:
                print(f"  {r['description']}")
    return 0
