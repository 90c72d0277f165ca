"""``artquant ddpo --config YAML [--key value ...]``: DDPO fine-tuning (also under ``accelerate launch``)."""

from __future__ import annotations


def _trainer() -> type:
    from alignment.ddpo_trainer import DDPOTrainer

    return DDPOTrainer


def main(argv: list[str]) -> int:
    from alignment.commands._run import run_trainer_command
    from alignment.ddpo_config import DDPOConfig

    return run_trainer_command(argv, "ddpo", DDPOConfig, _trainer,
                               ("epoch", "reward_mean", "reward_std", "samples_per_s"))
