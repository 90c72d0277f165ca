"""Everything a DDPO run holds besides its loop: checked inputs, models, optimizer, tracker.

All user input is checked first (config values, prompts files, reward specs,
the pretrained folder) so a mistake is reported before any model is loaded.
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

from alignment.ddpo_config import DDPOConfig
from alignment.eval_scores import hacking_note
from alignment.pipeline import import_model_libraries, load_sd_pipeline, resolve_pretrained
from alignment.prompts import load_prompts
from alignment.reward_worker import metric_name

_DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def load_reward_spec(spec: str, field_name: str) -> Callable:
    from reward import load_reward

    try:
        return load_reward(spec)
    except (ValueError, KeyError) as exc:
        raise ValueError(f"{field_name}: cannot load reward spec {spec!r}: {exc}") from exc


def _move_reward(reward: Callable, device: torch.device) -> Callable:
    if device.type != "cpu" and callable(getattr(reward, "to", None)):
        reward.to(device)
    return reward


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


class DDPOSetup:
    """Accelerator, prompts, rewards, pipeline parts (LoRA added), optimizer and run tracker."""

    def __init__(self, config: DDPOConfig, reward: Callable | None = None) -> None:
        from accelerate import Accelerator

        import_model_libraries()  # before any reward or pipeline loads transformers
        cfg = self.config = config
        # cpu=True without CUDA: under `accelerate launch --multi_gpu` on a CPU machine the processes
        # then form a gloo group (MULTI_CPU) instead of each running alone.
        self.accelerator = acc = Accelerator(mixed_precision=cfg.mixed_precision,
                                             cpu=not torch.cuda.is_available())
        cfg.validate(acc.num_processes)
        self.prompts = load_prompts(cfg.prompts, "prompts")
        self.eval_prompts = load_prompts(cfg.eval_prompts, "eval_prompts", allow_empty=True)
        self.reward = reward if reward is not None else load_reward_spec(cfg.reward, "reward")
        self.eval_rewards = [load_reward_spec(spec, "eval_rewards") for spec in cfg.eval_rewards]
        with acc.main_process_first():
            pretrained = resolve_pretrained(cfg.pretrained_model, cfg.output_dir, cfg.seed)
        for r in (self.reward, *self.eval_rewards):
            _move_reward(r, acc.device)

        dtype = _DTYPES[cfg.mixed_precision] if acc.device.type != "cpu" else torch.float32
        pipe = load_sd_pipeline(pretrained, device=acc.device)
        self.scheduler, self.vae, unet = pipe.scheduler, pipe.vae, pipe.unet
        if dtype != torch.float32:
            self.vae.to(dtype=dtype)
            pipe.text_encoder.to(dtype=dtype)
        if cfg.channels_last:
            unet.to(memory_format=torch.channels_last)
            self.vae.to(memory_format=torch.channels_last)
        self._ref_unet = None
        torch.manual_seed(cfg.seed)  # the adapter's initial weights
        if cfg.use_lora:
            if dtype != torch.float32:
                unet.to(dtype=dtype)
            from alignment.lora import add_lora

            self.trainable_params = add_lora(unet, cfg.lora_rank)
        else:
            if cfg.kl_coef > 0:
                self._ref_unet = copy.deepcopy(unet).to(dtype=dtype).requires_grad_(False)
            unet.requires_grad_(True)
            self.trainable_params = list(unet.parameters())
        optimizer = torch.optim.AdamW(self.trainable_params, lr=cfg.learning_rate, betas=(0.9, 0.999),
                                      weight_decay=cfg.adam_weight_decay, eps=1e-8)
        self.unet, self.optimizer = acc.prepare(unet, optimizer)

        from alignment.sampling import PromptEncoder

        self.encode = PromptEncoder(pipe.tokenizer, pipe.text_encoder, acc.device)
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
        """The frozen reference for the KL term: LoRA → adapters disabled; full → a frozen copy."""
        if self._ref_unet is not None:
            yield self._ref_unet
            return
        from alignment.lora import adapters_disabled

        unet = self.policy_unet()
        with adapters_disabled(unet):
            yield unet

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
                          title=f"DDPO reward {self.reward.name} (mean ± std)" + note,
                          std_suffix="_std", ylabel="reward")
        others = [f"eval_{metric_name(r.name)}_mean" for r in self.eval_rewards]
        others = [k for k in dict.fromkeys(others) if k != own]
        if others:
            self.tracker.plot("eval_rewards_curve.png", "epoch", others, std_suffix="_std",
                              title="held-out rewards (not trained on)" + note,
                              ylabel="reward")

    def save_eval_grid(self, images: torch.Tensor, captions: list[str], epoch: int) -> None:
        from artquant_core.plots import image_grid

        path = image_grid(images, Path(self.config.output_dir) / "eval" / f"epoch_{epoch:04d}.png",
                          captions=captions, ncols=max(1, self.config.eval_num_per_prompt * 2), cell=96)
        if self.tracker is not None:
            self.tracker.log_images(f"eval/{metric_name(self.reward.name)}", path, epoch)

    def progress(self, iterable, initial: int = 0):
        from tqdm.auto import tqdm

        return tqdm(iterable, initial=initial, total=self.config.num_epochs, desc="ddpo", unit="epoch",
                    disable=not self.accelerator.is_main_process)

    def peak_memory(self) -> dict[str, float]:
        out = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
        if torch.cuda.is_available():
            out["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
        return out

    def finish(self) -> None:
        """End of a successful run: every process waits for the others, then trackers end."""
        self.accelerator.wait_for_everyone()
        self.accelerator.end_training()

    def close(self) -> None:
        if self.tracker is not None:
            self.tracker.close()
            self.tracker = None
