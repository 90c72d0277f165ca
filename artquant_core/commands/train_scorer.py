"""``artquant train-scorer --config YAML [--key value ...]``: train an ArtQuant scorer.

Keys are ``ScorerTrainingConfig`` fields (every ``transformers.TrainingArguments``
field plus the method's own). ``--resume_from_checkpoint true`` continues from
the latest complete checkpoint in ``output_dir`` (or give a checkpoint path).
Multi-process: ``accelerate launch --num_processes 2 -m scripts.cli train-scorer --config ...``.
"""

from __future__ import annotations

import json


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    from artquant_core.config import parse_config
    from artquant_core.training import ScorerTrainingConfig, train_scorer

    config = parse_config(ScorerTrainingConfig, argv)
    resume = config.resume_from_checkpoint
    if isinstance(resume, str) and resume.lower() in ("true", "latest", "1", "yes"):
        resume = True
    elif isinstance(resume, str) and resume.lower() in ("false", "none", "0", "no", ""):
        resume = None
    metrics = train_scorer(config, resume_from_checkpoint=resume)
    if config.process_index == 0:
        print(json.dumps({k: v for k, v in metrics.items() if isinstance(v, (int, float, str))}, indent=2))
    return 0
