"""``artquant ddpo --config YAML [--key value ...]``: DDPO fine-tuning (also under ``accelerate launch``)."""

from __future__ import annotations

import json


def main(argv: list[str]) -> int:
    from artquant_core.config import config_help, parse_config
    from alignment.ddpo_config import DDPOConfig

    if argv and argv[0] in ("-h", "--help"):
        print(config_help(DDPOConfig, "ddpo"))
        return 0
    from alignment.ddpo_trainer import DDPOTrainer

    config = parse_config(DDPOConfig, argv)
    trainer = DDPOTrainer(config)
    metrics = trainer.train()
    if trainer.s.accelerator.is_main_process:
        keys = ("epoch", "reward_mean", "reward_std", "samples_per_s")
        print(json.dumps({k: metrics[k] for k in keys if k in metrics} |
                         {k: v for k, v in metrics.items() if k.startswith("eval_") and k.endswith("_mean")}))
    return 0
