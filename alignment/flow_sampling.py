"""Trajectory sampling of a flow-matching transformer (SD3): SDE steps in a window, the Euler ODE elsewhere.

The flow counterpart of :mod:`alignment.sampling` (whose DDIM sampler drives a UNet):
guidance is one transformer call on a doubled batch, per-sample timesteps are accepted
(training batches several steps of a trajectory into one call), and the held-out
evaluation uses the same chunked, per-index noise (``EVAL_CHUNK``, ``EVAL_SEED_SALT``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from alignment.flow_sde import euler_step, sde_step_with_logprob
from alignment.sampling import (EVAL_CHUNK, EVAL_SEED_SALT, classifier_free_guidance, decode_latents,
                                derive_seed)

#: (prompt_embeds (B, L, D), pooled_prompt_embeds (B, P)): what SD3PromptEncoder returns
Conditioning = tuple[torch.Tensor, torch.Tensor]


def guided_velocity(transformer, latents: torch.Tensor, timesteps: torch.Tensor, cond: Conditioning,
                    negative: Conditioning | None, guidance_scale: float) -> torch.Tensor:
    """The transformer's velocity with classifier-free guidance (:func:`classifier_free_guidance`).

    Args:
        timesteps: the scheduler's timesteps (t * 1000), 0-d or ``(B,)``.
        cond / negative: conditioning of the prompts and of the negative prompt (batch B or 1).
        guidance_scale: <= 1 (or no ``negative``): the conditional prediction alone, in one plain batch.
    """
    def predict(x: torch.Tensor, t: torch.Tensor, embeds: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        return transformer(hidden_states=x, timestep=t, encoder_hidden_states=embeds, pooled_projections=pooled,
                           return_dict=False)[0]

    return classifier_free_guidance(predict, latents, timesteps, cond, negative, guidance_scale)


@dataclass
class FlowTrajectories:
    """A batch of sampled flow trajectories.

    Attributes:
        latents: ``(B, T+1, C, h, w)`` x at t = 1 … 0.
        log_probs: ``(B, W)`` log-probability of each SDE step (the window), under the sampling policy.
        sde_steps: ``(W,)`` step indices of the window.
        images: ``(B, 3, H, W)`` in [0, 1] (``None`` when not decoded).
    """

    latents: torch.Tensor
    log_probs: torch.Tensor
    sde_steps: torch.Tensor
    images: torch.Tensor | None = None


def sample_flow_trajectories(transformer, scheduler, vae, cond: Conditioning, negative: Conditioning | None, *,
                             num_steps: int, guidance_scale: float, noise_level: float, noise_schedule: str,
                             sde_steps: Sequence[int], resolution: int, generator: torch.Generator | None = None,
                             decode: bool = True) -> FlowTrajectories:
    """Sample ``len(cond[0])`` trajectories: the SDE on ``sde_steps`` (log-probs recorded), the ODE elsewhere.

    ``sde_steps`` empty gives the deterministic ODE sampler (held-out evaluation). Runs under
    ``torch.inference_mode``; the returned tensors are ordinary (cloned) so training can use them.
    ``generator`` (CPU or the device's) draws the initial noise and each SDE step's noise.
    """
    embeds = cond[0]
    device, b = embeds.device, embeds.shape[0]
    side = resolution // 2 ** (len(vae.config.block_out_channels) - 1)
    window = set(int(i) for i in sde_steps)
    gen_device = generator.device if generator is not None else device
    with torch.inference_mode():
        scheduler.set_timesteps(num_steps, device=device)
        latents = torch.randn((b, transformer.config.in_channels, side, side), generator=generator,
                              device=gen_device).to(device=device, dtype=embeds.dtype)
        all_latents, log_probs = [latents], []
        for i, t in enumerate(scheduler.timesteps):
            v = guided_velocity(transformer, latents, t, cond, negative, guidance_scale)
            if i in window:
                noise = torch.randn(latents.shape, generator=generator, device=gen_device)
                step = sde_step_with_logprob(scheduler, v, i, latents, noise_level, noise_schedule=noise_schedule,
                                             variance_noise=noise)
                latents = step.prev_sample
                log_probs.append(step.log_prob)
            else:
                latents = euler_step(scheduler, v, i, latents)
            all_latents.append(latents)
        images = decode_latents(vae, latents) if decode else None
    return FlowTrajectories(
        latents=torch.stack(all_latents, dim=1).clone(),
        log_probs=(torch.stack(log_probs, dim=1) if log_probs else torch.zeros(b, 0, device=device)).clone(),
        sde_steps=torch.tensor(sorted(window), dtype=torch.long),
        images=None if images is None else images.clone(),
    )


def sample_flow_held_out(transformer, scheduler, vae, encode: Callable[[list[str]], Conditioning],
                         negative: Conditioning | None, prompts: Sequence[str], *, seed: int, num_steps: int,
                         guidance_scale: float, resolution: int, autocast=None) -> torch.Tensor:
    """Held-out images ``(len(prompts), 3, H, W)`` in [0, 1] (float32, CPU) from the deterministic ODE sampler.

    Chunk ``k`` of ``EVAL_CHUNK`` prompts draws its initial noise from a generator seeded by
    ``(seed, EVAL_SEED_SALT, k)``, as the DDIM evaluation does, so an image's noise depends only on its index.
    """
    images = []
    for k, start in enumerate(range(0, len(prompts), EVAL_CHUNK)):
        chunk = list(prompts[start:start + EVAL_CHUNK])
        gen = torch.Generator().manual_seed(derive_seed(seed, EVAL_SEED_SALT, k))
        with autocast() if autocast is not None else contextlib.nullcontext():
            traj = sample_flow_trajectories(transformer, scheduler, vae, encode(chunk), negative,
                                            num_steps=num_steps, guidance_scale=guidance_scale, noise_level=0.0,
                                            noise_schedule="flow_grpo", sde_steps=(), resolution=resolution,
                                            generator=gen)
        images.append(traj.images.float().cpu())
    return torch.cat(images)
