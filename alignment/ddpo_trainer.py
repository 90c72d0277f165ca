"""DDPO: policy-gradient fine-tuning of a diffusion model against a reward (Black et al. 2023).

Each epoch: sample trajectories with DDIM (eta > 0) and guidance, recording
every step's log-probability; score the images (on a worker thread, while the
next batch samples); turn rewards into per-prompt normalised advantages; then
PPO-clip updates on the recorded steps.

Training is timestep-batched: all trained timesteps of a micro-batch (or
chunks of ``train_timestep_batch`` of them) go through ONE UNet call with a
per-sample timestep vector, guidance included (a doubled batch). The loss of
that call is scaled so the gradient equals the reference's accumulation over
timesteps, but the UNet sees a few large batches instead of many small ones.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable

import numpy as np
import torch

from alignment.ddim import check_log_prob_schedule, ddim_step_full
from alignment.ddpo_config import DDPOConfig
from alignment.ddpo_loss import gaussian_kl, ppo_clip_loss
from alignment.fine_tuning import FineTuningTrainer
from alignment.reward_worker import AsyncRewarder, metric_name
from alignment.run_setup import peak_memory, summary_stats
from alignment.sampling import derive_seed, guided_noise_pred, sample_trajectories
from alignment.stat_tracking import PerPromptStatTracker


class DDPOTrainer(FineTuningTrainer):
    """DDPO trainer. ``DDPOTrainer(config, reward=None).train() -> dict`` of final metrics.

    Args:
        config: a ``DDPOConfig``; validated before anything is loaded.
        reward: any callable following the reward protocol (``reward(images, prompts) -> (B,)``,
            ``.name``); ``None`` loads ``config.reward`` with ``reward.load_reward``.
    """

    method = "ddpo"

    def __init__(self, config: DDPOConfig, reward: Callable | None = None) -> None:
        super().__init__(config, reward)  # checks every input, then loads models / optimizer
        check_log_prob_schedule(self.setup.scheduler)
        self.stat_tracker = PerPromptStatTracker(config.per_prompt_buffer_size, config.per_prompt_min_count)
        self.rewarder = AsyncRewarder(self.setup.reward)

    def trainer_state(self) -> dict[str, Any]:
        return {"stat_tracker": self.stat_tracker.state_dict()}

    def load_trainer_state(self, state: dict[str, Any]) -> None:
        self.stat_tracker.load_state_dict(state["stat_tracker"])

    def close(self) -> None:
        self.rewarder.close()

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """Sample and score ``sample_num_batches_per_epoch`` batches, then ``train_num_inner_epochs`` passes."""
        samples, metrics = self._sample(epoch)
        t0 = time.perf_counter()
        for inner in range(self.config.train_num_inner_epochs):
            metrics.update(self._train_inner(samples, epoch, inner))
        metrics["train_s"] = time.perf_counter() - t0
        n = samples["latents"].shape[0] * self.setup.accelerator.num_processes
        metrics["samples_per_s"] = n / (metrics["sample_s"] + metrics["reward_s"] + metrics["train_s"])
        metrics.update(peak_memory())
        return metrics

    # -------------------------------------------------------------- sampling
    def _sample(self, epoch: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        cfg, s = self.config, self.setup
        acc, unet = s.accelerator, s.policy_unet()
        gen = torch.Generator().manual_seed(derive_seed(cfg.seed, epoch, acc.process_index))
        t0 = time.perf_counter()
        batches, futures, prompt_ids = [], [], []
        unet.eval()
        with s.sampling_policy():
            for _ in range(cfg.sample_num_batches_per_epoch):
                ids = torch.randint(len(s.prompts), (cfg.sample_batch_size,), generator=gen)
                prompts = [s.prompts[i] for i in ids]
                with acc.autocast():
                    traj = sample_trajectories(unet, s.scheduler, s.vae, s.encode(prompts), s.negative_embeds,
                                               num_steps=cfg.sample_num_steps, guidance_scale=cfg.guidance_scale,
                                               eta=cfg.sample_eta, resolution=cfg.resolution, generator=gen)
                futures.append(self.rewarder.submit(traj.images, prompts))  # scored while the next batch samples
                batches.append(traj)
                prompt_ids.append(ids)
        sample_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        scored = [f.result() for f in futures]
        reward_s = time.perf_counter() - t1  # the part of scoring that did not overlap sampling
        local = torch.cat([r for r, _ in scored])
        rewards = acc.gather(local.to(acc.device)).cpu()
        ids_all = acc.gather(torch.cat(prompt_ids).to(acc.device)).cpu()
        metrics = {"sample_s": sample_s, "reward_s": reward_s, "num_samples": rewards.numel(),
                   **summary_stats("reward", rewards)}
        for name in scored[0][1]:
            comp = acc.gather(torch.cat([c[name] for _, c in scored]).to(acc.device)).cpu()
            metrics[f"reward_{metric_name(name)}_mean"] = comp.mean().item()
        all_prompts = [s.prompts[i] for i in ids_all]
        if cfg.per_prompt_stat_tracking:
            adv = self.stat_tracker.update(all_prompts, rewards.numpy())
        else:
            adv = ((rewards - rewards.mean()) / (rewards.std(unbiased=False) + 1e-6)).numpy()
        n = local.shape[0]
        mine = torch.as_tensor(adv[acc.process_index * n:(acc.process_index + 1) * n], dtype=torch.float32)
        samples = {
            "latents": torch.cat([b.latents for b in batches]),
            "log_probs": torch.cat([b.log_probs for b in batches]).float(),
            "prompt_embeds": torch.cat([b.prompt_embeds for b in batches]),
            "advantages": mine.to(acc.device),
            "timesteps": batches[0].timesteps,
        }
        return samples, metrics

    # -------------------------------------------------------------- training
    def _train_inner(self, samples: dict[str, torch.Tensor], epoch: int, inner: int) -> dict[str, float]:
        cfg, s = self.config, self.setup
        acc = s.accelerator
        gen = torch.Generator().manual_seed(derive_seed(cfg.seed, epoch, acc.process_index, inner, 7))
        n, num_steps = samples["latents"].shape[0], samples["timesteps"].shape[0]
        order = torch.randperm(n, generator=gen)
        # per sample, a random subset of its timesteps (train_timestep_fraction of them)
        k = max(1, int(num_steps * cfg.train_timestep_fraction))
        steps = torch.stack([torch.randperm(num_steps, generator=gen)[:k] for _ in range(n)])
        micro = [order[i:i + cfg.train_batch_size] for i in range(0, n, cfg.train_batch_size)]
        accum = cfg.train_gradient_accumulation_steps
        stats: dict[str, list[float]] = {"loss": [], "approx_kl": [], "clipfrac": [], "kl": []}
        s.unet.train()
        for m, idx in enumerate(micro):
            sync = (m + 1) % accum == 0
            for key, v in self.backward_micro_batch(samples, idx, steps[idx], accum, sync, epoch).items():
                stats[key].extend(v)
            if sync:
                s.clip_and_step()
        return {k: float(np.mean(v)) if v else None for k, v in stats.items()}

    def backward_micro_batch(self, samples, idx: torch.Tensor, cols: torch.Tensor, accum: int, sync: bool,
                             epoch: int = 0) -> dict[str, list[float]]:
        """Accumulate the gradient of micro-batch ``idx`` over its trained timestep positions ``cols`` (b, k).

        All k timesteps go through one UNet call (or chunks of ``train_timestep_batch``); each chunk's
        loss is weighted by its share of the k timesteps, so the gradient is the same as one backward
        per timestep. Gradients are synchronised across processes only with ``sync``.
        """
        acc, k = self.setup.accelerator, cols.shape[1]
        chunk = self.config.train_timestep_batch or k
        parts = [cols[:, j:j + chunk] for j in range(0, k, chunk)]
        stats: dict[str, list[float]] = {}
        for c, part in enumerate(parts):
            last = sync and c == len(parts) - 1
            with acc.no_sync(self.setup.unet) if not last else contextlib.nullcontext():
                loss, st = self._chunk_loss(samples, idx, part)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"non-finite DDPO loss ({loss.item()}) at epoch {epoch}; the step was not applied "
                        "and the last checkpoint is intact")
                acc.backward(loss * part.shape[1] / (k * accum))
            for key, v in st.items():
                stats.setdefault(key, []).append(float(v))
        return stats

    def _chunk_loss(self, samples, idx: torch.Tensor, cols: torch.Tensor):
        """PPO(-KL) loss of samples ``idx`` at their timestep positions ``cols`` in ONE UNet call."""
        cfg, s = self.config, self.setup
        b, c = cols.shape
        rows = idx[:, None].expand(b, c)
        x_t = samples["latents"][rows, cols].flatten(0, 1)
        x_prev = samples["latents"][rows, cols + 1].flatten(0, 1)
        t = samples["timesteps"][cols].flatten()
        embeds = samples["prompt_embeds"][idx].repeat_interleave(c, dim=0)
        old = samples["log_probs"][rows, cols].flatten()
        adv = samples["advantages"][idx].repeat_interleave(c)
        with s.accelerator.autocast():
            pred = guided_noise_pred(s.unet, x_t, t, embeds, s.negative_embeds, cfg.guidance_scale)
        step = ddim_step_full(s.scheduler, pred, t, x_t, cfg.sample_eta, prev_sample=x_prev)
        loss, st = ppo_clip_loss(step.log_prob, old, adv, cfg.clip_range, cfg.adv_clip_max)
        st = dict(st)
        if cfg.kl_coef > 0:
            with torch.no_grad(), s.reference_policy() as ref_unet, s.accelerator.autocast():
                ref_pred = guided_noise_pred(ref_unet, x_t, t, embeds, s.negative_embeds, cfg.guidance_scale)
            ref = ddim_step_full(s.scheduler, ref_pred, t, x_t, cfg.sample_eta, prev_sample=x_prev)
            kl = gaussian_kl(step.mean, ref.mean, step.std).mean()
            loss = loss + cfg.kl_coef * kl
            st["kl"] = kl.detach()
        st["loss"] = loss.detach()
        return loss, st
