"""``artquant train-scorer --config YAML [--key value ...]``: train an ArtQuant scorer.

Keys are ``ScorerTrainingConfig`` fields (every ``transformers.TrainingArguments``
field plus the method's own). ``--resume_from_checkpoint true`` continues from
the latest complete checkpoint in ``output_dir`` (or give a checkpoint path).
Multi-process: ``accelerate launch --num_processes 2 -m alignment.cli train-scorer --config ...``.
"""

from __future__ import annotations

import json
from pathlib import Path


def check_inputs(config) -> None:
    """The data files and image folder exist — checked before the scorer loads, naming the missing path."""
    from artquant_core.cli_args import UsageError

    if not config.train_data:
        raise UsageError("train_data is required: --train_data RECORDS (a JSON/JSONL records file)")
    for key in ("train_data", "eval_data"):
        path = getattr(config, key)
        if path and not Path(path).is_file():
            raise FileNotFoundError(f"{key}: records file not found: {path}")
    if config.image_root and not Path(config.image_root).is_dir():
        raise NotADirectoryError(f"image_root: not a folder: {config.image_root}")


def _resume_value(resume):
    """``--resume_from_checkpoint`` as the trainer wants it: True (latest), None, or a checkpoint path."""
    if isinstance(resume, str) and resume.lower() in ("true", "latest", "1", "yes"):
        return True
    if isinstance(resume, str) and resume.lower() in ("false", "none", "0", "no", ""):
        return None
    return resume


def main(argv: list[str]) -> int:
    from artquant_core.cli_args import wants_help
    from artquant_core.config import config_help, parse_config
    from artquant_core.training import ScorerTrainingConfig, train_scorer

    if wants_help(argv):
        print(__doc__)
        print(config_help(ScorerTrainingConfig, "train-scorer"))
        return 0
    from artquant_core.console import log_to_folder

    config = parse_config(ScorerTrainingConfig, argv)
    check_inputs(config)
    log_to_folder(config.output_dir)
    metrics = train_scorer(config, resume_from_checkpoint=_resume_value(config.resume_from_checkpoint))
    if config.process_index == 0:
        print(json.dumps({k: v for k, v in metrics.items() if isinstance(v, (int, float, str))}, indent=2))
    return 0
