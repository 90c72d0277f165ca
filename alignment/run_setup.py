"""Everything a diffusion fine-tuning run holds besides its algorithm, for every trainer.

:class:`AlignmentSetup` checks every user input first (config values, prompts
files, reward specs, the pretrained folder), so a mistake is reported before any
model loads; then it builds the accelerator, the pipeline parts (LoRA added),
the optimizer and the prompt encoder, and it owns the run's held-out
evaluation, tracker, curves and checkpoints. A trainer (DDPO, reward-gradient)
adds only its sampling and its update.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import gc
import resource
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from alignment.eval_scores import hacking_note, held_out_changes, save_eval_scores
from alignment.lr_schedule import linear_warmup_factor
from alignment.model_families import family_for
from alignment.pipeline import import_model_libraries, resolve_pretrained
from alignment.prompts import load_prompts
from alignment.reward_worker import metric_name, score_batch
from alignment.run_config import AlignmentRunConfig
from alignment.run_state import load_run_state, resolve_resume, save_run_state
from alignment.sampling import sample_held_out

#: ``mixed_precision`` → the dtype of the frozen weights on a GPU (a CPU run stays float32).
FROZEN_DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def load_reward_spec(spec: str, field_name: str) -> Callable:
    """``reward.load_reward(spec)``; a bad spec becomes a ``ValueError`` naming the config field."""
    from reward import load_reward

    try:
        return load_reward(spec)
    except (ValueError, KeyError) as exc:
        raise ValueError(f"{field_name}: cannot load reward spec {spec!r}: {exc}") from exc


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc ``malloc_trim``).

    The allocator keeps the pages of an epoch's freed activations; whatever is
    allocated next (matplotlib, a checkpoint's buffers) would otherwise add to them.
    """
    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to trim
            pass


