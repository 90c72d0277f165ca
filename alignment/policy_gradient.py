"""What the policy-gradient trainers (DDPO, Flow-GRPO) share: the epoch, the reward gathering, the PPO updates.

An epoch samples trajectories with the log-probability of each stochastic step
(``sample``, the algorithm's own), then makes ``train_num_inner_epochs`` passes
of PPO-clip updates over them: per micro-batch, a random subset of each
sample's trainable recorded steps (``train_timestep_fraction``) goes through one model
call, or chunks of them (``steps_per_call``), with the loss of each chunk
weighted by its share so the gradient equals one backward per step. The
algorithm supplies ``chunk_loss`` (its policy's log-probability of the recorded
steps) and ``num_trainable_steps``.
"""

from __future__ import annotations

import contextlib
import time
from abc import abstractmethod
from concurrent.futures import Future
from typing import Any

import numpy as np
import torch

from alignment.fine_tuning import FineTuningTrainer
from alignment.reward_worker import metric_name
from alignment.run_setup import peak_memory, summary_stats
from alignment.sampling import derive_seed


class PolicyGradientTrainer(FineTuningTrainer):
    """Base of DDPO and Flow-GRPO: ``train_epoch`` = ``sample`` + PPO passes (``backward_micro_batch``)."""

    # ------------------------------------------------------- for subclasses
    @abstractmethod
    def sample(self, epoch: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """This epoch's samples (``latents (N, T+1, ...)``, ``log_probs (N, S)``, ``advantages (N,)``, ...)
        and the sampling metrics."""

    @abstractmethod
    def num_trainable_steps(self, samples: dict[str, Any]) -> int:
        """K: how many of the stochastic steps recorded per trajectory (the columns of ``log_probs``) training
        draws from — the first K; all of them unless the algorithm leaves some out."""

    @abstractmethod
    def chunk_loss(self, samples: dict[str, Any], idx: torch.Tensor, cols: torch.Tensor
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """PPO(-KL) loss of samples ``idx`` at recorded-step positions ``cols (b, c)``, in one model call."""

    def before_training(self, samples: dict[str, Any]) -> None:
        """Called once before the PPO passes of an epoch (e.g. to reset the scheduler's steps)."""

    # ------------------------------------------------------------- epoch
    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """Sample and score ``sample_num_batches_per_epoch`` batches, then ``train_num_inner_epochs`` passes."""
        samples, metrics = self.sample(epoch)
        t0 = time.perf_counter()
        self.before_training(samples)
        for inner in range(self.config.train_num_inner_epochs):
            metrics.update(self._train_inner(samples, epoch, inner))
        metrics["train_s"] = time.perf_counter() - t0
        n = samples["latents"].shape[0] * self.accelerator.num_processes
        metrics["samples_per_s"] = n / (metrics["sample_s"] + metrics["reward_s"] + metrics["train_s"])
        metrics.update(peak_memory())
        return metrics

    def gather_rewards(self, futures: list[Future], prompt_ids: list[torch.Tensor], sample_s: float
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Wait for the scored batches; gather rewards and prompt indices from every process.

        Returns ``(local rewards, all rewards, all prompt indices, metrics)``: ``sample_s``, ``reward_s`` (the
        scoring that did not overlap sampling), ``num_samples``, ``reward_mean/std/min/max`` and, for a
        composite reward, ``reward_<component>_mean``.
        """
        acc = self.accelerator
        t0 = time.perf_counter()
        scored = [f.result() for f in futures]
        reward_s = time.perf_counter() - t0
        local = torch.cat([r for r, _ in scored])
        rewards = acc.gather(local.to(acc.device)).cpu()
        ids_all = acc.gather(torch.cat(prompt_ids).to(acc.device)).cpu()
        metrics = {"sample_s": sample_s, "reward_s": reward_s, "num_samples": rewards.numel(),
                   **summary_stats("reward", rewards)}
        for name in scored[0][1]:
            comp = acc.gather(torch.cat([c[name] for _, c in scored]).to(acc.device)).cpu()
            metrics[f"reward_{metric_name(name)}_mean"] = comp.mean().item()
        return local, rewards, ids_all, metrics

    def local_share(self, values: np.ndarray, n_local: int) -> torch.Tensor:
        """This process's slice of a gathered per-sample array (gathering concatenates by process)."""
        start = self.accelerator.process_index * n_local
        return torch.as_tensor(values[start:start + n_local], dtype=torch.float32).to(self.accelerator.device)

    # ---------------------------------------------------------- training
    def _train_inner(self, samples: dict[str, Any], epoch: int, inner: int) -> dict[str, float | None]:
        cfg, s = self.config, self.setup
        gen = torch.Generator().manual_seed(derive_seed(cfg.seed, epoch, self.accelerator.process_index, inner, 7))
        n, num_steps = samples["latents"].shape[0], self.num_trainable_steps(samples)
        order = torch.randperm(n, generator=gen)
        # per sample, a random subset of its trainable steps (train_timestep_fraction of them)
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
        return {key: float(np.mean(v)) if v else None for key, v in stats.items()}

    def steps_per_call(self, samples: dict[str, Any], batch: int, k: int) -> int:
        """How many of a micro-batch's ``k`` trained steps go through one model call.

        ``train_timestep_batch`` when set (0: all k); else as many as fit in ``train_call_latent_budget`` latent
        elements: activation memory grows with the call's batch, so the budget keeps large latents at one
        step per call while tiny ones still batch several (measured: docs/performance.md, DDPO).
        """
        cfg = self.config
        if cfg.train_timestep_batch is not None:
            return cfg.train_timestep_batch or k
        guidance = 2 if cfg.guidance_scale > 1.0 else 1  # guidance doubles every call's batch
        per_step = samples["latents"][0, 0].numel() * batch * guidance
        return max(1, min(k, cfg.train_call_latent_budget // per_step))

    def backward_micro_batch(self, samples: dict[str, Any], idx: torch.Tensor, cols: torch.Tensor, accum: int,
                             sync: bool, epoch: int = 0) -> dict[str, list[float]]:
        """Accumulate the gradient of micro-batch ``idx`` over its trained step positions ``cols`` (b, k).

        The k steps go through chunks of :meth:`steps_per_call` steps, one model call each; each chunk's loss
        is weighted by its share of the k steps, so the gradient is the same as one backward per step.
        Gradients are synchronised across processes only with ``sync`` (on the last chunk).
        """
        acc, k = self.accelerator, cols.shape[1]
        chunk = self.steps_per_call(samples, cols.shape[0], k)
        parts = [cols[:, j:j + chunk] for j in range(0, k, chunk)]
        stats: dict[str, list[float]] = {}
        for c, part in enumerate(parts):
            last = sync and c == len(parts) - 1
            with acc.no_sync(self.setup.unet) if not last else contextlib.nullcontext():
                loss, st = self.chunk_loss(samples, idx, part)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"non-finite {self.method} loss ({loss.item()}) at epoch {epoch}; the step was not applied "
                        "and the last checkpoint is intact")
                acc.backward(loss * part.shape[1] / (k * accum))
            for key, v in st.items():
                stats.setdefault(key, []).append(float(v))
        return stats
