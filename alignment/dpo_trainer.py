"""Diffusion-DPO: fine-tune a diffusion model on preference pairs (Wallace et al. 2023).

Each epoch: (1) take preference pairs, from ``pairs_file`` or made now by
sampling ``samples_per_prompt`` images per prompt from the current policy and
pairing each prompt's best and worst image under the reward; (2) noise both
images of a pair with the same noise at one random timestep; (3) the DPO loss
compares the policy's denoising errors on the two with the frozen reference's
(LoRA adapters off), so the policy learns to denoise the chosen image better
than the rejected one, relative to where it started.

Every random draw is seeded from ``(seed, epoch, process, ...)``: a resumed run
continues exactly.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable

import numpy as np
import torch

from alignment.dpo_config import DiffusionDPOConfig
from alignment.dpo_loss import diffusion_dpo_loss
from alignment.fine_tuning import FineTuningTrainer
from alignment.preference_pairs import PreferencePair, load_pair_pixels, load_preference_pairs
from alignment.reward_worker import score_batch
from alignment.run_setup import peak_memory, summary_stats
from alignment.sampling import derive_seed, sample_trajectories


class DiffusionDPOTrainer(FineTuningTrainer):
    """Diffusion-DPO trainer. ``DiffusionDPOTrainer(config, reward=None).train() -> dict`` of final metrics.

    Args:
        config: a :class:`~alignment.DiffusionDPOConfig`; its ``pairs_file`` is read and checked row by row
            before any model loads.
        reward: a reward following the protocol; ``None`` loads ``config.reward``. It ranks sampled images
            into pairs (without ``pairs_file``) and scores the held-out prompts.
    """

    method = "dpo"

    def __init__(self, config: DiffusionDPOConfig, reward: Callable | None = None) -> None:
        self.pairs = load_preference_pairs(config.pairs_file) if config.pairs_file else None
        super().__init__(config, reward)

    # ---------------------------------------------------------------- pairs
    def _file_pairs(self, gen: torch.Generator) -> tuple[list[str], torch.Tensor, torch.Tensor]:
        """This process's share of the pairs file, as (prompts, chosen latents, rejected latents)."""
        acc = self.setup.accelerator
        mine: list[PreferencePair] = self.pairs[acc.process_index::acc.num_processes]
        if not mine:
            raise ValueError(f"pairs_file has {len(self.pairs)} pairs, fewer than the {acc.num_processes} processes")
        chosen = self._encode_images(load_pair_pixels([p.chosen for p in mine], self.config.resolution))
        rejected = self._encode_images(load_pair_pixels([p.rejected for p in mine], self.config.resolution))
        return [p.prompt for p in mine], chosen, rejected

    @torch.no_grad()
    def _encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """VAE latents of images in [0, 1] (the posterior mean: deterministic), scaled as the UNet sees them."""
        vae = self.setup.vae
        x = (pixels * 2 - 1).to(device=self.setup.accelerator.device, dtype=vae.dtype)
        latents = torch.cat([vae.encode(x[i:i + 8]).latent_dist.mean for i in range(0, len(x), 8)])
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        return ((latents.float() - shift) * vae.config.scaling_factor).float()

    def _sampled_pairs(self, gen: torch.Generator) -> tuple[list[str], torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Sample ``samples_per_prompt`` images for each of ``prompts_per_epoch`` prompts; pair best with worst."""
        cfg, s = self.config, self.setup
        acc, unet = s.accelerator, s.policy_unet()
        ids = torch.randint(len(s.prompts), (cfg.prompts_per_epoch,), generator=gen)
        prompts, chosen, rejected, rewards, margins = [], [], [], [], []
        unet.eval()
        with s.sampling_policy():
            for i in ids.tolist():
                group = [s.prompts[i]] * cfg.samples_per_prompt
                with acc.autocast():
                    traj = sample_trajectories(unet, s.scheduler, s.vae, s.encode(group), s.negative_embeds,
                                               num_steps=cfg.sample_num_steps, guidance_scale=cfg.guidance_scale,
                                               eta=cfg.sample_eta, resolution=cfg.resolution, generator=gen)
                values, _ = score_batch(s.reward, traj.images, group)
                rewards.append(values)
                best, worst = int(values.argmax()), int(values.argmin())
                if values[best] == values[worst]:
                    continue  # a tie says nothing about preference
                prompts.append(s.prompts[i])
                chosen.append(traj.latents[best, -1])
                rejected.append(traj.latents[worst, -1])
                margins.append(float(values[best] - values[worst]))
        gathered = acc.gather(torch.cat(rewards).to(acc.device)).cpu()
        metrics = {**summary_stats("reward", gathered), "num_pairs": len(prompts),
                   "pair_reward_margin": float(np.mean(margins)) if margins else 0.0}
        if not prompts:
            return [], torch.empty(0), torch.empty(0), metrics
        return prompts, torch.stack(chosen).float(), torch.stack(rejected).float(), metrics

    # ------------------------------------------------------------- training
    def pair_loss(self, prompts: list[str], chosen: torch.Tensor, rejected: torch.Tensor,
                  gen: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The DPO loss of a micro-batch of pairs, each noised at one random timestep (same noise for both).

        Args:
            prompts: one per pair.
            chosen, rejected: ``(B, C, h, w)`` clean latents (scaled).
            gen: CPU generator for the timesteps and noise.
        """
        s, device = self.setup, self.setup.accelerator.device
        b = chosen.shape[0]
        num_train = s.scheduler.config.num_train_timesteps
        t = torch.randint(0, num_train, (b,), generator=gen).to(device)
        noise = torch.randn(chosen.shape, generator=gen).to(device)
        x0 = torch.cat([chosen, rejected]).to(device)
        noise2, t2 = torch.cat([noise, noise]), torch.cat([t, t])
        x_t = s.scheduler.add_noise(x0, noise2, t2)
        if s.scheduler.config.prediction_type == "v_prediction":
            target = s.scheduler.get_velocity(x0, noise2, t2)
        else:
            target = noise2
        embeds = s.encode(prompts)
        embeds2 = torch.cat([embeds, embeds])

        def errors(unet) -> torch.Tensor:
            with s.accelerator.autocast():
                pred = unet(x_t, t2, encoder_hidden_states=embeds2, return_dict=False)[0]
            return ((pred.float() - target) ** 2).mean(dim=tuple(range(1, pred.ndim)))

        with torch.no_grad(), s.reference_policy() as reference:
            ref_err = errors(reference)
        err = errors(s.unet)
        return diffusion_dpo_loss(err[:b], err[b:], ref_err[:b], ref_err[b:], self.config.beta)

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """Take this epoch's pairs, then ``train_num_inner_epochs`` passes of DPO updates over them."""
        cfg, s = self.config, self.setup
        acc, accum = s.accelerator, cfg.train_gradient_accumulation_steps
        gen = torch.Generator().manual_seed(derive_seed(cfg.seed, epoch, acc.process_index))
        t0 = time.perf_counter()
        if self.pairs is not None:
            prompts, chosen, rejected = self._file_pairs(gen)
            metrics: dict[str, Any] = {"num_pairs": len(prompts)}
        else:
            prompts, chosen, rejected, metrics = self._sampled_pairs(gen)
        metrics["sample_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        stats: dict[str, list[float]] = {"loss": [], "implicit_acc": [], "model_margin": [], "ref_margin": []}
        grad_norms = []
        s.unet.train()
        # Every process runs the same number of micro-batches (collectives must match): a process with
        # fewer pairs reuses its own in the order drawn; one with none contributes a zero-weight loss.
        n_local = torch.tensor([len(prompts)], device=acc.device)
        n_max = int(acc.gather(n_local).max())
        per_pass = -(-n_max // cfg.train_batch_size)
        per_pass = -(-per_pass // accum) * accum  # whole updates
        for _ in range(cfg.train_num_inner_epochs if n_max else 0):
            order = torch.randperm(max(1, len(prompts)), generator=gen)
            for micro in range(per_pass):
                idx = order[torch.arange(micro * cfg.train_batch_size, (micro + 1) * cfg.train_batch_size) % len(order)]
                last = (micro + 1) % accum == 0
                with acc.no_sync(s.unet) if not last else contextlib.nullcontext():
                    if prompts:
                        loss, st = self.pair_loss([prompts[i] for i in idx], chosen[idx], rejected[idx], gen)
                    else:
                        loss, st = sum(p.sum() * 0 for p in s.trainable_params), {}
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"non-finite DPO loss ({loss.item()}) at epoch {epoch}; the step "
                                                 "was not applied and the last checkpoint is intact")
                    acc.backward(loss / accum)
                if prompts:
                    stats["loss"].append(float(loss.detach()))
                    for key, value in st.items():
                        stats[key].append(float(value))
                if last:
                    grad_norms.append(s.clip_and_step())
        metrics["train_s"] = time.perf_counter() - t0
        metrics.update({k: float(np.mean(v)) if v else None for k, v in stats.items()})
        metrics["grad_norm"] = float(np.mean(grad_norms)) if grad_norms else None
        metrics.update(peak_memory())
        return metrics
