"""``artquant score --model PATH IMAGES... [--describe] [--aspect A] [--format json|table] [--device D] [--dtype T]``.

Scores (and optionally describes) image files with a scorer and prints a table or JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from artquant_core.cli_args import add_device_flags, command_parser, positive_int, resolve_device, resolve_dtype


def _parser() -> argparse.ArgumentParser:
    p = command_parser("artquant score", description=__doc__)
    p.add_argument("--model", required=True,
                   help="scorer folder, LoRA adapter folder, hub id, or 'tiny' for the embedded default")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--describe", action="store_true", help="also generate the hierarchical description")
    p.add_argument("--aspect", default=None, help="attribute prompt, e.g. composition (default: overall score)")
    p.add_argument("--format", choices=("json", "table"), default="table", help="output format")
    p.add_argument("--batch-size", type=positive_int, default=16, help="images per scoring batch")
    p.add_argument("--max-new-tokens", type=positive_int, default=128, help="length cap of each description")
    add_device_flags(p)
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


def _score_batches(scorer, images: list, args: argparse.Namespace, device: str, dtype) -> tuple[list, list, list]:
    """Scores, spreads and level probabilities of every image, one progress bar over the batches."""
    import torch
    from tqdm.auto import tqdm

    from artquant_core.cli_args import autocast

    scores, stds, probs = [], [], []
    with torch.no_grad(), autocast(device, dtype):
        for start in tqdm(range(0, len(images), args.batch_size), desc="score", unit="batch", leave=False):
            out = scorer.score(images[start:start + args.batch_size], aspect=args.aspect)
            scores += out.score.float().cpu().tolist()
            stds += out.std.float().cpu().tolist()
            probs += out.level_probs.float().cpu().tolist()
    return scores, stds, probs


def _describe(scorer, images: list, args: argparse.Namespace) -> list[str]:
    descriptions: list[str] = []
    for start in range(0, len(images), args.batch_size):
        descriptions += scorer.describe(images[start:start + args.batch_size], max_new_tokens=args.max_new_tokens)
    return descriptions


def _print_rows(rows: list[dict], fmt: str) -> None:
    if fmt == "json":
        print(json.dumps(rows, indent=2))
        return
    width = max(len("image"), *(len(r["image"]) for r in rows))
    print(f"{'image':<{width}}  {'score':>7}  {'std':>6}")
    for r in rows:
        print(f"{r['image']:<{width}}  {r['score']:>7.3f}  {r['std']:>6.3f}")
        if "description" in r:
            print(f"  {r['description']}")


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    images = [_load_image(p) for p in args.images]  # bad paths fail before the model loads
    from transformers.utils import logging as hf_logging

    from artquant_core.tiny import load_scorer

    hf_logging.disable_progress_bar()
    scorer = load_scorer(args.model).to(device).eval()
    scores, stds, probs = _score_batches(scorer, images, args, device, dtype)
    descriptions = _describe(scorer, images, args) if args.describe else None
    rows = []
    for i, path in enumerate(args.images):
        row = {"image": path, "score": round(scores[i], 6), "std": round(stds[i], 6),
               "level_probs": {w: round(p, 6) for w, p in zip(scorer.scale.words, probs[i])}}
        if args.aspect:
            row["aspect"] = args.aspect
        if descriptions is not None:
            row["description"] = descriptions[i]
        rows.append(row)
    _print_rows(rows, args.format)
    return 0
