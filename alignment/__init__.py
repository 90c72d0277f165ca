"""Fine-tuning diffusion models against rewards: DDPO and reward-gradient (DRaFT-K / AlignProp)."""

from __future__ import annotations

from artquant_core.lazy_exports import lazy_exports

_EXPORTS = {
    "DDPOConfig": "ddpo_config",
    "DDPOTrainer": "ddpo_trainer",
    "RewardGradConfig": "reward_grad_config",
    "RewardGradTrainer": "reward_grad_trainer",
    "DiffusionDPOConfig": "dpo_config",
    "DiffusionDPOTrainer": "dpo_trainer",
    "ddim_step_with_logprob": "ddim",
    "FlowGRPOConfig": "flow_grpo_config",
    "FlowGRPOTrainer": "flow_grpo_trainer",
    "sde_step_with_logprob": "flow_sde",
    "build_tiny_sd": "tiny_sd",
    "build_tiny_sd3": "tiny_sd3",
    "PerPromptStatTracker": "stat_tracking",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