def peak_memory() -> dict[str, float]:
    """Peak resident memory of this process (and peak CUDA allocation on a GPU), in MiB."""
    out = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    if torch.cuda.is_available():
        out["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
    return out


class AlignmentSetup:
    """Accelerator, prompts, rewards, pipeline parts (LoRA added), optimizer, evaluation, tracker, checkpoints.

    Args:
        config: an :class:`~alignment.run_config.AlignmentRunConfig` subclass instance.
        reward: a reward following the protocol (``reward(images, prompts) -> (B,)``, ``.name``);
            ``None`` loads ``config.reward``.
        method: the trainer's name, for titles and progress bars (``"ddpo"``, ``"reward-grad"``).
        check_reward: called on the reward before any model loads (e.g. a differentiability check).
    """

    def __init__(self, config: AlignmentRunConfig, reward: Callable | None = None, method: str = "alignment",
                 check_reward: Callable[[Any], None] | None = None) -> None:
        from accelerate import Accelerator

        import_model_libraries()  # before any reward or pipeline loads transformers
        cfg = self.config = config
        self.method = method
        # 1. inputs: every check that names a field runs before a model loads
        # cpu=True without CUDA: under `accelerate launch --multi_gpu` on a CPU machine the processes
        # then form a gloo group (MULTI_CPU) instead of each running alone.
        self.accelerator = acc = Accelerator(mixed_precision=cfg.mixed_precision, cpu=not torch.cuda.is_available())
        cfg.validate(acc.num_processes)
        self.reward = reward if reward is not None else load_reward_spec(cfg.reward, "reward")
        if check_reward is not None:
            check_reward(self.reward)
        self.prompts = load_prompts(cfg.prompts, "prompts")
        self.eval_prompts = load_prompts(cfg.eval_prompts, "eval_prompts", allow_empty=True)
        self.eval_rewards = [load_reward_spec(spec, "eval_rewards") for spec in cfg.eval_rewards]
        self.resume_dir = resolve_resume(cfg.output_dir, cfg.resume_from)
        with acc.main_process_first():
            pretrained = resolve_pretrained(cfg.pretrained_model, cfg.output_dir, cfg.seed)
        for r in (self.reward, *self.eval_rewards):
            if acc.device.type != "cpu" and callable(getattr(r, "to", None)):
                r.to(acc.device)

        # 2. the pipeline: frozen parts in half precision on a GPU, the trained weights as configured
        dtype = FROZEN_DTYPES[cfg.mixed_precision] if acc.device.type != "cpu" else torch.float32
        family = family_for(cfg)  # SD (UNet, DDIM) or SD3 (flow-matching transformer): alignment/model_families.py
        pipe = family.load(pretrained, acc.device)
        unet = family.denoiser(pipe)
        self.scheduler, self.vae = pipe.scheduler, pipe.vae
        self.vae_scale = 2 ** (len(self.vae.config.block_out_channels) - 1)
        if dtype != torch.float32:
            self.vae.to(dtype=dtype)
            for encoder in family.text_encoders(pipe):
                encoder.to(dtype=dtype)
        if cfg.channels_last:
            unet.to(memory_format=torch.channels_last)
            self.vae.to(memory_format=torch.channels_last)

        # 3. what is trained: LoRA adapters (the base frozen) or the whole UNet
        self._ref_unet = None
        torch.manual_seed(cfg.seed)  # the adapter's initial weights
        if cfg.use_lora:
            if dtype != torch.float32:
                unet.to(dtype=dtype)
            from alignment.lora import add_lora

            self.trainable_params = add_lora(unet, cfg.lora_rank, family.lora_targets)
        else:
            if cfg.uses_reference_policy():
                self._ref_unet = copy.deepcopy(unet).to(dtype=dtype).requires_grad_(False)
            unet.requires_grad_(True)
            self.trainable_params = list(unet.parameters())
        optimizer = torch.optim.AdamW(self.trainable_params, lr=cfg.learning_rate, betas=(0.9, 0.999),
                                      weight_decay=cfg.adam_weight_decay, eps=1e-8)
        # prepare: DDP across processes, gradient scaling with fp16, autocast
        self.unet, self.optimizer = acc.prepare(unet, optimizer)

        self.encode = family.prompt_encoder(pipe, acc.device, cfg)
        self.negative_embeds = self.encode([cfg.negative_prompt])
        self.tracker = None

    # ---------------------------------------------------------------- models
    def policy_unet(self):
        """The trained UNet without its distributed wrapper (sampling, saving)."""
        return self.accelerator.unwrap_model(self.unet)

    def sampling_policy(self) -> contextlib.AbstractContextManager:
        """The policy as sampling runs it: LoRA folded into fp32 base weights (one matmul per projection
        instead of three, ~10% faster sampling on the tiny SD); otherwise the model as it is.

        Half-precision base weights are not merged: rounding W + BA to 16 bits would move the recorded
        log-probabilities away from the training forward's by more than the PPO clip range.
        """
        unet = self.policy_unet()
        if not self.config.use_lora or unet.dtype != torch.float32:
            return contextlib.nullcontext()
        from alignment.lora import lora_merged

        return lora_merged(unet)

    @contextlib.contextmanager
    def reference_policy(self) -> Iterator[Any]:
        """The frozen reference of a KL / drift term: LoRA → adapters disabled; full → a frozen copy."""
        if self._ref_unet is not None:
            yield self._ref_unet
            return
        from alignment.lora import adapters_disabled

        unet = self.policy_unet()
        with adapters_disabled(unet):
            yield unet

    def clip_and_step(self) -> float:
        """Clip the accumulated gradient (``max_grad_norm``; <= 0 disables), step AdamW, zero the gradient.

        Returns the gradient norm before clipping. Through accelerate: an fp16 run unscales first and skips
        the step on an overflow.
        """
        max_norm = self.config.max_grad_norm if self.config.max_grad_norm > 0 else float("inf")
        norm = self.accelerator.clip_grad_norm_(self.trainable_params, max_norm)
        self.set_warmup_learning_rate()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def set_warmup_learning_rate(self) -> float:
        """The learning rate of the coming update: ``learning_rate * min(1, (n + 1) / lr_warmup_steps)``, n the
        updates already applied. n is read from the optimizer's own state, which checkpoints save, so a resumed
        run continues the warm-up where it stopped. Returns the rate set."""
        cfg = self.config
        rate = cfg.learning_rate * linear_warmup_factor(optimizer_updates_done(self.optimizer), cfg.lr_warmup_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = rate
        return rate

    # ------------------------------------------------------------ evaluation
    def evaluate(self, epoch: int, sample_images: Callable[[list[str]], torch.Tensor] | None = None
                 ) -> dict[str, float]:
        """Held-out prompts on fixed noise, scored by the training reward and every ``eval_rewards`` spec.

        ``sample_images(prompts) -> (N, 3, H, W)`` replaces the DDIM held-out sampler (a flow-matching
        trainer passes its own ODE sampler).

        Returns ``eval_<name>_{mean,std,min,max}`` and the paired changes since the first evaluation
        (``eval_<name>_change``, ``reward_hacking``); writes ``eval/epoch_N.png`` and ``eval/epoch_N.json``.
        Main process only (others return ``{}``): the noise is fixed, so one process's images are the
        evaluation.
        """
        cfg = self.config
        if not self.eval_prompts or not self.accelerator.is_main_process:
            return {}
        prompts = [p for p in self.eval_prompts for _ in range(cfg.eval_num_per_prompt)]
        unet = self.policy_unet()
        unet.eval()
        with self.sampling_policy():
            if sample_images is not None:
                images = sample_images(prompts)
            else:
                images = sample_held_out(unet, self.scheduler, self.vae, self.encode, self.negative_embeds, prompts,
                                         seed=cfg.seed, num_steps=cfg.sample_num_steps,
                                         guidance_scale=cfg.guidance_scale, eta=cfg.sample_eta,
                                         resolution=cfg.resolution, autocast=self.accelerator.autocast)
        out: dict[str, float] = {}
        per_image: dict[str, list[float]] = {}
        for reward in [self.reward, *self.eval_rewards]:
            total, _ = score_batch(reward, images, prompts)
            out.update(summary_stats(f"eval_{metric_name(reward.name)}", total))
            per_image[metric_name(reward.name)] = total.tolist()
        trained = metric_name(self.reward.name)
        self._save_eval_grid(images, [f"{v:.3f}" for v in per_image[trained]], epoch)
        save_eval_scores(cfg.output_dir, epoch, prompts, per_image)
        out.update(held_out_changes(cfg.output_dir, epoch, trained, [metric_name(r.name) for r in self.eval_rewards]))
        return out

    def _save_eval_grid(self, images: torch.Tensor, captions: list[str], epoch: int) -> None:
        from artquant_core.plots import image_grid

        path = image_grid(images, Path(self.config.output_dir) / "eval" / f"epoch_{epoch:04d}.png",
                          captions=captions, ncols=max(1, min(8, self.config.eval_num_per_prompt * 2)), cell=96)
        if self.tracker is not None:
            self.tracker.log_images(f"eval/{metric_name(self.reward.name)}", path, epoch)

    # -------------------------------------------------------------- tracking
    def open_tracker(self, resume_step: int | None) -> None:
        from artquant_core.config import config_to_dict
        from artquant_core.tracking import RunTracker

        cfg = self.config
        self.tracker = RunTracker(cfg.output_dir, log_with=cfg.log_with or None, config=config_to_dict(cfg),
                                  project=cfg.tracker_project, run_name=Path(cfg.output_dir).name,
                                  resume_step=resume_step, is_main_process=self.accelerator.is_main_process)

    def log(self, row: dict[str, Any], step: int) -> dict[str, Any]:
        """Append a metrics row (metrics.jsonl, and wandb when enabled)."""
        self.tracker.log(row, step)
        return row

    def draw_curves(self) -> None:
        """Redraw reward_curve.png (the training reward, on training samples and held-out prompts) and
        eval_rewards_curve.png (the watch-only ``eval_rewards``: other scales) from metrics.jsonl.

        Called with each checkpoint and at the end, not every epoch: plotting loads matplotlib
        (~20 MiB resident), so it runs after the epoch's tensors are released (``release_memory``)
        and does not add to the run's peak memory.
        """
        if not self.accelerator.is_main_process or self.tracker is None:
            return
        release_memory()
        own = f"eval_{metric_name(self.reward.name)}_mean"
        note = hacking_note(self.tracker.rows())  # read metrics.jsonl once for both curves
        self.tracker.plot("reward_curve.png", "epoch", ["reward_mean", own],
                          title=f"{self.method} reward {self.reward.name} (mean ± std)" + note,
                          std_suffix="_std", ylabel="reward")
        others = [f"eval_{metric_name(r.name)}_mean" for r in self.eval_rewards]
        others = [k for k in dict.fromkeys(others) if k != own]
        if others:
            self.tracker.plot("eval_rewards_curve.png", "epoch", others, std_suffix="_std",
                              title="held-out rewards (not trained on)" + note, ylabel="reward")

    def progress(self, iterable, initial: int = 0):
        from tqdm.auto import tqdm

        return tqdm(iterable, initial=initial, total=self.config.num_epochs, desc=self.method, unit="epoch",
                    disable=not self.accelerator.is_main_process)

    # ----------------------------------------------------------- checkpoints
    def save_checkpoint(self, epochs_done: int, trainer_state: dict[str, Any]) -> None:
        """``checkpoint-N/`` (N = epochs done): weights, AdamW, RNG and ``trainer_state``; atomic; curves redrawn."""
        self.draw_curves()
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            save_run_state(self.config.output_dir, epochs_done, self.policy_unet(), self.optimizer,
                           self.config.use_lora, trainer_state, keep=self.config.num_checkpoint_limit)
        self.accelerator.wait_for_everyone()

    def resume(self) -> tuple[int, dict[str, Any]]:
        """Restore the checkpoint ``resume_from`` names: ``(epochs done, trainer state)``; ``(0, {})`` if none."""
        if self.resume_dir is None:
            return 0, {}
        state = load_run_state(self.resume_dir, self.policy_unet(), self.optimizer, self.config.use_lora)
        return int(state.pop("epoch")), state

    # ------------------------------------------------------------------ end
    def finish(self) -> None:
        """End of a successful run: every process waits for the others, then trackers end."""
        self.accelerator.wait_for_everyone()
        self.accelerator.end_training()

    def close(self) -> None:
        if self.tracker is not None:
            self.tracker.close()
            self.tracker = None


def optimizer_updates_done(optimizer: torch.optim.Optimizer) -> int:
    """How many updates an Adam-type optimizer has applied (its per-parameter ``step``; 0 before the first)."""
    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper keeps the torch optimizer inside
    for group in inner.param_groups:
        for param in group["params"]:
            state = inner.state.get(param)
            if state and "step" in state:
                return int(state["step"])
    return 0


def summary_stats(prefix: str, values: torch.Tensor) -> dict[str, float]:
    """``{prefix}_mean/_std/_min/_max`` of a 1-d tensor (population std, float64)."""
    v = values.double()
    return {f"{prefix}_mean": v.mean().item(), f"{prefix}_std": v.std(unbiased=False).item(),
            f"{prefix}_min": v.min().item(), f"{prefix}_max": v.max().item()}
