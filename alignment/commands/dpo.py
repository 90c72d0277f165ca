"""``artquant dpo --config YAML [--key value ...]``: Diffusion-DPO (also under ``accelerate launch``)."""

from __future__ import annotations


def _trainer() -> type:
    from alignment.dpo_trainer import DiffusionDPOTrainer

    return DiffusionDPOTrainer


def main(argv: list[str]) -> int:
    from alignment.commands._run import run_trainer_command
    from alignment.dpo_config import DiffusionDPOConfig

    return run_trainer_command(argv, "dpo", DiffusionDPOConfig, _trainer,
                               ("epoch", "loss", "implicit_acc", "reward_mean", "num_pairs"))
