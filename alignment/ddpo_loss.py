"""The DDPO objective: PPO-clip on the per-step importance ratio, plus an optional KL to a reference."""

from __future__ import annotations

import torch


def ppo_clip_loss(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor,
                  clip_range: float, adv_clip_max: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean PPO-clip loss over the batch of (sample, timestep) pairs.

    ratio = exp(log_prob - old_log_prob); loss = max(-A * ratio, -A * clip(ratio, 1 +- clip_range))
    with A clipped to +-adv_clip_max. Also returns approx_kl (0.5 * E[(log-ratio)^2]) and clipfrac.
    """
    adv = advantages.clamp(-adv_clip_max, adv_clip_max)
    log_ratio = log_prob - old_log_prob
    ratio = torch.exp(log_ratio)
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - clip_range, 1.0 + clip_range)
    loss = torch.maximum(unclipped, clipped).mean()
    with torch.no_grad():
        stats = {"approx_kl": 0.5 * (log_ratio ** 2).mean(),
                 "clipfrac": ((ratio - 1.0).abs() > clip_range).float().mean()}
    return loss, stats


def gaussian_kl(mean: torch.Tensor, ref_mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, std^2) || N(ref_mean, std^2)) per sample, averaged over non-batch dims (like the log-prob)."""
    kl = (mean - ref_mean) ** 2 / (2 * std ** 2)
    return kl.mean(dim=tuple(range(1, kl.ndim)))
