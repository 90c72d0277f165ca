"""Reward-gradient fine-tuning of a diffusion model: DRaFT-K / AlignProp.

Each sample is a DDIM trajectory (with classifier-free guidance). The first
``T - K`` steps run without a graph; the last ``K`` steps and the VAE decode
keep it, so ``-mean(reward)`` backpropagates into the UNet's LoRA through K
UNet calls. With ``gradient_checkpointing`` each of those UNet calls and the
decode are recomputed during the backward pass, so the memory held between
forward and backward is one latent per step, not K UNets' activations.

Every random draw (prompts, initial noise, DDIM noise) is seeded from
``(seed, epoch, update, micro-batch, process)``, so resuming from a
checkpoint (LoRA + AdamW state) continues exactly as if never stopped.
"""

from __future__ import annotations

import math
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint

from alignment.ddim import ddim_step_full
from alignment.lora import add_lora, adapters_disabled
from alignment.prompts import load_prompts
from alignment.reward_grad_config import RewardGradConfig
from alignment.reward_worker import metric_name
from alignment.run_state import load_run_state, resolve_resume, save_run_state
from alignment.sampling import PromptEncoder, decode_latents, guided_noise_pred, initial_latents


def non_differentiable_parts(reward: Any) -> list[str]:
    """Names of the parts of ``reward`` (itself, or a composite's components) that give no gradient."""
    parts = getattr(reward, "components_", None)
    if isinstance(parts, dict):
        found = []
        for key, value in parts.items():
            inner = value[0] if isinstance(value, tuple) else value
            found += [f"{key}" if n == getattr(inner, "name", n) else f"{key}.{n}"
                      for n in non_differentiable_parts(inner)]
        if found or getattr(reward, "differentiable", False):
            return found
    if not getattr(reward, "differentiable", False):
        return [str(getattr(reward, "name", type(reward).__name__))]
    return []


def check_differentiable(reward: Any) -> None:
    """Refuse a reward gradient methods cannot use, naming the culprit."""
    bad = non_differentiable_parts(reward)
    if bad:
        raise ValueError(f"reward {getattr(reward, 'name', reward)!r} is not differentiable "
                         f"(non-differentiable: {', '.join(bad)}); reward-gradient training backpropagates "
                         "through the reward — use a differentiable reward, or DDPO for this one")


def _load_reward_spec(spec: str, field_name: str) -> Any:
    from reward import load_reward

    try:
        return load_reward(spec)
    except (ValueError, KeyError) as exc:
        raise ValueError(f"{field_name}: cannot load reward spec {spec!r}: {exc}") from exc


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


