"""``artquant eval``: metrics + scatter plot for a predictions file or a scorer on records.

    artquant eval --pred PREDICTIONS --gt RECORDS [--out DIR]
    artquant eval --model PATH --data RECORDS [--out DIR] [--batch-size 16] [--aspect NAME]
                  [--device auto] [--dtype auto]

Predictions: a JSON list of ``{"id", "score"}``, the same as JSONL, or a CSV with an
``id,score`` header. They are matched to the score records of ``RECORDS`` by id.
Writes ``DIR/metrics.json`` and ``DIR/scatter.png`` (and ``DIR/predictions.jsonl`` with
``--model``) and prints the metrics as JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

from artquant_core.cli_args import (UsageError, add_device_flags, command_parser, positive_int, resolve_device,
                                    resolve_dtype)
from artquant_core.levels import APDD_SCALE, QALIGN_SCALE
from artquant_core.metrics import evaluate_scores
from artquant_core.records import Record, load_records
from artquant_core.scatter import plot_score_scatter

SCALES = {"apdd": APDD_SCALE, "qalign": QALIGN_SCALE}


def read_predictions(path: str | Path) -> dict[str, float]:
    """``{id: score}`` from a JSON list / JSONL / CSV predictions file (errors name file and row)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"predictions file not found: {path}")
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        if rows and not {"id", "score"} <= set(rows[0]):
            raise ValueError(f"{path}: CSV needs an 'id,score' header, got {list(rows[0])}")
    elif text.lstrip().startswith("["):
        rows = json.loads(text)
    else:
        try:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not a JSON list, JSONL or CSV predictions file: {exc}") from exc
    predictions: dict[str, float] = {}
    for index, row in enumerate(rows):
        if not isinstance(row, dict) or "id" not in row or "score" not in row:
            raise ValueError(f"{path}: prediction {index} must have 'id' and 'score', got {row!r}"[:300])
        try:
            score = float(row["score"])
        except (TypeError, ValueError):
            score = math.nan
        if not math.isfinite(score):
            raise ValueError(f"{path}: prediction {index} (id {row['id']!r}): score {row['score']!r} "
                             "is not a finite number")
        key = str(row["id"])
        if key in predictions:
            raise ValueError(f"{path}: prediction {index}: duplicate id {key!r}")
        predictions[key] = score
    if not predictions:
        raise ValueError(f"{path}: no predictions")
    return predictions


def _score_records(path: str, image_root: str | None, scale_name: str, check_images: bool) -> list[Record]:
    records = [r for r in load_records(path, image_root=image_root, check_images=check_images,
                                       scale=SCALES[scale_name]) if r.task_type == "score"]
    if not records:
        raise ValueError(f"{path}: no score records (task_type 'score' with gt_score)")
    seen: set[str] = set()
    for record in records:
        if record.id in seen:
            raise ValueError(f"{path}: two score records share the id {record.id!r}")
        seen.add(record.id)
    return records


def match_predictions(predictions: dict[str, float], records: list[Record], pred_path: str) -> list[float]:
    missing = [r.id for r in records if r.id not in predictions]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(f"{pred_path}: no prediction for {len(missing)} of {len(records)} score records: {shown}")
    extra = len(predictions) - len(records)
    if extra > 0:
        print(f"artquant eval: note: {extra} predictions have ids not among the score records; ignored",
              file=sys.stderr)
    return [predictions[r.id] for r in records]


def score_with_model(model_path: str, records: list[Record], batch_size: int, aspect: str | None,
                     device: str = "cpu", dtype=None) -> list[float]:
    """Score the records' images with a trained scorer (loaded lazily: heavy imports), one bar over batches."""
    import torch
    from tqdm.auto import tqdm

    from artquant_core.cli_args import autocast
    from artquant_core.images import load_image
    from artquant_core.tiny import load_scorer

    dtype = torch.float32 if dtype is None else dtype
    scorer = load_scorer(model_path).to(device).eval()
    scores: list[float] = []
    with torch.no_grad(), autocast(device, dtype):
        for start in tqdm(range(0, len(records), batch_size), desc="eval", unit="batch", leave=False):
            images = [load_image(r.image) for r in records[start:start + batch_size]]
            scores.extend(float(s) for s in scorer.score(images, aspect=aspect).score.float().cpu())
    return scores


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("artquant eval", description=__doc__)
    parser.add_argument("--pred", help="predictions file (JSON list / JSONL / CSV of id, score); or --model")
    parser.add_argument("--gt", "--data", dest="gt", required=True, help="records file with gt_score")
    parser.add_argument("--model", help="scorer folder or hub id (ArtQuantScorer.from_pretrained), or 'tiny' "
                        "(the embedded default); instead of --pred")
    parser.add_argument("--out", default="eval_out",
                        help="output folder for metrics.json, scatter.png and artquant.log")
    parser.add_argument("--image-root", default=None,
                        help="folder relative image paths resolve against (default: the records file's folder)")
    parser.add_argument("--scale", choices=sorted(SCALES), default="apdd", help="level scale of gt_score")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="images per scoring batch (--model)")
    parser.add_argument("--aspect", default=None, help="attribute prompt (default: overall)")
    add_device_flags(parser)
    parser.add_argument("--title", default="", help="scatter plot title (default: the records file's name)")
    parser.add_argument("--verbose", action="store_true",
                        help="show library logging live (it always goes to OUT/artquant.log)")
    return parser


def check_inputs(args: argparse.Namespace) -> None:
    """The files and folders named on the command line exist — checked before any model loads."""
    if (args.pred is None) == (args.model is None):
        raise UsageError("give exactly one of --pred FILE or --model PATH")
    if not Path(args.gt).is_file():
        raise FileNotFoundError(f"--gt: records file not found: {args.gt}")
    if args.pred is not None and not Path(args.pred).is_file():
        raise FileNotFoundError(f"--pred: predictions file not found: {args.pred}")
    if args.image_root is not None and not Path(args.image_root).is_dir():
        raise NotADirectoryError(f"--image-root: not a folder: {args.image_root}")


def main(argv: list[str]) -> int:
    from artquant_core.console import log_to_folder

    args = build_parser().parse_args(argv)
    check_inputs(args)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    records = _score_records(args.gt, args.image_root, args.scale, check_images=args.model is not None)
    out = Path(args.out)
    log_to_folder(out)
    if args.model is not None:
        pred = score_with_model(args.model, records, args.batch_size, args.aspect, device, dtype)
    else:
        pred = match_predictions(read_predictions(args.pred), records, args.pred)
    gt = [r.gt_score for r in records]
    metrics = evaluate_scores(pred, gt)
    out.mkdir(parents=True, exist_ok=True)
    if args.model is not None:
        (out / "predictions.jsonl").write_text(
            "".join(json.dumps({"id": r.id, "score": s}) + "\n" for r, s in zip(records, pred)))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    plot_score_scatter(pred, gt, out / "scatter.png", title=args.title or Path(args.gt).name, metrics=metrics)
    print(json.dumps(metrics, indent=2))
    return 0
