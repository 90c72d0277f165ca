"""Flow-GRPO: GRPO fine-tuning of a flow-matching model (SD3) against a reward (Liu et al. 2025).

Each epoch: draw prompts, sample each ``group_size`` times with the SDE form of the
Euler sampler on the steps of the SDE window (the ODE elsewhere: MixGRPO /
Flow-GRPO-Fast), recording each SDE step's log-probability; score the images (on a
worker thread, while the next batch samples); normalise each reward by its prompt's
group (mean / std over the epoch's samples, all processes); then PPO-clip updates
on the recorded SDE steps, with a KL to the reference policy (LoRA adapters
disabled) on each step's Gaussian.

Training is timestep-batched as in DDPO: a micro-batch's trained steps go through one
transformer call (or chunks of ``train_timestep_batch``) with per-sample timesteps.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

from alignment.ddpo_loss import gaussian_kl, ppo_clip_loss
from alignment.flow_grpo_config import FlowGRPOConfig
from alignment.flow_sampling import guided_velocity, sample_flow_held_out, sample_flow_trajectories
from alignment.flow_sde import check_flow_scheduler, sde_step_with_logprob
from alignment.policy_gradient import PolicyGradientTrainer
from alignment.reward_worker import AsyncRewarder
from alignment.sampling import derive_seed
from alignment.stat_tracking import group_advantages


class FlowGRPOTrainer(PolicyGradientTrainer):
    """Flow-GRPO trainer. ``FlowGRPOTrainer(config, reward=None).train() -> dict`` of final metrics.

    Args:
        config: a ``FlowGRPOConfig``; validated before anything is loaded.
        reward: any callable following the reward protocol (``reward(images, prompts) -> (B,)``,
            ``.name``); ``None`` loads ``config.reward`` with ``reward.load_reward``.
    """

    method = "flow-grpo"

    def __init__(self, config: FlowGRPOConfig, reward: Callable | None = None) -> None:
        super().__init__(config, reward)  # checks every input, then loads models / optimizer
        check_flow_scheduler(self.setup.scheduler)
        self.rewarder = AsyncRewarder(self.setup.reward)

    def close(self) -> None:
        self.rewarder.close()

    def evaluate(self, epoch: int) -> dict[str, float]:
        """Held-out evaluation with the deterministic ODE sampler (see :meth:`AlignmentSetup.evaluate`)."""
        cfg, s = self.config, self.setup

        def ode_images(prompts: list[str]) -> torch.Tensor:
            return sample_flow_held_out(s.policy_unet(), s.scheduler, s.vae, s.encode, s.negative_embeds, prompts,
                                        seed=cfg.seed, num_steps=cfg.sample_num_steps,
                                        guidance_scale=cfg.guidance_scale, resolution=cfg.resolution,
                                        autocast=s.accelerator.autocast)

        return s.evaluate(epoch, sample_images=ode_images)

    def sde_window(self, epoch: int) -> range:
        """The epoch's SDE steps: fixed at ``sde_window_start`` or, with ``sde_window_random``, drawn from a
        generator of (seed, epoch) only, so every process (and a resumed run) uses the same window."""
        cfg = self.config
        start = cfg.sde_window_start
        if cfg.sde_window_random:
            gen = torch.Generator().manual_seed(derive_seed(cfg.seed, epoch, 11))
            start = int(torch.randint(cfg.sample_num_steps - cfg.window_size + 1, (1,), generator=gen))
        return range(start, start + cfg.window_size)

    # -------------------------------------------------------------- sampling
    def sample(self, epoch: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """Sample and score this epoch's groups; group-relative advantages over every process's samples."""
        cfg, s = self.config, self.setup
        acc, transformer = s.accelerator, s.policy_unet()
        gen = torch.Generator().manual_seed(derive_seed(cfg.seed, epoch, acc.process_index))
        window = self.sde_window(epoch)
        t0 = time.perf_counter()
        batches, futures, prompt_ids = [], [], []
        transformer.eval()
        with s.sampling_policy():
            for _ in range(cfg.sample_num_batches_per_epoch):
                groups = torch.randint(len(s.prompts), (cfg.sample_batch_size // cfg.group_size,), generator=gen)
                ids = groups.repeat_interleave(cfg.group_size)
                prompts = [s.prompts[i] for i in ids]
                cond = s.encode(prompts)
                with acc.autocast():
                    traj = sample_flow_trajectories(
                        transformer, s.scheduler, s.vae, cond, s.negative_embeds, num_steps=cfg.sample_num_steps,
                        guidance_scale=cfg.guidance_scale, noise_level=cfg.noise_level,
                        noise_schedule=cfg.noise_schedule, sde_steps=window, resolution=cfg.resolution,
                        generator=gen)
                futures.append(self.rewarder.submit(traj.images, prompts))  # scored while the next batch samples
                batches.append((traj, cond))
                prompt_ids.append(ids)
        local, rewards, ids_all, metrics = self.gather_rewards(futures, prompt_ids, time.perf_counter() - t0)
        metrics["sde_window_start"] = window.start
        # group-relative advantages: each prompt's rewards of this epoch, from every process (stateless: nothing
        # carries across epochs, so a checkpoint holds no statistics). Grouped by prompt text, so a prompt listed
        # twice is one group.
        adv = group_advantages(rewards.numpy(), [s.prompts[i] for i in ids_all])
        samples = {
            "latents": torch.cat([t.latents for t, _ in batches]),
            "log_probs": torch.cat([t.log_probs for t, _ in batches]).float(),
            "embeds": torch.cat([c[0] for _, c in batches]),
            "pooled": torch.cat([c[1] for _, c in batches]),
            "advantages": self.local_share(adv, local.shape[0]),
            "sde_steps": batches[0][0].sde_steps,
        }
        return samples, metrics

    # -------------------------------------------------------------- training
    def num_trainable_steps(self, samples: dict[str, Any]) -> int:
        return samples["sde_steps"].shape[0]

    def before_training(self, samples: dict[str, Any]) -> None:
        # the sigmas the samples were drawn with (evaluation may have set others)
        self.setup.scheduler.set_timesteps(self.config.sample_num_steps, device=self.accelerator.device)

    def chunk_loss(self, samples: dict[str, Any], idx: torch.Tensor, cols: torch.Tensor):
        """PPO(-KL) loss of samples ``idx`` at their window positions ``cols`` (b, c) in ONE transformer call."""
        cfg, s = self.config, self.setup
        b, c = cols.shape
        rows = idx[:, None].expand(b, c)
        steps = samples["sde_steps"][cols]  # (b, c) step indices in the schedule
        x_t = samples["latents"][rows, steps].flatten(0, 1)
        x_next = samples["latents"][rows, steps + 1].flatten(0, 1)
        step_idx = steps.flatten()
        t = s.scheduler.timesteps[step_idx.to(s.scheduler.timesteps.device)].to(x_t.device)
        cond = (samples["embeds"][idx].repeat_interleave(c, dim=0), samples["pooled"][idx].repeat_interleave(c, dim=0))
        old = samples["log_probs"][rows, cols].flatten()
        adv = samples["advantages"][idx].repeat_interleave(c)
        sde = dict(noise_level=cfg.noise_level, prev_sample=x_next, noise_schedule=cfg.noise_schedule)
        with s.accelerator.autocast():
            v = guided_velocity(s.unet, x_t, t, cond, s.negative_embeds, cfg.guidance_scale)
        step = sde_step_with_logprob(s.scheduler, v, step_idx, x_t, **sde)
        loss, st = ppo_clip_loss(step.log_prob, old, adv, cfg.clip_range, cfg.adv_clip_max)
        st = dict(st)
        if cfg.kl_coef > 0:
            with torch.no_grad(), s.reference_policy() as ref, s.accelerator.autocast():
                ref_v = guided_velocity(ref, x_t, t, cond, s.negative_embeds, cfg.guidance_scale)
            ref_step = sde_step_with_logprob(s.scheduler, ref_v, step_idx, x_t, **sde)
            kl = gaussian_kl(step.mean, ref_step.mean, step.std).mean()
            loss = loss + cfg.kl_coef * kl
            st["kl"] = kl.detach()
        st["loss"] = loss.detach()
        return loss, st