class RewardGradTrainer:
    """DRaFT-K / AlignProp trainer; see :class:`~alignment.RewardGradConfig` for the settings.

    Args:
        config: the run's settings.
        reward: a reward object (protocol: ``reward(images, prompts) -> (B,)``,
            ``.name``, ``.differentiable``); built from ``config.reward`` when ``None``.
    """

    def __init__(self, config: RewardGradConfig, reward: Any = None) -> None:
        from accelerate import Accelerator

        self.config = config
        if reward is None:
            reward = _load_reward_spec(config.reward, "reward")
        check_differentiable(reward)
        if config.kl_coef > 0 and not config.use_lora:
            raise ValueError("kl_coef > 0 needs use_lora=True (the frozen reference is the UNet with its LoRA off)")
        self.reward = reward
        self.prompts = load_prompts(config.prompts, "prompts")
        self.eval_prompts = load_prompts(config.eval_prompts, "eval_prompts", allow_empty=True)
        self.eval_rewards = [_load_reward_spec(spec, "eval_rewards") for spec in config.eval_rewards]
        self.accelerator = Accelerator(mixed_precision=config.mixed_precision)
        self.output_dir = Path(config.output_dir)
        self.resume_dir = resolve_resume(self.output_dir, config.resume_from)

        from alignment.pipeline import load_sd_pipeline, resolve_pretrained

        with self.accelerator.main_process_first():
            pretrained = resolve_pretrained(config.pretrained_model, config.output_dir, config.seed)
        device = self.accelerator.device
        pipe = load_sd_pipeline(pretrained, device=device)
        self.unet, self.vae, self.scheduler = pipe.unet, pipe.vae, pipe.scheduler
        self.encode = PromptEncoder(pipe.tokenizer, pipe.text_encoder, device)
        self.negative = self.encode([""])
        self.vae_scale = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.resolution = config.resolution or self.unet.config.sample_size * self.vae_scale
        torch.manual_seed(config.seed)  # LoRA init
        if config.use_lora:
            self.params = add_lora(self.unet, config.lora_rank)
        else:
            self.unet.requires_grad_(True)
            self.params = [p for p in self.unet.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=config.learning_rate,
                                           weight_decay=config.adam_weight_decay)
        self.first_epoch, self.global_step = 0, 0
        if self.resume_dir is not None:
            state = load_run_state(self.resume_dir, self.unet, self.optimizer, config.use_lora)
            self.first_epoch, self.global_step = int(state["epoch"]), int(state["global_step"])

    # -- one trajectory with gradients through its last K steps -------------------------------
    def _unet_eps(self, latents: torch.Tensor, t: torch.Tensor, embeds: torch.Tensor) -> torch.Tensor:
        with self.accelerator.autocast():
            x_in = self.scheduler.scale_model_input(latents, t)
            eps = guided_noise_pred(self.unet, x_in, t, embeds, self.negative, self.config.guidance_scale)
        return eps.float()

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        with self.accelerator.autocast():
            return decode_latents(self.vae, latents)

    def generate(self, prompts: list[str], generator: torch.Generator, grad_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``(B, 3, H, W)`` in [0, 1] for ``prompts``, differentiable through the last ``grad_steps`` steps.

        Also returns the KL regulariser (mean squared difference to the frozen
        UNet's predictions on the gradient steps; 0 when ``kl_coef`` is 0).
        """
        cfg = self.config
        device = self.accelerator.device
        embeds = self.encode(prompts)
        self.scheduler.set_timesteps(cfg.sample_num_steps, device=device)
        latents = initial_latents(len(prompts), self.unet, self.scheduler, self.resolution, self.vae_scale,
                                  generator, device, torch.float32)
        kl = torch.zeros((), device=device)
        n = len(self.scheduler.timesteps)
        use_ckpt = cfg.gradient_checkpointing and grad_steps > 0
        for i, t in enumerate(self.scheduler.timesteps):
            with_grad = i >= n - grad_steps
            with torch.set_grad_enabled(with_grad):
                if with_grad and use_ckpt:
                    eps = checkpoint(self._unet_eps, latents, t, embeds, use_reentrant=False)
                else:
                    eps = self._unet_eps(latents, t, embeds)
                if with_grad and cfg.kl_coef > 0:
                    with torch.no_grad(), adapters_disabled(self.unet):
                        ref = self._unet_eps(latents.detach(), t, embeds)
                    kl = kl + ((eps - ref) ** 2).mean() / grad_steps
                noise = None
                if cfg.sample_eta > 0:
                    noise = torch.randn(latents.shape, generator=generator, device=generator.device).to(device)
                latents = ddim_step_full(self.scheduler, eps, t, latents, cfg.sample_eta,
                                         variance_noise=noise).prev_sample
        with torch.set_grad_enabled(grad_steps > 0):
            if use_ckpt:
                images = checkpoint(self._decode, latents, use_reentrant=False)
            else:
                images = self._decode(latents)
        return images, kl

    # -- training --------------------------------------------------------------------------------
    def _micro_batch(self, epoch: int, update: int, micro: int) -> tuple[list[str], torch.Generator]:
        rank = self.accelerator.process_index
        rng = np.random.default_rng(_seed(self.config.seed, epoch, update, micro, rank, 1))
        prompts = [self.prompts[i] for i in rng.integers(0, len(self.prompts), self.config.train_batch_size)]
        generator = torch.Generator("cpu").manual_seed(_seed(self.config.seed, epoch, update, micro, rank, 2))
        return prompts, generator

    def _sync_gradients(self) -> None:
        """Average the trainable gradients over processes (one flat all-reduce)."""
        if self.accelerator.num_processes == 1:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        flat /= self.accelerator.num_processes
        offset = 0
        for p, g in zip(self.params, grads):
            p.grad = flat[offset:offset + g.numel()].view_as(g).clone()
            offset += g.numel()

    def train_epoch(self, epoch: int) -> dict[str, float]:
        cfg = self.config
        self.unet.train()
        rewards, losses, grad_norms, kls = [], [], [], []
        timing = {"sample_s": 0.0, "reward_s": 0.0, "train_s": 0.0}
        for update in range(cfg.train_steps_per_epoch):
            self.optimizer.zero_grad(set_to_none=True)
            for micro in range(cfg.train_gradient_accumulation_steps):
                prompts, generator = self._micro_batch(epoch, update, micro)
                start = time.perf_counter()
                images, kl = self.generate(prompts, generator, cfg.truncated_backprop_steps)
                mid = time.perf_counter()
                values = self.reward(images, prompts)
                loss = -values.float().mean() + cfg.kl_coef * kl
                after_reward = time.perf_counter()
                (loss / cfg.train_gradient_accumulation_steps).backward()
                timing["sample_s"] += mid - start
                timing["reward_s"] += after_reward - mid
                timing["train_s"] += time.perf_counter() - after_reward
                rewards.append(values.detach().float())
                losses.append(float(loss.detach()))
                kls.append(float(kl.detach()))
            start = time.perf_counter()
            self._sync_gradients()
            max_norm = cfg.max_grad_norm if cfg.max_grad_norm > 0 else math.inf
            grad_norms.append(float(torch.nn.utils.clip_grad_norm_(self.params, max_norm)))
            self.optimizer.step()
            self.global_step += 1
            timing["train_s"] += time.perf_counter() - start
        gathered = self.accelerator.gather(torch.cat(rewards)).cpu()
        total_s = sum(timing.values())
        metrics = {
            "epoch": epoch, "global_step": self.global_step,
            "reward_mean": float(gathered.mean()), "reward_std": float(gathered.std(unbiased=False)),
            "reward_min": float(gathered.min()), "reward_max": float(gathered.max()),
            "loss": float(np.mean(losses)), "grad_norm": float(np.mean(grad_norms)),
            **timing, "samples_per_s": cfg.samples_per_epoch / total_s if total_s > 0 else 0.0,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        }
        if cfg.kl_coef > 0:
            metrics["kl"] = float(np.mean(kls))
        if torch.cuda.is_available():
            metrics["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
        return metrics

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """The training reward and every eval reward on the held-out prompts (fixed noise): ``eval_<name>_mean``."""
        if not self.eval_prompts or not self.accelerator.is_main_process:
            return {}
        self.unet.eval()
        prompts = [p for p in self.eval_prompts for _ in range(self.config.num_eval_samples_per_prompt)]
        generator = torch.Generator("cpu").manual_seed(_seed(self.config.seed, 7777))
        images = torch.cat([self.generate(prompts[i:i + self.config.train_batch_size], generator, 0)[0]
                            for i in range(0, len(prompts), self.config.train_batch_size)])
        out = {}
        for reward in [self.reward, *self.eval_rewards]:
            values = reward(images, prompts).float()
            key = f"eval_{metric_name(reward.name)}"
            out[f"{key}_mean"], out[f"{key}_std"] = float(values.mean()), float(values.std(unbiased=False))
        return out

    def save_checkpoint(self, epochs_done: int) -> Path | None:
        """``checkpoint-N/`` (N = epochs done), written atomically by the main process."""
        if not self.accelerator.is_main_process:
            return None
        return save_run_state(self.output_dir, epochs_done, self.unet, self.optimizer, self.config.use_lora,
                              {"global_step": self.global_step}, keep=self.config.checkpoints_total_limit)

    def train(self) -> dict[str, Any]:
        """Run ``num_epochs`` epochs (from the resumed one); returns the last epoch's metrics."""
        from artquant_core.config import config_to_dict
        from artquant_core.tracking import RunTracker

        cfg = self.config
        tracker = RunTracker(self.output_dir, log_with=cfg.log_with, config=config_to_dict(cfg),
                             run_name="reward-grad", resume_step=self.first_epoch - 1 if self.resume_dir else None,
                             is_main_process=self.accelerator.is_main_process)
        metrics: dict[str, Any] = {}
        try:
            for epoch in range(self.first_epoch, cfg.num_epochs):
                metrics = self.train_epoch(epoch)
                metrics.update(self.evaluate())
                tracker.log(metrics, step=epoch)
                keys = ["reward_mean"] + [k for k in metrics if k.startswith("eval_") and k.endswith("_mean")]
                tracker.plot("reward_curve.png", "epoch", keys, title="reward-gradient fine-tuning (mean ± std)",
                             std_suffix="_std", ylabel="reward")
                done = epoch + 1
                if (cfg.checkpoint_every and done % cfg.checkpoint_every == 0) or done == cfg.num_epochs:
                    self.save_checkpoint(done)
                self.accelerator.wait_for_everyone()
        finally:
            tracker.close()
        return metrics
