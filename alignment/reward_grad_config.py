"""Configuration of reward-gradient fine-tuning, DRaFT-K / AlignProp (YAML + ``--key value``)."""

from __future__ import annotations

from dataclasses import dataclass

from alignment.run_config import AlignmentRunConfig, config_field as _f


@dataclass
class RewardGradConfig(AlignmentRunConfig):
    """Reward-gradient fine-tuning settings (DRaFT-K, Clark et al. 2023; AlignProp, Prabhudesai et al. 2023).

    One *epoch* is ``train_steps_per_epoch`` optimizer updates; each update
    accumulates ``train_gradient_accumulation_steps`` micro-batches of
    ``train_batch_size`` fresh samples (per process). A sample is a DDIM
    trajectory whose first ``sample_num_steps - truncated_backprop_steps``
    steps run without gradient; the last ``truncated_backprop_steps`` steps
    and the VAE decode keep the graph, and the loss is ``-mean(reward)``
    (plus ``kl_coef`` times the drift penalty, logged as ``eps_drift``). The reward must be
    differentiable. Dataclass defaults run on the embedded tiny SD on a CPU;
    ``configs/reward_grad_sd15.yaml`` holds SD 1.5 settings. The shared
    fields (model, prompts, LoRA, precision, tracking, checkpoints) are
    ``AlignmentRunConfig``'s.
    """

    # shared fields whose default or meaning is reward-gradient's own
    reward: str = _f("brightness", "reward spec for reward.load_reward; must be differentiable (e.g. 'artquant', "
                                   "'brightness', 'artquant*0.8+saturation*0.2'), 'jpeg_compressibility' is refused")
    output_dir: str = _f("runs/reward_grad", "run folder: metrics.jsonl, reward_curve.png, checkpoint-N/")
    sample_eta: float = _f(0.0, "DDIM eta (0 = deterministic DDIM, as in DRaFT / AlignProp)")
    learning_rate: float = _f(1e-4, "AdamW learning rate")
    max_grad_norm: float = _f(1.0, "gradient-norm clipping (<= 0 disables it)")
    kl_coef: float = _f(0.0, "weight of the drift penalty on the gradient steps: the mean squared difference of the "
                             "tuned and the frozen reference's noise predictions (logged as eps_drift; the DDIM KL "
                             "up to a per-step weight, not the KL itself); 0 disables it")
    eval_rewards: list[str] = _f([], "extra reward specs scored on eval_prompts only (never trained on; "
                                     "non-differentiable ones are fine here)")
    eval_every: int = _f(1, "evaluate every N epochs (and at the end); 0 disables")
    eval_num_per_prompt: int = _f(1, "images per eval prompt (fixed seeds)")
    tracker_project: str = _f("artquant-reward-grad", "wandb project name")

    # training
    train_steps_per_epoch: int = _f(2, "optimizer updates per epoch")
    truncated_backprop_steps: int = _f(1, "K: gradients flow through the last K denoising steps (DRaFT-K); "
                                          "K = sample_num_steps is full backpropagation (AlignProp without truncation)")
    truncated_backprop_min: int | None = _f(None, "randomized truncation (AlignProp): K drawn per update, uniformly "
                                                  "from [truncated_backprop_min, truncated_backprop_steps], the same "
                                                  "on every process and seeded by (seed, epoch, update); unset: K fixed")
    gradient_checkpointing: bool = _f(True, "recompute each gradient step's UNet call and the VAE decode in the "
                                            "backward pass: memory of one latent per step instead of K UNets' activations")

    def validate(self, num_processes: int = 1) -> None:
        """The shared checks, then reward-gradient's own (naming the field)."""
        super().validate(num_processes)
        if int(self.train_steps_per_epoch) < 1 or int(self.truncated_backprop_steps) < 1:
            raise ValueError("train_steps_per_epoch and truncated_backprop_steps must be >= 1, got "
                             f"{self.train_steps_per_epoch} and {self.truncated_backprop_steps}")
        if self.truncated_backprop_min is not None and not 1 <= self.truncated_backprop_min <= \
                self.truncated_backprop_steps:
            raise ValueError(f"truncated_backprop_min must be in [1, truncated_backprop_steps = "
                             f"{self.truncated_backprop_steps}], got {self.truncated_backprop_min}")
        if self.truncated_backprop_steps > self.sample_num_steps:
            raise ValueError(f"truncated_backprop_steps ({self.truncated_backprop_steps}) cannot exceed "
                             f"sample_num_steps ({self.sample_num_steps})")

    @property
    def samples_per_epoch(self) -> int:
        """Samples drawn per process and epoch."""
        return self.train_steps_per_epoch * self.train_gradient_accumulation_steps * self.train_batch_size
