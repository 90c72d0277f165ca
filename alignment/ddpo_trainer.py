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

import time
from typing import Any, Callable

import torch

from alignment.ddim import check_log_prob_schedule, ddim_step_full
from alignment.ddpo_config import DDPOConfig
from alignment.ddpo_loss import gaussian_kl, ppo_clip_loss
from alignment.policy_gradient import PolicyGradientTrainer
from alignment.reward_worker import AsyncRewarder
from alignment.sampling import derive_seed, guided_noise_pred, sample_trajectories
from alignment.stat_tracking import PerPromptStatTracker


class DDPOTrainer(PolicyGradientTrainer):
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

    # -------------------------------------------------------------- sampling
    def sample(self, epoch: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Sample and score this epoch's trajectories; advantages from per-prompt (or batch) statistics."""
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
        local, rewards, ids_all, metrics = self.gather_rewards(futures, prompt_ids, time.perf_counter() - t0)
        all_prompts = [s.prompts[i] for i in ids_all]
        if cfg.per_prompt_stat_tracking:
            adv = self.stat_tracker.update(all_prompts, rewards.numpy())
        else:
            adv = ((rewards - rewards.mean()) / (rewards.std(unbiased=False) + 1e-6)).numpy()
        samples = {
            "latents": torch.cat([b.latents for b in batches]),
            "log_probs": torch.cat([b.log_probs for b in batches]).float(),
            "prompt_embeds": torch.cat([b.prompt_embeds for b in batches]),
            "advantages": self.local_share(adv, local.shape[0]),
            "timesteps": batches[0].timesteps,
        }
        return samples, metrics

    # -------------------------------------------------------------- training
    def num_trainable_steps(self, samples: dict[str, torch.Tensor]) -> int:
        # every DDIM step is recorded; the last train_skip_last_steps are left out of training
        return samples["timesteps"].shape[0] - self.config.train_skip_last_steps

    def chunk_loss(self, samples, idx: torch.Tensor, cols: torch.Tensor):
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
