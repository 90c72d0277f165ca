"""Trajectory sampling for policy-gradient and reward-gradient fine-tuning.

The sampler runs DDIM with classifier-free guidance and records what DDPO's
update needs: every latent x_T … x_0, the log-probability of each step, the
timesteps and the prompt embeddings. Shaped for speed on any device:

* guidance is ONE UNet call on a doubled batch ``[uncond; cond]``;
* prompt embeddings are computed once per distinct prompt (``PromptEncoder``
  caches them — prompts repeat every epoch);
* per-sample timesteps (``(B,)``) are accepted everywhere, so training can put
  several timesteps of a trajectory into one UNet call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from alignment.ddim import ddim_step_full


class PromptEncoder:
    """Text embeddings of prompts, cached per string (the text encoder is frozen).

    Args:
        tokenizer / text_encoder: a CLIP tokenizer and text model of a SD pipeline.
        device: where embeddings are returned.
    """

    def __init__(self, tokenizer, text_encoder, device: torch.device | str = "cpu") -> None:
        self.tokenizer, self.text_encoder, self.device = tokenizer, text_encoder, torch.device(device)
        self._cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def __call__(self, prompts: Sequence[str]) -> torch.Tensor:
        missing = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        if missing:
            ids = self.tokenizer(list(missing), padding="max_length", truncation=True, return_tensors="pt",
                                 max_length=self.tokenizer.model_max_length).input_ids
            enc_device = next(self.text_encoder.parameters()).device
            embeds = self.text_encoder(ids.to(enc_device))[0]
            for p, e in zip(missing, embeds):
                self._cache[p] = e.detach().to(self.device)
        return torch.stack([self._cache[p] for p in prompts])


def classifier_free_guidance(predict: Callable[..., torch.Tensor], latents: torch.Tensor, timesteps: torch.Tensor,
                             cond: Sequence[torch.Tensor], negative: Sequence[torch.Tensor] | None,
                             guidance_scale: float) -> torch.Tensor:
    """``uncond + g * (cond - uncond)`` from ONE model call on the doubled batch ``[uncond; cond]``.

    The one guidance of every sampler and trainer (UNet and flow transformer alike), so the two model
    families cannot drift apart; only ``predict(latents, timesteps, *conditioning)`` differs between them.

    Args:
        timesteps: 0-d or ``(B,)`` (expanded to ``(B,)`` before ``predict`` sees it).
        cond / negative: the conditioning tensors of the prompts and of the negative prompt, in the order
            ``predict`` takes them; each negative is batch ``B`` or ``1`` (broadcast to ``B``).
        guidance_scale: <= 1 (or no ``negative``): the conditional prediction alone, in one plain batch.
    """
    b = latents.shape[0]
    t = timesteps.expand(b) if timesteps.ndim == 0 else timesteps
    if guidance_scale <= 1.0 or negative is None:
        return predict(latents, t, *cond)
    neg = [x.expand(b, *x.shape[1:]) if x.shape[0] == 1 else x for x in negative]
    out = predict(torch.cat([latents, latents]), torch.cat([t, t]), *(torch.cat([n, c]) for n, c in zip(neg, cond)))
    uncond, cond_out = out.chunk(2)
    return uncond + guidance_scale * (cond_out - uncond)


def guided_noise_pred(unet, latents: torch.Tensor, timesteps: torch.Tensor, prompt_embeds: torch.Tensor,
                      negative_embeds: torch.Tensor | None, guidance_scale: float) -> torch.Tensor:
    """UNet noise prediction with classifier-free guidance (:func:`classifier_free_guidance`).

    ``timesteps`` is 0-d or ``(B,)``; ``negative_embeds`` is ``(B, L, D)`` or ``(1, L, D)``
    (the unconditional / negative prompt).
    """
    def predict(x: torch.Tensor, t: torch.Tensor, embeds: torch.Tensor) -> torch.Tensor:
        return unet(x, t, encoder_hidden_states=embeds, return_dict=False)[0]

    negative = None if negative_embeds is None else (negative_embeds,)
    return classifier_free_guidance(predict, latents, timesteps, (prompt_embeds,), negative, guidance_scale)


@dataclass
class Trajectories:
    """A batch of sampled DDIM trajectories.

    Attributes:
        latents: ``(B, T+1, C, h, w)`` x_T … x_0.
        log_probs: ``(B, T)`` log-probability of each step under the sampling policy.
        timesteps: ``(T,)`` the scheduler's timesteps (same for every sample).
        prompt_embeds / negative_embeds: ``(B, L, D)`` conditioning used (negative may be ``(1, L, D)``).
        images: ``(B, 3, H, W)`` in [0, 1] (``None`` when not decoded).
    """

    latents: torch.Tensor
    log_probs: torch.Tensor
    timesteps: torch.Tensor
    prompt_embeds: torch.Tensor
    negative_embeds: torch.Tensor | None
    images: torch.Tensor | None = None


def decode_latents(vae, latents: torch.Tensor) -> torch.Tensor:
    """VAE decode to an image batch in [0, 1] (float32), differentiable if ``latents`` is."""
    scale = getattr(vae.config, "scaling_factor", 0.18215)
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    images = vae.decode(latents.to(vae.dtype) / scale + shift, return_dict=False)[0]
    return (images.float() / 2 + 0.5).clamp(0, 1)


def initial_latents(batch_size: int, unet, scheduler, resolution: int, vae_scale_factor: int,
                    generator: torch.Generator | None, device, dtype) -> torch.Tensor:
    shape = (batch_size, unet.config.in_channels, resolution // vae_scale_factor, resolution // vae_scale_factor)
    noise = torch.randn(shape, generator=generator, device=generator.device if generator else device,
                        dtype=torch.float32)
    return (noise.to(device=device, dtype=dtype) * scheduler.init_noise_sigma)


def sample_trajectories(unet, scheduler, vae, prompt_embeds: torch.Tensor, negative_embeds: torch.Tensor | None,
                        *, num_steps: int, guidance_scale: float, eta: float, resolution: int,
                        generator: torch.Generator | None = None, latents: torch.Tensor | None = None,
                        decode: bool = True) -> Trajectories:
    """Sample ``len(prompt_embeds)`` trajectories with DDIM (``eta``) and CFG, recording log-probs.

    Runs under ``torch.inference_mode``; the returned tensors are ordinary
    (cloned out of inference mode) so training can use them as inputs.
    ``generator`` makes the draw reproducible (the initial noise and each step's noise).
    """
    device = prompt_embeds.device
    vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
    with torch.inference_mode():
        scheduler.set_timesteps(num_steps, device=device)
        timesteps = scheduler.timesteps
        if latents is None:
            latents = initial_latents(prompt_embeds.shape[0], unet, scheduler, resolution, vae_scale_factor,
                                      generator, device, prompt_embeds.dtype)
        all_latents, all_log_probs = [latents], []
        for t in timesteps:
            x_in = scheduler.scale_model_input(latents, t)
            noise_pred = guided_noise_pred(unet, x_in, t, prompt_embeds, negative_embeds, guidance_scale)
            noise = None
            if eta > 0:
                noise = torch.randn(latents.shape, generator=generator,
                                    device=generator.device if generator else device, dtype=torch.float32)
            step = ddim_step_full(scheduler, noise_pred, t, latents, eta, variance_noise=noise)
            latents = step.prev_sample
            all_latents.append(latents)
            all_log_probs.append(step.log_prob)
        images = decode_latents(vae, latents) if decode else None
    return Trajectories(
        latents=torch.stack(all_latents, dim=1).clone(),
        log_probs=torch.stack(all_log_probs, dim=1).clone(),
        timesteps=timesteps.clone(),
        prompt_embeds=prompt_embeds.clone(),
        negative_embeds=None if negative_embeds is None else negative_embeds.clone(),
        images=None if images is None else images.clone(),
    )



def derive_seed(*parts: int) -> int:
    """A generator seed derived from (seed, epoch, rank, …): resumed runs redraw the same noise.

    The one seed hash of the alignment trainers (training draws, held-out evaluation)."""
    h = 0
    for p in parts:
        h = (h * 1_000_003 + int(p) + 1) % (2 ** 62)
    return h


#: Held-out images are drawn in chunks of this size, each from its own generator, so that an image's noise
#: depends only on (seed, its index) — not on a trainer's batch sizes: DDPO and reward-gradient runs of the
#: same seed evaluate the very same held-out noise, and their curves compare.
EVAL_CHUNK = 8
EVAL_SEED_SALT = 424242


def sample_held_out(unet, scheduler, vae, encode, negative_embeds: torch.Tensor | None, prompts: Sequence[str],
                    *, seed: int, num_steps: int, guidance_scale: float, eta: float, resolution: int,
                    autocast=None) -> torch.Tensor:
    """Images ``(len(prompts), 3, H, W)`` in [0, 1] (float32, CPU) for a held-out evaluation.

    ``encode(prompts) -> embeds``; ``autocast``: a context-manager factory (e.g. ``accelerator.autocast``).
    Chunk ``k`` draws from a generator seeded by ``(seed, EVAL_SEED_SALT, k)``.
    """
    import contextlib

    images = []
    for k, start in enumerate(range(0, len(prompts), EVAL_CHUNK)):
        chunk = list(prompts[start:start + EVAL_CHUNK])
        chunk_seed = derive_seed(seed, EVAL_SEED_SALT, k)
        with autocast() if autocast is not None else contextlib.nullcontext():
            traj = sample_trajectories(unet, scheduler, vae, encode(chunk), negative_embeds, num_steps=num_steps,
                                       guidance_scale=guidance_scale, eta=eta, resolution=resolution,
                                       generator=torch.Generator().manual_seed(chunk_seed))
        images.append(traj.images.float().cpu())
    return torch.cat(images)
