"""Reward-gradient fine-tuning of a diffusion model: DRaFT-K / AlignProp.

Each sample is a DDIM trajectory with classifier-free guidance. The first
``T - K`` steps run without a graph; the last ``K`` steps and the VAE decode
keep it, so ``-mean(reward)`` backpropagates into the UNet (its LoRA) through
K UNet calls. With ``gradient_checkpointing`` each of those UNet calls and the
decode are recomputed in the backward pass: between forward and backward only
one latent per step is held, not K UNets' activations.

Every random draw (prompts, initial noise, DDIM noise) is seeded from
``(seed, epoch, update, micro-batch, process)``; a checkpoint (LoRA + AdamW
state) therefore resumes exactly where the run stopped. The run around this
update (models, evaluation, checkpoints, tracking) is the shared
:class:`~alignment.fine_tuning.FineTuningTrainer`'s, as for DDPO.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint

from alignment.ddim import ddim_step_full
from alignment.fine_tuning import FineTuningTrainer
from alignment.reward_checks import check_differentiable
from alignment.reward_grad_config import RewardGradConfig
from alignment.run_setup import peak_memory, summary_stats
from alignment.sampling import decode_latents, derive_seed, guided_noise_pred, initial_latents


class RewardGradTrainer(FineTuningTrainer):
    """DRaFT-K / AlignProp trainer. ``RewardGradTrainer(config, reward=None).train() -> dict`` of final metrics.

    Args:
        config: a :class:`~alignment.RewardGradConfig`.
        reward: a differentiable reward (protocol: ``reward(images, prompts) -> (B,)``, ``.name``,
            ``.differentiable``); ``None`` loads ``config.reward``. A non-differentiable reward is
            refused with a ``ValueError`` before any model is loaded.
    """

    method = "reward-grad"

    def __init__(self, config: RewardGradConfig, reward: Callable | None = None) -> None:
        super().__init__(config, reward)
        self.global_step = 0

    def check_reward(self, reward: Any) -> None:
        check_differentiable(reward)

    def trainer_state(self) -> dict[str, Any]:
        return {"global_step": self.global_step}

    def load_trainer_state(self, state: dict[str, Any]) -> None:
        self.global_step = int(state.get("global_step", 0))

    # -- one batch of images, differentiable through the last K steps -------------------------
    def noise_prediction(self, unet, latents: torch.Tensor, t: torch.Tensor, embeds: torch.Tensor) -> torch.Tensor:
        """The guided noise prediction of ``unet`` at ``(latents, t)``, in float32 (autocast inside)."""
        s = self.setup
        with s.accelerator.autocast():
            x_in = s.scheduler.scale_model_input(latents, t)
            eps = guided_noise_pred(unet, x_in, t, embeds, s.negative_embeds, self.config.guidance_scale)
        return eps.float()

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        with self.setup.accelerator.autocast():
            return decode_latents(self.setup.vae, latents)

    def generate(self, prompts: list[str], generator: torch.Generator, k: int | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``(B, 3, H, W)`` in [0, 1], differentiable through the last K steps and the decode.

        Also returns the drift penalty: the mean squared difference between the tuned and the
        frozen reference's noise predictions on the K gradient steps (0 unless ``kl_coef > 0``).
        For two DDIM Gaussians of equal variance the per-step KL is this difference times a
        step-dependent factor, so it is a KL up to that weighting, not the KL itself.
        """
        images, drift, _ = self.trajectory(prompts, generator, k)
        return images, drift

    def trajectory(self, prompts: list[str], generator: torch.Generator, k: int | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """:meth:`generate`, plus the detached latents x_T, ..., x_0 of the path taken (``T + 1`` tensors).

        ``k``: gradient steps (default ``truncated_backprop_steps``).
        """
        cfg, s = self.config, self.setup
        device, k = s.accelerator.device, k or cfg.truncated_backprop_steps
        embeds = s.encode(prompts)
        s.scheduler.set_timesteps(cfg.sample_num_steps, device=device)
        timesteps = s.scheduler.timesteps
        latents = initial_latents(len(prompts), s.policy_unet(), s.scheduler, cfg.resolution, s.vae_scale,
                                  generator, device, torch.float32)
        drift = torch.zeros((), device=device)
        path = [latents.detach()]
        for i, t in enumerate(timesteps):
            with_grad = i >= len(timesteps) - k
            # The graph-free steps run the unwrapped UNet: a distributed wrapper's forward would
            # expect a backward it never gets.
            unet = s.unet if with_grad else s.policy_unet()
            with torch.set_grad_enabled(with_grad):
                if with_grad and cfg.gradient_checkpointing:
                    eps = checkpoint(self.noise_prediction, unet, latents, t, embeds, use_reentrant=False)
                else:
                    eps = self.noise_prediction(unet, latents, t, embeds)
                if with_grad and cfg.kl_coef > 0:
                    with torch.no_grad(), s.reference_policy() as reference:
                        ref = self.noise_prediction(reference, latents.detach(), t, embeds)
                    drift = drift + ((eps - ref) ** 2).mean() / k
                noise = None
                if cfg.sample_eta > 0:  # drawn on the CPU generator: same noise on any device
                    noise = torch.randn(latents.shape, generator=generator).to(device)
                latents = ddim_step_full(s.scheduler, eps, t, latents, cfg.sample_eta,
                                         variance_noise=noise).prev_sample
            path.append(latents.detach())
        if cfg.gradient_checkpointing:
            images = checkpoint(self._decode, latents, use_reentrant=False)
        else:
            images = self._decode(latents)
        return images, drift, path

    # -- training --------------------------------------------------------------------------------
    def _micro_batch(self, epoch: int, update: int, micro: int) -> tuple[list[str], torch.Generator]:
        s = self.setup
        rank = s.accelerator.process_index
        rng = np.random.default_rng(derive_seed(self.config.seed, epoch, update, micro, rank, 1))
        prompts = [s.prompts[i] for i in rng.integers(0, len(s.prompts), self.config.train_batch_size)]
        return prompts, torch.Generator().manual_seed(derive_seed(self.config.seed, epoch, update, micro, rank, 2))

    def _truncation(self, epoch: int, update: int) -> int:
        """K of this update: fixed, or drawn from [truncated_backprop_min, truncated_backprop_steps] (AlignProp).

        Seeded by (seed, epoch, update) only, so every process takes the same K (one graph shape for the
        gradient all-reduce) and a resumed run draws the K the uninterrupted one drew.
        """
        cfg = self.config
        if cfg.truncated_backprop_min is None:
            return cfg.truncated_backprop_steps
        rng = np.random.default_rng(derive_seed(cfg.seed, epoch, update, 3))
        return int(rng.integers(cfg.truncated_backprop_min, cfg.truncated_backprop_steps + 1))

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """``train_steps_per_epoch`` updates on fresh samples; returns the epoch's metrics."""
        cfg, s = self.config, self.setup
        acc, accum = s.accelerator, cfg.train_gradient_accumulation_steps
        s.unet.train()
        rewards, losses, grad_norms, drifts, ks = [], [], [], [], []
        timing = {"sample_s": 0.0, "reward_s": 0.0, "train_s": 0.0}
        for update in range(cfg.train_steps_per_epoch):
            k = self._truncation(epoch, update)
            ks.append(k)
            for micro in range(accum):
                last = micro == accum - 1  # processes synchronise gradients on the last micro-batch only
                with acc.no_sync(s.unet) if not last else contextlib.nullcontext():
                    prompts, generator = self._micro_batch(epoch, update, micro)
                    t0 = time.perf_counter()
                    images, drift = self.generate(prompts, generator, k)
                    t1 = time.perf_counter()
                    values = s.reward(images, prompts).float()
                    loss = -values.mean() + cfg.kl_coef * drift
                    t2 = time.perf_counter()
                    acc.backward(loss / accum)
                timing["sample_s"] += t1 - t0
                timing["reward_s"] += t2 - t1
                timing["train_s"] += time.perf_counter() - t2
                rewards.append(values.detach())
                losses.append(float(loss.detach()))
                drifts.append(float(drift.detach()))
            t0 = time.perf_counter()
            grad_norms.append(s.clip_and_step())
            self.global_step += 1
            timing["train_s"] += time.perf_counter() - t0
        gathered = acc.gather(torch.cat(rewards).to(acc.device)).double().cpu()
        total_s = sum(timing.values())
        metrics: dict[str, Any] = {
            "global_step": self.global_step, **summary_stats("reward", gathered),
            "loss": acc.reduce(torch.tensor(float(np.mean(losses)), device=acc.device), reduction="mean").item(),
            "grad_norm": float(np.mean(grad_norms)), **timing,
            "samples_per_s": cfg.samples_per_epoch * acc.num_processes / total_s if total_s > 0 else 0.0,
            **peak_memory(),
        }
        if cfg.truncated_backprop_min is not None:
            metrics["truncated_backprop_k_mean"] = float(np.mean(ks))
        if cfg.kl_coef > 0:
            metrics["eps_drift"] = float(np.mean(drifts))
        return metrics
