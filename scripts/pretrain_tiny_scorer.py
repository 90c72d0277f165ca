"""Pre-train the embedded tiny scorer from random init on a large SynthArt draw (CPU, resumable).

Uses the same ``train_scorer`` users run. Generates the data once (skipped
when present), trains (``--resume`` continues from the latest complete
checkpoint after an interruption), and with ``--ship`` copies the result into
``artquant_core/pretrained/tiny_scorer/`` via ``save_pretrained``.

    python -m scripts.pretrain_tiny_scorer --out /tmp/pretrain_run --n-images 20000 \\
        --config configs/pretrain_tiny.yaml [--key value ...] [--resume] [--minutes 50] [--ship]

Any other ``--key value`` is a ScorerTrainingConfig override.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from transformers import TrainerCallback

ROOT = Path(__file__).resolve().parents[1]
SHIP_DIR = ROOT / "artquant_core" / "pretrained" / "tiny_scorer"
DATA_SEED = 1000  # the shipped-weights test draws its test split from another seed


class TimeBudget(TrainerCallback):
    """Stop (and checkpoint) once ``minutes`` of wall time have passed."""

    def __init__(self, minutes: float) -> None:
        self.deadline = time.time() + 60.0 * minutes

    def on_step_end(self, args, state, control, **kwargs):
        if time.time() > self.deadline:
            control.should_training_stop = True
            control.should_save = True
        return control


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="run folder (checkpoints, metrics, final scorer)")
    parser.add_argument("--data-dir", default=None, help="SynthArt folder (default: OUT/synthart)")
    parser.add_argument("--n-images", type=int, default=20000)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--config", default=str(ROOT / "configs" / "pretrain_tiny.yaml"))
    parser.add_argument("--resume", action="store_true", help="continue from the latest complete checkpoint")
    parser.add_argument("--minutes", type=float, default=None, help="wall-time budget, then checkpoint and stop")
    parser.add_argument("--ship", action="store_true", help="copy the trained scorer into the package")
    args, overrides = parser.parse_known_args(argv)

    from artquant_core import make_synthart
    from artquant_core.config import parse_config
    from artquant_core.training import ScorerTrainingConfig
    from artquant_core.training.train import train_scorer

    out = Path(args.out)
    data = Path(args.data_dir) if args.data_dir else out / "synthart"
    if not (data / "train.json").is_file():
        make_synthart(data, args.n_images, seed=DATA_SEED, size=args.image_size)
    config = parse_config(ScorerTrainingConfig, ["--config", args.config, *overrides], output_dir=str(out),
                          train_data=str(data / "train.json"), eval_data=str(data / "val.json"))
    start = time.time()
    metrics = train_scorer(config, resume_from_checkpoint=True if args.resume else None,
                           callbacks=[TimeBudget(args.minutes)] if args.minutes else None)
    metrics["wall_s"] = round(time.time() - start, 1)
    print(json.dumps(metrics, indent=2))
    if args.ship:
        from artquant_core.scorer import ArtQuantScorer

        ArtQuantScorer.from_pretrained(out).save_pretrained(SHIP_DIR)
        (SHIP_DIR / "training_summary.json").write_text(json.dumps(
            {"data_seed": DATA_SEED, "n_images": args.n_images, "image_size": args.image_size,
             "config": args.config, "overrides": overrides, "metrics": metrics}, indent=2) + "\n")
        print(f"shipped to {SHIP_DIR}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
