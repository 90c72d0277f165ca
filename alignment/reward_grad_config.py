"""Configuration of reward-gradient fine-tuning (DRaFT-K / AlignProp)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

_MIXED_PRECISION = ("no", "fp16", "bf16")


@dataclass
class RewardGradConfig:
    """Settings of :class:`~alignment.RewardGradTrainer`.

    One *epoch* is ``train_steps_per_epoch`` optimizer updates; each update
    accumulates ``train_gradient_accumulation_steps`` micro-batches of
    ``train_batch_size`` fresh samples per process. A sample is a full DDIM
    trajectory: the first ``sample_num_steps - truncated_backprop_steps``
    steps run without gradient, the last ``truncated_backprop_steps`` steps
    and the VAE decode keep the graph, and the loss is ``-mean(reward)``.
    """

    pretrained_model: str = field(default="tiny", metadata={"help": "'tiny' (the embedded tiny SD), a StableDiffusionPipeline folder or a hub id."})
    reward: str = field(default="brightness", metadata={"help": "load_reward spec of the reward to maximise; must be differentiable."})
    prompts: list[str] = field(default_factory=lambda: ["a painting of a cat"],
                               metadata={"help": "Training prompts, or one path to a text file with one prompt a line."})
    eval_prompts: list[str] = field(default_factory=list, metadata={"help": "Held-out prompts (or a file) scored with eval_rewards."})
    eval_rewards: list[str] = field(default_factory=list,
                                    metadata={"help": "load_reward specs scored on eval_prompts after every epoch; never trained on."})
    output_dir: str = field(default="reward_grad_out", metadata={"help": "Run folder: metrics.jsonl, reward_curve.png, checkpoint-N/."})
    seed: int = field(default=0, metadata={"help": "Seed of the initial noise, prompt choice and LoRA init."})
    num_epochs: int = field(default=10, metadata={"help": "Number of epochs."})
    train_steps_per_epoch: int = field(default=1, metadata={"help": "Optimizer updates per epoch."})
    sample_num_steps: int = field(default=20, metadata={"help": "DDIM steps of each trajectory."})
    sample_eta: float = field(default=0.0, metadata={"help": "DDIM eta (0 = deterministic sampler)."})
    guidance_scale: float = field(default=5.0, metadata={"help": "Classifier-free guidance scale (1 = no guidance)."})
    resolution: int = field(default=0, metadata={"help": "Image side in pixels; 0 = the UNet's native sample size."})
    train_batch_size: int = field(default=2, metadata={"help": "Samples per micro-batch and process."})
    train_gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches accumulated per update."})
    truncated_backprop_steps: int = field(default=1, metadata={"help": "K: the last K denoising steps keep gradients."})
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW learning rate."})
    adam_weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient-norm clip (<= 0 disables clipping)."})
    use_lora: bool = field(default=True, metadata={"help": "Train a LoRA on the UNet attention projections (else the whole UNet)."})
    lora_rank: int = field(default=4, metadata={"help": "LoRA rank (alpha = rank)."})
    kl_coef: float = field(default=0.0, metadata={
        "help": "Weight of the squared distance between the tuned and the frozen UNet's noise predictions on the "
                "gradient steps (a KL to the reference policy up to a constant); 0 disables it."})
    gradient_checkpointing: bool = field(default=True, metadata={
        "help": "Recompute each gradient step's UNet call and the VAE decode in the backward pass to save memory."})
    mixed_precision: str = field(default="no", metadata={"help": "'no', 'fp16' or 'bf16' (accelerate autocast)."})
    checkpoint_every: int = field(default=1, metadata={"help": "Write checkpoint-N/ every this many epochs (0 = only the last)."})
    checkpoints_total_limit: Optional[int] = field(default=None, metadata={"help": "Keep only the newest N checkpoints."})
    resume_from: Optional[str] = field(default=None, metadata={"help": "'latest' or a checkpoint-N folder to continue from."})
    log_with: Optional[str] = field(default=None, metadata={"help": "'wandb' to mirror metrics to wandb (offline unless configured)."})
    num_eval_samples_per_prompt: int = field(default=1, metadata={"help": "Images drawn per eval prompt."})

    def __post_init__(self) -> None:
        if isinstance(self.prompts, str):
            self.prompts = [self.prompts]
        if isinstance(self.eval_prompts, str):
            self.eval_prompts = [self.eval_prompts]
        if isinstance(self.eval_rewards, str):
            self.eval_rewards = [s for s in self.eval_rewards.split(",") if s]
        if self.log_with in ("none", "None", ""):
            self.log_with = None
        self.validate()

    def validate(self) -> None:
        """Refuse inconsistent settings with a message naming the field."""
        positive = ("num_epochs", "train_steps_per_epoch", "sample_num_steps", "train_batch_size",
                    "train_gradient_accumulation_steps", "truncated_backprop_steps", "lora_rank",
                    "num_eval_samples_per_prompt")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"RewardGradConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.truncated_backprop_steps > self.sample_num_steps:
            raise ValueError(f"RewardGradConfig.truncated_backprop_steps ({self.truncated_backprop_steps}) cannot exceed "
                             f"sample_num_steps ({self.sample_num_steps})")
        if not 0.0 <= self.sample_eta <= 1.0:
            raise ValueError(f"RewardGradConfig.sample_eta must be in [0, 1], got {self.sample_eta}")
        if self.guidance_scale < 1.0:
            raise ValueError(f"RewardGradConfig.guidance_scale must be >= 1, got {self.guidance_scale}")
        if self.learning_rate <= 0:
            raise ValueError(f"RewardGradConfig.learning_rate must be > 0, got {self.learning_rate}")
        if self.kl_coef < 0:
            raise ValueError(f"RewardGradConfig.kl_coef must be >= 0, got {self.kl_coef}")
        if self.resolution < 0 or self.resolution % 8:
            raise ValueError(f"RewardGradConfig.resolution must be 0 or a positive multiple of 8, got {self.resolution}")
        if self.checkpoint_every < 0:
            raise ValueError(f"RewardGradConfig.checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if self.mixed_precision not in _MIXED_PRECISION:
            raise ValueError(f"RewardGradConfig.mixed_precision must be one of {_MIXED_PRECISION}, got {self.mixed_precision!r}")
        if self.log_with not in (None, "wandb"):
            raise ValueError(f"RewardGradConfig.log_with must be 'wandb' or None, got {self.log_with!r}")
        if not self.pretrained_model:
            raise ValueError("RewardGradConfig.pretrained_model is required (a StableDiffusionPipeline folder or hub id)")
        if not self.reward:
            raise ValueError("RewardGradConfig.reward is required (a load_reward spec)")
        if not self.prompts:
            raise ValueError("RewardGradConfig.prompts is empty")
        if self.eval_rewards and not self.eval_prompts:
            raise ValueError("RewardGradConfig.eval_rewards needs eval_prompts")

    @property
    def samples_per_epoch(self) -> int:
        """Samples drawn per process and epoch."""
        return self.train_steps_per_epoch * self.train_gradient_accumulation_steps * self.train_batch_size

