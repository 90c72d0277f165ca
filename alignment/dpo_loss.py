"""The Diffusion-DPO objective (Wallace et al. 2023): DPO on the denoising errors of a preference pair.

For a pair (chosen x_w, rejected x_l) noised with the same noise at the same
timestep, the policy's and the frozen reference's denoising errors give

    inside = -beta / 2 * ((err_w - err_l) - (ref_err_w - ref_err_l))
    loss   = -log sigmoid(inside)

Lowering the policy's error on the chosen image relative to the reference (or
raising it on the rejected one) lowers the loss; ``beta`` sets how far the
policy may move from the reference for a given preference margin.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def diffusion_dpo_loss(err_chosen: torch.Tensor, err_rejected: torch.Tensor, ref_err_chosen: torch.Tensor,
                       ref_err_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean Diffusion-DPO loss over a batch of pairs.

    Args:
        err_chosen, err_rejected: ``(B,)`` the policy's denoising errors (mean squared error over the latent).
        ref_err_chosen, ref_err_rejected: ``(B,)`` the reference's errors on the same noised latents.
        beta: the DPO temperature (Diffusion-DPO used 5000 for SD 1.5, 2500 for SDXL).

    Returns:
        ``(loss, stats)``; stats: ``implicit_acc`` (pairs the policy already ranks right relative to the
        reference), ``model_margin`` (err_w - err_l), ``ref_margin`` (the reference's).
    """
    model_margin = err_chosen - err_rejected
    ref_margin = ref_err_chosen - ref_err_rejected
    inside = -0.5 * beta * (model_margin - ref_margin)
    loss = -F.logsigmoid(inside).mean()
    with torch.no_grad():
        stats = {"implicit_acc": (inside > 0).float().mean() + 0.5 * (inside == 0).float().mean(),
                 "model_margin": model_margin.mean(), "ref_margin": ref_margin.mean()}
    return loss, stats
