"""Settings every policy-gradient trainer (DDPO, Flow-GRPO) shares: sampling batches, PPO, trained steps."""

from __future__ import annotations

from dataclasses import dataclass

from alignment.run_config import AlignmentRunConfig
from alignment.run_config import config_field as _f


@dataclass
class PolicyGradientConfig(AlignmentRunConfig):
    """Sampling batch sizes, the PPO-clip objective and which recorded steps are trained on.

    Batch sizes are per process. ``DDPOConfig`` and ``FlowGRPOConfig`` inherit these fields and
    redeclare the few whose default differs.
    """

    # sampling
    sample_batch_size: int = _f(4, "trajectories per sampling batch (per process)")
    sample_num_batches_per_epoch: int = _f(2, "sampling batches per epoch (per process)")

    # training
    train_timestep_fraction: float = _f(1.0, "fraction of each trajectory's stochastic steps trained on "
                                              "(random per sample)")
    train_timestep_batch: int | None = _f(None, "trained steps per model call; unset: as many as fit in "
                                                "train_call_latent_budget; 0: all of a micro-batch's in one call")
    train_call_latent_budget: int = _f(5120, "latent elements one training call may hold (micro-batch x steps x "
                                             "latent size, x2 with guidance) when train_timestep_batch is unset: "
                                             "5 steps per call on the tiny SD's 8x8 latents at train batch 2, 1 at "
                                             "32x32, so the default never holds more activations than one step at a "
                                             "time does at realistic latent sizes")
    train_num_inner_epochs: int = _f(1, "passes over each epoch's samples")
    clip_range: float = _f(1e-4, "PPO clip range of the importance ratio")
    adv_clip_max: float = _f(5.0, "advantages clipped to +-adv_clip_max")

    def validate(self, num_processes: int = 1) -> None:
        """The shared checks, then the policy-gradient ones (naming the field)."""
        super().validate(num_processes)
        for name in ("sample_batch_size", "sample_num_batches_per_epoch", "train_num_inner_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("clip_range", "adv_clip_max", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0 < self.train_timestep_fraction <= 1:
            raise ValueError(f"train_timestep_fraction must be in (0, 1], got {self.train_timestep_fraction}")
        if self.train_timestep_batch is not None and self.train_timestep_batch < 0:
            raise ValueError(f"train_timestep_batch must be >= 0 (0: all in one call) or unset, "
                             f"got {self.train_timestep_batch}")
        if self.train_call_latent_budget < 1:
            raise ValueError(f"train_call_latent_budget must be >= 1, got {self.train_call_latent_budget}")
        samples = self.sample_batch_size * self.sample_num_batches_per_epoch
        per_step = self.train_batch_size * self.train_gradient_accumulation_steps
        if samples % per_step:
            raise ValueError(
                f"batch sizes do not divide: sample_batch_size*sample_num_batches_per_epoch*num_processes = "
                f"{self.sample_batch_size}*{self.sample_num_batches_per_epoch}*{num_processes} = "
                f"{samples * num_processes} samples per epoch is not a multiple of train_batch_size*"
                f"train_gradient_accumulation_steps*num_processes = {self.train_batch_size}*"
                f"{self.train_gradient_accumulation_steps}*{num_processes} = {per_step * num_processes}")
