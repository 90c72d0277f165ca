"""``artquant reward-grad --config YAML [--key value ...]``: DRaFT-K / AlignProp (also under ``accelerate launch``)."""

from __future__ import annotations


def _trainer() -> type:
    from alignment.reward_grad_trainer import RewardGradTrainer

    return RewardGradTrainer


def main(argv: list[str]) -> int:
    from alignment.commands._run import run_trainer_command
    from alignment.reward_grad_config import RewardGradConfig

    return run_trainer_command(argv, "reward-grad", RewardGradConfig, _trainer,
                               ("epoch", "reward_mean", "reward_std", "loss", "grad_norm", "samples_per_s"))
