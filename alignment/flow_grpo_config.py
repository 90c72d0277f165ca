"""Configuration of a Flow-GRPO run (YAML + ``--key value`` through ``artquant_core.config.parse_config``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from alignment.flow_sde import NOISE_SCHEDULES
from alignment.policy_gradient_config import PolicyGradientConfig
from alignment.run_config import config_field as _f

__all__ = ["FlowGRPOConfig"]


@dataclass
class FlowGRPOConfig(PolicyGradientConfig):
    """Flow-GRPO (Liu et al. 2025) fine-tuning of a flow-matching model (Stable Diffusion 3).

    Each prompt is sampled ``group_size`` times; a sample's advantage is its reward
    normalised by its prompt's mean and std over the epoch (group-relative). Steps
    inside the SDE window are stochastic (and trained on); the others are the
    deterministic Euler ODE step (MixGRPO / Flow-GRPO-Fast). Batch sizes are per
    process. The shared fields (model, prompts, LoRA, precision, tracking,
    checkpoints) are ``AlignmentRunConfig``'s.
    """

    #: AlignmentSetup loads a StableDiffusion3Pipeline (transformer, flow-matching scheduler, two CLIP encoders)
    pipeline_kind: ClassVar[str] = "sd3"

    # shared fields whose default or meaning is Flow-GRPO's own
    pretrained_model: str = _f("tiny-sd3", "'tiny-sd3' (random-init tiny SD3, built into output_dir/tiny_sd3) or "
                                           "a StableDiffusion3Pipeline folder / hub id (T5 is not loaded)")
    output_dir: str = _f("runs/flow_grpo", "run folder: metrics.jsonl, reward_curve.png, eval grids, checkpoint-N/")
    sample_num_steps: int = _f(10, "flow-matching Euler steps per trajectory (sampling and evaluation)")
    sample_eta: float = _f(1.0, "unused by Flow-GRPO (its sampling noise is noise_level)")
    guidance_scale: float = _f(4.5, "classifier-free guidance scale, in sampling and training (1 = no guidance)")
    use_lora: bool = _f(True, "train LoRA adapters on the transformer's attention projections (image and text "
                              "streams) (else full fine-tuning)")
    kl_coef: float = _f(0.04, "weight of the KL to the reference policy (LoRA: adapters disabled) on each trained "
                              "step's Gaussian")
    tracker_project: str = _f("artquant-flow-grpo", "wandb project name")

    # prompts
    max_sequence_length: int = _f(256, "zero T5 tokens the prompt embeddings are padded with (the pipeline's "
                                       "default 256; they take part in attention, so pipe(...) reproduces the "
                                       "trained model only with the same max_sequence_length)")

    # sampling
    group_size: int = _f(4, "images per prompt (G): advantages are normalised within each prompt's group")
    sample_batch_size: int = _f(8, "trajectories per sampling batch (per process): sample_batch_size / group_size "
                                   "prompts, group_size images each")
    sample_num_batches_per_epoch: int = _f(1, "sampling batches per epoch (per process)")
    noise_level: float = _f(0.7, "a of the SDE noise: g_t = a*sqrt(t/(1-t)) ('flow_grpo') or a ('constant')")
    noise_schedule: str = _f("flow_grpo", "'flow_grpo' (a*sqrt(t/(1-t))) or 'constant' (DanceGRPO's a)")
    sde_window_size: int | None = _f(None, "steps sampled with the SDE (and trained on); the others are the ODE "
                                           "Euler step. Unset: every step")
    sde_window_start: int = _f(0, "first SDE step of the window (0 = the noisiest step)")
    sde_window_random: bool = _f(False, "draw the window's start each epoch, uniformly in "
                                        "[0, sample_num_steps - sde_window_size] (Flow-GRPO-Fast / MixGRPO style)")

    train_timestep_fraction: float = _f(1.0, "fraction of the window's steps trained on (random per sample)")

    @property
    def window_size(self) -> int:
        """The SDE window's length (every step when ``sde_window_size`` is unset)."""
        return self.sample_num_steps if self.sde_window_size is None else self.sde_window_size

    def validate(self, num_processes: int = 1) -> None:
        """The shared checks, then Flow-GRPO's own (naming the field)."""
        super().validate(num_processes)
        for name in ("group_size", "max_sequence_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.noise_level > 0:
            raise ValueError(f"noise_level must be > 0 (the SDE's noise; 0 is the deterministic ODE, which has no "
                             f"log-probability), got {self.noise_level}")
        if self.noise_schedule not in NOISE_SCHEDULES:
            raise ValueError(f"noise_schedule must be one of {NOISE_SCHEDULES}, got {self.noise_schedule!r}")
        if self.max_sequence_length > 512:
            raise ValueError(f"max_sequence_length must be <= 512 (StableDiffusion3Pipeline's limit), "
                             f"got {self.max_sequence_length}")
        if self.group_size < 2:
            raise ValueError(f"group_size must be >= 2: one image per prompt has no group statistics "
                             f"(its advantage would be 0), got {self.group_size}")
        if self.sample_batch_size % self.group_size:
            raise ValueError(f"sample_batch_size ({self.sample_batch_size}) must be a multiple of group_size "
                             f"({self.group_size}): each batch holds whole groups")
        if not 1 <= self.window_size <= self.sample_num_steps:
            raise ValueError(f"sde_window_size must be in [1, sample_num_steps={self.sample_num_steps}] or unset, "
                             f"got {self.sde_window_size}")
        if not 0 <= self.sde_window_start <= self.sample_num_steps - self.window_size:
            raise ValueError(f"sde_window_start={self.sde_window_start} puts the SDE window outside the "
                             f"{self.sample_num_steps} steps: it must be in [0, sample_num_steps - sde_window_size = "
                             f"{self.sample_num_steps - self.window_size}]")
