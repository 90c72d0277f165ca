"""Configuration of a DDPO run (YAML + ``--key value`` through ``artquant_core.config.parse_config``)."""

from __future__ import annotations

from dataclasses import dataclass

from alignment.policy_gradient_config import PolicyGradientConfig
from alignment.run_config import DEFAULT_EVAL_PROMPTS, DEFAULT_PROMPTS
from alignment.run_config import config_field as _f

__all__ = ["DDPOConfig", "DEFAULT_PROMPTS", "DEFAULT_EVAL_PROMPTS"]


@dataclass
class DDPOConfig(PolicyGradientConfig):
    """DDPO (Black et al. 2023) fine-tuning settings.

    Dataclass defaults run on the embedded tiny SD on a CPU in about a second
    per epoch; ``configs/ddpo_sd15.yaml`` holds the paper's SD 1.5 settings.
    Batch sizes are per process (as in ``accelerate launch``). The shared
    fields (model, prompts, LoRA, precision, tracking, checkpoints) are
    ``AlignmentRunConfig``'s, the sampling / PPO ones ``PolicyGradientConfig``'s.
    """

    # shared fields whose default or meaning is DDPO's own
    output_dir: str = _f("runs/ddpo", "run folder: metrics.jsonl, reward_curve.png, eval grids, checkpoint-N/")
    num_epochs: int = _f(10, "number of epochs (sample, reward, train)")
    sample_eta: float = _f(1.0, "DDIM eta; must be > 0 (the policy's noise)")
    train_gradient_accumulation_steps: int = _f(1, "micro-batches per optimizer step (each over all trained timesteps)")
    tracker_project: str = _f("artquant-ddpo", "wandb project name")

    # training
    train_skip_last_steps: int = _f(0, "the last N DDIM steps are sampled but not trained on: their tiny noise "
                                       "makes their score-function gradient large and mostly noise (on the painter, "
                                       "a zero-terminal-SNR v model, its last step alone carries 10x the gradient "
                                       "norm of the others and points against the reward's own gradient)")

    # advantages
    per_prompt_stat_tracking: bool = _f(True, "normalise rewards per prompt (else by batch statistics)")
    per_prompt_buffer_size: int = _f(16, "rewards kept per prompt for its statistics")
    per_prompt_min_count: int = _f(16, "rewards a prompt needs before its own statistics are used")

    def validate(self, num_processes: int = 1) -> None:
        """The shared checks, then DDPO's own (naming the field)."""
        if self.sample_eta <= 0:
            raise ValueError(f"sample_eta must be > 0 for DDPO (got {self.sample_eta}): with eta 0 the DDIM step "
                             "is deterministic and its log-probability is undefined")
        super().validate(num_processes)
        if not 0 <= self.train_skip_last_steps < self.sample_num_steps:
            raise ValueError(f"train_skip_last_steps must be in [0, sample_num_steps = {self.sample_num_steps}), "
                             f"got {self.train_skip_last_steps}: at least one step has to be trained on")
        for name in ("per_prompt_buffer_size", "per_prompt_min_count"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
