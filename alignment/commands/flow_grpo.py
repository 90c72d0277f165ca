"""``artquant flow-grpo --config YAML [--key value ...]``: Flow-GRPO fine-tuning of a flow-matching model (SD3)."""

from __future__ import annotations


def _trainer() -> type:
    from alignment.flow_grpo_trainer import FlowGRPOTrainer

    return FlowGRPOTrainer


def main(argv: list[str]) -> int:
    from alignment.commands._run import run_trainer_command
    from alignment.flow_grpo_config import FlowGRPOConfig

    return run_trainer_command(argv, "flow-grpo", FlowGRPOConfig, _trainer,
                               ("epoch", "reward_mean", "reward_std", "loss", "approx_kl", "samples_per_s"))
