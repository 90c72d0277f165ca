"""Reward-gradient fine-tuning of a diffusion model: DRaFT-K / AlignProp.

Each sample is a DDIM trajectory with classifier-free guidance. The first
``T - K`` steps run without a graph; the last ``K`` steps and the VAE decode
keep it, so ``-mean(reward)`` backpropagates into the UNet (its LoRA) through
K UNet calls. With ``gradient_checkpointing`` each of those UNet calls and the
decode are recomputed in the backward pass: between forward and backward only
one latent per step is held, not K UNets' activations.

Every random draw (prompts, initial noise, DDIM noise) is seeded from
``(seed, epoch, update, micro-batch, process)``; a checkpoint (LoRA + AdamW
state) therefore resumes exactly where the run stopped.
"""

from __future__ import annotations

import math
import resource
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint

from alignment.ddim import ddim_step_full
from alignment.eval_scores import hacking_note, held_out_changes, save_eval_scores
from alignment.lora import adapters_disabled, add_lora
from alignment.pipeline import import_model_libraries
from alignment.prompts import load_prompts
from alignment.reward_grad_config import RewardGradConfig
from alignment.reward_checks import check_differentiable, load_reward_spec
from alignment.reward_worker import metric_name
from alignment.run_state import load_run_state, resolve_resume, save_run_state
from alignment.sampling import (PromptEncoder, derive_seed, decode_latents, guided_noise_pred, initial_latents,
                                sample_held_out)

_DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class RewardGradTrainer:
    """DRaFT-K / AlignProp trainer. ``RewardGradTrainer(config, reward=None).train() -> dict`` of final metrics.

    Args:
        config: a :class:`~alignment.RewardGradConfig`.
        reward: a differentiable reward (protocol: ``reward(images, prompts) -> (B,)``, ``.name``,
            ``.differentiable``); ``None`` loads ``config.reward``. A non-differentiable reward is
            refused with a ``ValueError`` before any model is loaded.
    """

    def __init__(self, config: RewardGradConfig, reward: Callable | None = None) -> None:
        from accelerate import Accelerator

        import_model_libraries()  # before any reward or pipeline loads transformers
        cfg = self.config = config
        cfg.validate()
        self.reward = reward if reward is not None else load_reward_spec(cfg.reward, "reward")
        check_differentiable(self.reward)
        self.prompts = load_prompts(cfg.prompts, "prompts")
        self.eval_prompts = load_prompts(cfg.eval_prompts, "eval_prompts", allow_empty=True)
        self.eval_rewards = [load_reward_spec(spec, "eval_rewards") for spec in cfg.eval_rewards]
        self.resume_dir = resolve_resume(cfg.output_dir, cfg.resume_from)
        # cpu=True without CUDA: under `accelerate launch --multi_gpu` on a CPU machine the processes
        # then form a gloo group instead of each running alone.
        self.accelerator = acc = Accelerator(mixed_precision=cfg.mixed_precision, cpu=not torch.cuda.is_available())
        with acc.main_process_first():
            from alignment.pipeline import load_sd_pipeline, resolve_pretrained

            pretrained = resolve_pretrained(cfg.pretrained_model, cfg.output_dir, cfg.seed)
        for r in (self.reward, *self.eval_rewards):
            if acc.device.type != "cpu" and callable(getattr(r, "to", None)):
                r.to(acc.device)

        pipe = load_sd_pipeline(pretrained, device=acc.device)
        self.unet, self.vae, self.scheduler = pipe.unet, pipe.vae, pipe.scheduler
        dtype = _DTYPES[cfg.mixed_precision] if acc.device.type != "cpu" else torch.float32
        if dtype != torch.float32:  # frozen parts in half precision on GPU
            self.vae.to(dtype=dtype)
            pipe.text_encoder.to(dtype=dtype)
        if cfg.channels_last:
            self.unet.to(memory_format=torch.channels_last)
            self.vae.to(memory_format=torch.channels_last)
        torch.manual_seed(cfg.seed)  # the LoRA's initial A matrices
        if cfg.use_lora:
            if dtype != torch.float32:
                self.unet.to(dtype=dtype)
            self.params = add_lora(self.unet, cfg.lora_rank)
        else:
            self.unet.requires_grad_(True)
            self.params = list(self.unet.parameters())
        self.optimizer = torch.optim.AdamW(self.params, lr=cfg.learning_rate, weight_decay=cfg.adam_weight_decay)
        self.encode = PromptEncoder(pipe.tokenizer, pipe.text_encoder, acc.device)
        self.negative_embeds = self.encode([cfg.negative_prompt])
        self.vae_scale = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.global_step = 0

    # -- one batch of images, differentiable through the last K steps -------------------------
    def _guided_eps(self, latents: torch.Tensor, t: torch.Tensor, embeds: torch.Tensor) -> torch.Tensor:
        with self.accelerator.autocast():
            x_in = self.scheduler.scale_model_input(latents, t)
            eps = guided_noise_pred(self.unet, x_in, t, embeds, self.negative_embeds, self.config.guidance_scale)
        return eps.float()

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        with self.accelerator.autocast():
            return decode_latents(self.vae, latents)

    def generate(self, prompts: list[str], generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``(B, 3, H, W)`` in [0, 1], differentiable through the last K steps and the decode.

        Also returns the KL regulariser: the mean squared difference between the
        tuned and the frozen (LoRA off) noise predictions on the K gradient
        steps (0 unless ``kl_coef > 0``).
        """
        cfg, device = self.config, self.accelerator.device
        k = cfg.truncated_backprop_steps
        embeds = self.encode(prompts)
        self.scheduler.set_timesteps(cfg.sample_num_steps, device=device)
        timesteps = self.scheduler.timesteps
        latents = initial_latents(len(prompts), self.unet, self.scheduler, cfg.resolution, self.vae_scale,
                                  generator, device, torch.float32)
        kl = torch.zeros((), device=device)
        for i, t in enumerate(timesteps):
            with_grad = i >= len(timesteps) - k
            with torch.set_grad_enabled(with_grad):
                if with_grad and cfg.gradient_checkpointing:
                    eps = checkpoint(self._guided_eps, latents, t, embeds, use_reentrant=False)
                else:
                    eps = self._guided_eps(latents, t, embeds)
                if with_grad and cfg.kl_coef > 0:
                    with torch.no_grad(), adapters_disabled(self.unet):
                        ref = self._guided_eps(latents.detach(), t, embeds)
                    kl = kl + ((eps - ref) ** 2).mean() / k
                noise = None
                if cfg.sample_eta > 0:  # drawn on the CPU generator: same noise on any device
                    noise = torch.randn(latents.shape, generator=generator).to(device)
                latents = ddim_step_full(self.scheduler, eps, t, latents, cfg.sample_eta,
                                         variance_noise=noise).prev_sample
        if cfg.gradient_checkpointing:
            images = checkpoint(self._decode, latents, use_reentrant=False)
        else:
            images = self._decode(latents)
        return images, kl

    # -- training --------------------------------------------------------------------------------
    def _micro_batch(self, epoch: int, update: int, micro: int) -> tuple[list[str], torch.Generator]:
        rank = self.accelerator.process_index
        rng = np.random.default_rng(derive_seed(self.config.seed, epoch, update, micro, rank, 1))
        prompts = [self.prompts[i] for i in rng.integers(0, len(self.prompts), self.config.train_batch_size)]
        return prompts, torch.Generator().manual_seed(derive_seed(self.config.seed, epoch, update, micro, rank, 2))

    def _all_reduce_gradients(self) -> None:
        """Average the trainable gradients over processes in one flat all-reduce (CPU gloo or NCCL)."""
        n = self.accelerator.num_processes
        if n == 1:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        flat = torch.cat([g.reshape(-1) for g in grads]) / n
        torch.distributed.all_reduce(flat)
        offset = 0
        for p, g in zip(self.params, grads):
            p.grad = flat[offset:offset + g.numel()].view_as(g).clone()
            offset += g.numel()

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """``train_steps_per_epoch`` updates on fresh samples; returns the epoch's metrics."""
        cfg, acc = self.config, self.accelerator
        self.unet.train()
        rewards, losses, grad_norms, kls = [], [], [], []
        timing = {"sample_s": 0.0, "reward_s": 0.0, "train_s": 0.0}
        for update in range(cfg.train_steps_per_epoch):
            self.optimizer.zero_grad(set_to_none=True)
            for micro in range(cfg.train_gradient_accumulation_steps):
                prompts, generator = self._micro_batch(epoch, update, micro)
                t0 = time.perf_counter()
                images, kl = self.generate(prompts, generator)
                t1 = time.perf_counter()
                values = self.reward(images, prompts).float()
                loss = -values.mean() + cfg.kl_coef * kl
                t2 = time.perf_counter()
                (loss / cfg.train_gradient_accumulation_steps).backward()
                timing["sample_s"] += t1 - t0
                timing["reward_s"] += t2 - t1
                timing["train_s"] += time.perf_counter() - t2
                rewards.append(values.detach())
                losses.append(float(loss.detach()))
                kls.append(float(kl.detach()))
            t0 = time.perf_counter()
            self._all_reduce_gradients()
            max_norm = cfg.max_grad_norm if cfg.max_grad_norm > 0 else math.inf
            grad_norms.append(float(torch.nn.utils.clip_grad_norm_(self.params, max_norm)))
            self.optimizer.step()
            self.global_step += 1
            timing["train_s"] += time.perf_counter() - t0
        gathered = acc.gather(torch.cat(rewards).to(acc.device)).double().cpu()
        total_s = sum(timing.values())
        metrics: dict[str, Any] = {
            "global_step": self.global_step,
            "reward_mean": gathered.mean().item(), "reward_std": gathered.std(unbiased=False).item(),
            "reward_min": gathered.min().item(), "reward_max": gathered.max().item(),
            "loss": acc.reduce(torch.tensor(float(np.mean(losses)), device=acc.device), reduction="mean").item(),
            "grad_norm": float(np.mean(grad_norms)), **timing,
            "samples_per_s": cfg.samples_per_epoch * acc.num_processes / total_s if total_s > 0 else 0.0,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        }
        if cfg.kl_coef > 0:
            metrics["kl"] = float(np.mean(kls))
        if torch.cuda.is_available():
            metrics["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
        return metrics

    def evaluate(self, epoch: int) -> dict[str, float]:
        """Held-out prompts, fixed noise: the training reward and every eval reward → ``eval_<name>_mean``."""
        cfg = self.config
        if not self.eval_prompts or not self.accelerator.is_main_process:
            return {}
        prompts = [p for p in self.eval_prompts for _ in range(cfg.eval_num_per_prompt)]
        self.unet.eval()
        images = sample_held_out(self.unet, self.scheduler, self.vae, self.encode, self.negative_embeds, prompts,
                                 seed=cfg.seed, num_steps=cfg.sample_num_steps, guidance_scale=cfg.guidance_scale,
                                 eta=cfg.sample_eta, resolution=cfg.resolution, autocast=self.accelerator.autocast)
        out: dict[str, float] = {}
        captions, per_image = None, {}
        with torch.no_grad():
            for reward in [self.reward, *self.eval_rewards]:
                values = reward(images, prompts).double().cpu()
                key = f"eval_{metric_name(reward.name)}"
                out.update({f"{key}_mean": values.mean().item(), f"{key}_std": values.std(unbiased=False).item()})
                per_image[metric_name(reward.name)] = scores = values.tolist()
                captions = captions or [f"{v:.3f}" for v in scores]
        save_eval_scores(cfg.output_dir, epoch, prompts, per_image)
        out.update(held_out_changes(cfg.output_dir, epoch, metric_name(self.reward.name),
                                    [metric_name(r.name) for r in self.eval_rewards]))
        from artquant_core.plots import image_grid

        image_grid(images.cpu(), Path(cfg.output_dir) / "eval" / f"epoch_{epoch:04d}.png", captions=captions,
                   ncols=max(1, min(8, len(prompts))), cell=96)
        return out

    # -- loop, checkpoints -----------------------------------------------------------------------
    def save_checkpoint(self, epochs_done: int) -> None:
        """``checkpoint-N/`` (N = epochs done): LoRA (diffusers format), AdamW, RNG, step. Atomic."""
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            save_run_state(self.config.output_dir, epochs_done, self.unet, self.optimizer, self.config.use_lora,
                           {"global_step": self.global_step}, keep=self.config.num_checkpoint_limit)
        self.accelerator.wait_for_everyone()

    def _resume(self) -> int:
        if self.resume_dir is None:
            return 0
        state = load_run_state(self.resume_dir, self.unet, self.optimizer, self.config.use_lora)
        self.global_step = int(state.get("global_step", 0))
        return int(state["epoch"])

    def train(self) -> dict[str, Any]:
        """Run the remaining epochs; returns the last row logged (with the final evaluation)."""
        from artquant_core.config import config_to_dict
        from artquant_core.tracking import RunTracker

        cfg, acc = self.config, self.accelerator
        start = self._resume()
        tracker = RunTracker(cfg.output_dir, log_with=cfg.log_with, config=config_to_dict(cfg),
                             project=cfg.tracker_project, run_name=Path(cfg.output_dir).name,
                             resume_step=start - 1 if self.resume_dir is not None else None,
                             is_main_process=acc.is_main_process)

        def log(row: dict[str, Any], step: int) -> dict[str, Any]:
            tracker.log(row, step)
            rows = tracker.rows()
            keys = ["reward_mean"] + sorted({k for r in rows for k in r
                                             if k.startswith("eval_") and k.endswith("_mean")})
            tracker.plot("reward_curve.png", "epoch", keys,
                         title="reward-gradient fine-tuning (mean ± std)" + hacking_note(rows),
                         std_suffix="_std", ylabel="reward")
            return row

        final: dict[str, Any] = {}
        try:
            for epoch in range(start, cfg.num_epochs):
                row: dict[str, Any] = {"epoch": epoch}
                if cfg.eval_every and epoch % cfg.eval_every == 0:
                    row.update(self.evaluate(epoch))
                row.update(self.train_epoch(epoch))
                final = log(row, epoch)
                if cfg.checkpoint_every and (epoch + 1) % cfg.checkpoint_every == 0 and epoch + 1 < cfg.num_epochs:
                    self.save_checkpoint(epoch + 1)
            if start < cfg.num_epochs:
                if cfg.eval_every:
                    final = {**final, **log({"epoch": cfg.num_epochs, **self.evaluate(cfg.num_epochs)},
                                            cfg.num_epochs)}
                self.save_checkpoint(cfg.num_epochs)
        finally:
            tracker.close()
        return final
