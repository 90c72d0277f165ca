"""Ablation: score-only vs joint description + score training, at equal steps, from the same init.

Both runs start from the same random tiny scorer (or ``--model``), see the same
number of optimiser steps and batch size, and are scored on the same held-out
split. With ``--vision_warmup_steps N`` the start is warmed up once (vision
tower score regression, saved to ``OUT/warm_start``) and both arms then train
with the vision encoder frozen, as the tiny scorer's pre-training does, so the
comparison is about what the language side learns. Writes ``OUT/ablation.json``
and prints it.

    python -m scripts.ablate_descriptions --data /tmp/sa50k --out /tmp/ablation --vision_warmup_steps 800 \
        --max_steps 300 --batch_size 32
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ARMS = {"score_only": "score", "joint": "score,description"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="SynthArt folder (train.json, test.json)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--model", default="tiny-random")
    parser.add_argument("--tiny_kwargs", default="vision_layers=2,text_layers=2")
    parser.add_argument("--max_steps", type=int, default=80)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--description_weight", type=float, default=1.0)
    parser.add_argument("--max_train_samples", type=int, default=8000)
    parser.add_argument("--max_eval_samples", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--vision_warmup_steps", type=int, default=0,
                        help="warm the vision tower up once, then train both arms with it frozen")
    args = parser.parse_args(argv)

    from artquant_core.config import parse_config
    from artquant_core.training import ScorerTrainingConfig, train_scorer

    data, out = Path(args.data), Path(args.out)
    model, tiny_kwargs = args.model, args.tiny_kwargs if args.model == "tiny-random" else ""
    if args.vision_warmup_steps:
        model, tiny_kwargs = str(warm_start(args, data / "train.json", out / "warm_start")), ""
    results = {}
    for arm in args.arms.split(","):
        config = parse_config(ScorerTrainingConfig, [], output_dir=str(out / arm), model_name_or_path=model,
                              tiny_kwargs=tiny_kwargs, freeze_vision_tower=bool(args.vision_warmup_steps),
                              train_data=str(data / "train.json"), eval_data=str(data / "test.json"),
                              tasks=ARMS[arm], score_weight=1.0, description_weight=args.description_weight,
                              max_steps=args.max_steps, per_device_train_batch_size=args.batch_size,
                              learning_rate=args.learning_rate, warmup_ratio=0.05, logging_steps=10,
                              save_strategy="no", eval_strategy="no", max_train_samples=args.max_train_samples,
                              max_eval_samples=args.max_eval_samples, seed=args.seed, disable_tqdm=True)
        metrics = train_scorer(config)
        results[arm] = {k: metrics[k] for k in ("eval_srcc", "eval_plcc", "eval_mae", "train_loss", "global_step",
                                                "n_train_examples") if k in metrics}
    summary = {"settings": vars(args), "results": results}
    (out / "ablation.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


def warm_start(args, train_data: Path, folder: Path) -> Path:
    """The shared starting scorer: ``--model`` with its vision tower warmed up (done once, then reused)."""
    from artquant_core.checkpoint import atomic_directory
    from artquant_core.config import parse_config
    from artquant_core.records import load_records
    from artquant_core.training import ScorerTrainingConfig
    from artquant_core.training.train import load_scorer_for_training
    from artquant_core.training.vision_warmup import vision_warmup, warmup_targets

    if (folder / "config.json").is_file():
        return folder
    config = parse_config(ScorerTrainingConfig, [], output_dir=str(folder), model_name_or_path=args.model,
                          tiny_kwargs=args.tiny_kwargs if args.model == "tiny-random" else "", seed=args.seed)
    scorer = load_scorer_for_training(config)
    paths, _, targets = warmup_targets(load_records(train_data), train_data.parent)
    vision_warmup(scorer, paths, targets, args.vision_warmup_steps, seed=args.seed)
    with atomic_directory(folder) as tmp:
        scorer.save_pretrained(tmp)
    return folder


if __name__ == "__main__":
    raise SystemExit(main())
