"""``artquant reward-grad --config YAML [--key value ...]``: DRaFT-K / AlignProp (also under ``accelerate launch``)."""

from __future__ import annotations

import json


def main(argv: list[str]) -> int:
    from artquant_core.config import config_help, parse_config
    from alignment.reward_grad_config import RewardGradConfig

    if argv and argv[0] in ("-h", "--help"):
        print(config_help(RewardGradConfig, "reward-grad"))
        return 0
    from alignment.reward_grad_trainer import RewardGradTrainer

    config = parse_config(RewardGradConfig, argv)
    trainer = RewardGradTrainer(config)
    metrics = trainer.train()
    if trainer.accelerator.is_main_process:
        keys = ("epoch", "reward_mean", "reward_std", "loss", "grad_norm", "samples_per_s")
        print(json.dumps({k: metrics[k] for k in keys if k in metrics} |
                         {k: v for k, v in metrics.items() if k.startswith("eval_") and k.endswith("_mean")}))
    return 0
