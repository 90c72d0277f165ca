"""``artquant reward-grad --config YAML [--key value ...]``: DRaFT-K / AlignProp (also under ``accelerate launch``)."""

from __future__ import annotations

import json


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        import dataclasses

        from alignment.reward_grad_config import RewardGradConfig

        print("usage: artquant reward-grad [--config YAML] [--key value ...]\n\nkeys:")
        for f in dataclasses.fields(RewardGradConfig):
            print(f"  --{f.name:<34} {f.metadata.get('help', '')}")
        return 0
    from artquant_core.config import parse_config
    from alignment.reward_grad_config import RewardGradConfig
    from alignment.reward_grad_trainer import RewardGradTrainer

    config = parse_config(RewardGradConfig, argv)
    trainer = RewardGradTrainer(config)
    metrics = trainer.train()
    if trainer.accelerator.is_main_process:
        keys = ("epoch", "reward_mean", "reward_std", "loss", "grad_norm", "samples_per_s")
        print(json.dumps({k: metrics[k] for k in keys if k in metrics} |
                         {k: v for k, v in metrics.items() if k.startswith("eval_") and k.endswith("_mean")}))
    return 0
