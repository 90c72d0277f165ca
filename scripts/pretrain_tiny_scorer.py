"""Pre-train the embedded tiny scorer from random init on a large SynthArt draw (CPU, resumable).

Uses the same ``train_scorer`` users run. Generates the data once (skipped
when present), trains (``--resume`` continues from the latest complete
checkpoint after an interruption), and with ``--ship`` copies the result into
the family's package folder via ``save_pretrained``: ``artquant_core/pretrained/tiny_scorer/``
(Qwen2.5-VL, the default scorer) or ``artquant_core/pretrained/tiny_scorer_llava/``
(LLaVA, the independent judge behind the ``judge`` reward), with ``training_summary.json``.

    python -m scripts.pretrain_tiny_scorer --out /tmp/pretrain_run --n-images 50000 \\
        --config configs/pretrain_tiny.yaml [--key value ...] [--resume] [--minutes 50] [--ship]

    # the judge: the other VLM family on a disjoint SynthArt draw
    python -m scripts.pretrain_tiny_scorer --out /tmp/judge_run --n-images 50000 \\
        --config configs/pretrain_judge.yaml --family llava --data-seed 3000 --ship

The family comes from ``--family`` or the config's ``tiny_kwargs`` (``family=llava``);
``--ship-dir`` ships somewhere else (tests). Any other ``--key value`` is a
ScorerTrainingConfig override.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from transformers import TrainerCallback

ROOT = Path(__file__).resolve().parents[1]
SHIP_DIR = ROOT / "artquant_core" / "pretrained" / "tiny_scorer"  # the default (qwen2_5_vl) family's folder
DATA_SEED = 1000  # pre-training data of the shipped default scorer (the judge uses another, e.g. 3000)
FRESH_SEED = 777  # the shipped-weights check draws from a seed training never saw
FAMILIES = ("qwen2_5_vl", "llava")


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
    parser.add_argument("--n-images", type=int, default=50000)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--config", default=str(ROOT / "configs" / "pretrain_tiny.yaml"))
    parser.add_argument("--resume", action="store_true", help="continue from the latest complete checkpoint")
    parser.add_argument("--minutes", type=float, default=None, help="wall-time budget, then checkpoint and stop")
    parser.add_argument("--ship", action="store_true", help="copy the trained scorer into the package")
    parser.add_argument("--ship-only", action="store_true", help="ship the scorer already in --out (no training)")
    parser.add_argument("--family", choices=FAMILIES, default=None,
                        help="VLM family of the tiny-random model (default: the config's tiny_kwargs, else qwen2_5_vl); "
                             "llava = the independent judge")
    parser.add_argument("--data-seed", type=int, default=DATA_SEED,
                        help=f"SynthArt seed of the training draw (default {DATA_SEED}, the shipped scorer's)")
    parser.add_argument("--fresh-seed", type=int, default=FRESH_SEED,
                        help=f"SynthArt seed of the fresh check draw at ship time (default {FRESH_SEED})")
    parser.add_argument("--ship-dir", default=None,
                        help="ship here instead of the family's package folder (tiny_scorer/ or tiny_scorer_llava/)")
    args, overrides = parser.parse_known_args(argv)
    if args.fresh_seed == args.data_seed:
        parser.error(f"--fresh-seed must differ from --data-seed ({args.data_seed}): the check needs unseen paintings")

    from artquant_core import make_synthart
    from artquant_core.config import parse_config
    from artquant_core.training import ScorerTrainingConfig
    from artquant_core.training.train import train_scorer

    out = Path(args.out)
    data = Path(args.data_dir) if args.data_dir else out / "synthart"
    if not (data / "train.json").is_file():
        make_synthart(data, args.n_images, seed=args.data_seed, size=args.image_size)
    check_data_seed(data, args.data_seed)
    config = parse_config(ScorerTrainingConfig, ["--config", args.config, *overrides], output_dir=str(out),
                          train_data=str(data / "train.json"), eval_data=str(data / "val.json"))
    if args.family is not None:
        set_family(config, args.family)
    metrics: dict = {}
    machine = None  # recorded only where the training ran
    if not args.ship_only:
        start = time.time()
        metrics = train_scorer(config, resume_from_checkpoint=True if args.resume else None,
                               callbacks=[TimeBudget(args.minutes)] if args.minutes else None)
        metrics["wall_s"] = round(time.time() - start, 1)
        machine = machine_description()
        print(json.dumps(metrics, indent=2))
    if args.ship or args.ship_only:
        ship(out, {"data_seed": args.data_seed, "n_images": args.n_images, "image_size": args.image_size,
                   "config": Path(args.config).name, "overrides": overrides, "train_metrics": metrics,
                   **training_provenance(out, data, config, metrics.get("wall_s"), machine)},
             ship_dir=Path(args.ship_dir) if args.ship_dir else None, fresh_seed=args.fresh_seed)
    return 0


def set_family(config, family: str) -> None:
    """Put ``family=...`` into the config's ``tiny_kwargs`` (replacing the config file's, if any)."""
    if config.model_name_or_path != "tiny-random":
        raise SystemExit(f"--family applies to model_name_or_path 'tiny-random' (pre-training from random init); "
                         f"the config has {config.model_name_or_path!r}")
    kwargs = {**config.tiny_overrides(), "family": family}
    config.tiny_kwargs = ",".join(f"{k}={v}" for k, v in kwargs.items())


def check_data_seed(data_dir: Path, seed: int) -> None:
    """Refuse a SynthArt folder drawn with another seed (the judge must not train on the scorer's draw)."""
    meta_file = data_dir / "synthart_meta.json"
    if meta_file.is_file():
        found = json.loads(meta_file.read_text()).get("seed")
        if found is not None and int(found) != seed:
            raise SystemExit(f"{data_dir} holds SynthArt seed {found}, not --data-seed {seed}; "
                             "pass another --data-dir (or the matching --data-seed)")


def machine_description() -> str:
    """Where the training ran: CPU count, torch threads, GPU if any, date (for the shipped summary)."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{os.cpu_count()} CPUs ({platform.machine()}), {torch.get_num_threads()} torch threads, {gpu}, "
            f"{time.strftime('%Y-%m-%d')}")


def training_provenance(run_dir: Path, data_dir: Path, config, wall_s: float | None, machine: str | None) -> dict:
    """The shipped summary's account of how the weights were made, read from the run itself.

    ``stages``: the vision warm-up as it ran (``vision_warmup/vision_warmup.json``) and the joint
    stage (steps reached, batch, learning rate); ``wall_s`` / ``machine``: this invocation's
    training, when it trained (``None`` for ``--ship-only``); ``data``: the SynthArt draw (its
    ``synthart_meta.json``); ``command``: this invocation.
    """
    stages: dict = {}
    warmup_file = run_dir / "vision_warmup" / "vision_warmup.json"
    if warmup_file.is_file():
        warmup = json.loads(warmup_file.read_text())
        stages["vision_warmup"] = {k: warmup.get(k) for k in ("steps", "batch_size", "learning_rate", "n_images")}
    final_file = run_dir / "final_metrics.json"
    final = json.loads(final_file.read_text()) if final_file.is_file() else {}
    stages["joint"] = {"steps": final.get("global_step", config.max_steps),
                       "batch_size": config.per_device_train_batch_size,
                       "learning_rate": config.learning_rate,
                       "freeze_vision_tower": config.freeze_vision_tower}
    if wall_s is not None:  # warm-up included
        stages["wall_minutes"] = round(wall_s / 60.0, 1)
    meta_file = data_dir / "synthart_meta.json"
    data = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    return {"stages": stages, "machine": machine or "not recorded (shipped without training)",
            "data": {k: data.get(k) for k in ("seed", "n", "size", "rater", "splits") if k in data},
            "command": "python -m scripts.pretrain_tiny_scorer " + " ".join(sys.argv[1:])}


def ship(run_dir: Path, info: dict, ship_dir: Path | None = None, fresh_seed: int = FRESH_SEED) -> dict:
    """Copy the run's scorer into the package and measure it on a fresh draw (seed never trained on).

    ``ship_dir`` defaults to the scorer's family folder (``tiny_scorer/`` for Qwen2.5-VL,
    ``tiny_scorer_llava/`` for LLaVA, the judge).
    """
    import torch

    from artquant_core import make_synthart
    from artquant_core.baseline import pixel_baselines_srcc
    from artquant_core.images import load_image, pil_to_uint8_tensor
    from artquant_core.metrics import evaluate_scores
    from artquant_core.records import load_records
    from artquant_core.scorer import ArtQuantScorer
    from artquant_core.synthart.attributes import SCORE_NAMES

    from artquant_core.tiny import pretrained_folder

    trained = ArtQuantScorer.from_pretrained(run_dir)
    family = trained.family.name
    ship_dir = Path(ship_dir) if ship_dir is not None else pretrained_folder(family)
    trained.save_pretrained(ship_dir)
    del trained
    state = json.loads((run_dir / "final_metrics.json").read_text()) if (run_dir / "final_metrics.json").is_file() else {}
    if info.get("data_seed") == fresh_seed:
        raise ValueError(f"fresh_seed {fresh_seed} is the training data's seed")
    fresh = Path(make_synthart(run_dir / f"fresh_seed{fresh_seed}", 600, seed=fresh_seed, size=64))
    scorer = ArtQuantScorer.from_pretrained(ship_dir).eval()
    records = [r for r in load_records(fresh) if r.task_type == "score"]
    images = torch.stack([pil_to_uint8_tensor(load_image(r.image)) for r in records])
    fresh_metrics = evaluate_scores(scorer.score(images, batch_size=100).score, [r.gt_score for r in records])
    with torch.no_grad():  # attribute scores through the ArtiMuse-style attribute prompts, first 200 paintings
        aspects = {a: evaluate_scores(scorer.score(images[:200], aspect=a, batch_size=100).score,
                                      [r.attributes[a] for r in records[:200]])["srcc"]
                   for a in SCORE_NAMES if a != "overall"}
    baselines = pixel_baselines_srcc(fresh, ("global", "spatial"))
    baseline = baselines["global"]
    meta = json.loads((fresh.parent / "synthart_meta.json").read_text())
    summary = {**info, "family": family, "run_final_metrics": state, "fresh_seed": fresh_seed, "fresh_n": len(records),
               "fresh_test_srcc": fresh_metrics["srcc"], "fresh_test_plcc": fresh_metrics["plcc"],
               "fresh_aspect_srcc_first200": aspects,
               "pixel_baseline_srcc": baseline["srcc"], "pixel_baseline_spatial_srcc": baselines["spatial"]["srcc"],
               "ceiling_srcc": meta.get("ceiling_srcc"),
               "beats_pixel_baseline": bool(fresh_metrics["srcc"] > baseline["srcc"])}
    (ship_dir / "training_summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(json.dumps(summary, indent=2, default=str))
    print(f"shipped to {ship_dir}")
    return summary


if __name__ == "__main__":
    raise SystemExit(main())
