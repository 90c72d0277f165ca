"""Configuration of reward-gradient fine-tuning, DRaFT-K / AlignProp (YAML + ``--key value``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from alignment.ddpo_config import DEFAULT_EVAL_PROMPTS, DEFAULT_PROMPTS


def _f(default, help: str, **kw):
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class RewardGradConfig:
    """Reward-gradient fine-tuning settings (DRaFT-K, Clark et al. 2023; AlignProp, Prabhudesai et al. 2023).

    One *epoch* is ``train_steps_per_epoch`` optimizer updates; each update
    accumulates ``train_gradient_accumulation_steps`` micro-batches of
    ``train_batch_size`` fresh samples (per process). A sample is a DDIM
    trajectory whose first ``sample_num_steps - truncated_backprop_steps``
    steps run without gradient; the last ``truncated_backprop_steps`` steps
    and the VAE decode keep the graph, and the loss is ``-mean(reward)``
    (plus ``kl_coef`` times the KL regulariser). The reward must be
    differentiable. Dataclass defaults run on the embedded tiny SD on a CPU;
    ``configs/reward_grad_sd15.yaml`` holds SD 1.5 settings.
    """

    # model and data
    pretrained_model: str = _f("tiny", "'tiny' (embedded tiny SD, built into output_dir/tiny_sd), a diffusers "
                                       "pipeline folder or a hub id (SD 1.x / 2.x)")
    reward: str = _f("brightness", "reward spec for reward.load_reward; must be differentiable (e.g. 'artquant', "
                                   "'brightness', 'artquant*0.8+saturation*0.2'), 'jpeg_compressibility' is refused")
    prompts: list[str] = _f(DEFAULT_PROMPTS, "training prompts: a list, or one path to a text file (one prompt a line)")
    eval_prompts: list[str] = _f(DEFAULT_EVAL_PROMPTS, "held-out prompts for evaluation (list or one file path); "
                                                       "empty disables evaluation")
    negative_prompt: str = _f("", "negative prompt (the unconditional branch of guidance)")
    output_dir: str = _f("runs/reward_grad", "run folder: metrics.jsonl, reward_curve.png, checkpoint-N/")
    seed: int = _f(0, "seed of everything (LoRA init, sampling noise, prompt choice, eval noise)")
    resolution: int = _f(64, "image side in pixels (latent side = resolution / VAE factor)")

    # sampling
    num_epochs: int = _f(10, "number of epochs")
    sample_num_steps: int = _f(10, "DDIM steps per trajectory")
    sample_eta: float = _f(0.0, "DDIM eta (0 = deterministic DDIM, as in DRaFT / AlignProp)")
    guidance_scale: float = _f(5.0, "classifier-free guidance scale (1 = no guidance)")

    # training
    train_steps_per_epoch: int = _f(2, "optimizer updates per epoch")
    train_batch_size: int = _f(2, "samples per micro-batch (per process)")
    train_gradient_accumulation_steps: int = _f(1, "micro-batches accumulated per optimizer update")
    truncated_backprop_steps: int = _f(1, "K: gradients flow through the last K denoising steps (DRaFT-K); "
                                          "K = sample_num_steps is full backpropagation (AlignProp without truncation)")
    learning_rate: float = _f(1e-4, "AdamW learning rate")
    adam_weight_decay: float = _f(1e-4, "AdamW weight decay")
    max_grad_norm: float = _f(1.0, "gradient-norm clipping (<= 0 disables it)")
    use_lora: bool = _f(True, "train LoRA adapters on the UNet attention (else full fine-tuning)")
    lora_rank: int = _f(4, "LoRA rank (alpha = rank)")
    kl_coef: float = _f(0.0, "weight of the KL to the frozen reference (LoRA off) on the gradient steps: the mean "
                             "squared difference of the two noise predictions; 0 disables it (needs use_lora)")
    gradient_checkpointing: bool = _f(True, "recompute each gradient step's UNet call and the VAE decode in the "
                                            "backward pass: memory of one latent per step instead of K UNets' activations")
    mixed_precision: str = _f("no", "'no', 'fp16' or 'bf16' (frozen weights in that dtype on GPU, autocast)")
    channels_last: bool = _f(True, "channels-last memory layout for the UNet and VAE convolutions")

    # evaluation, tracking, checkpoints
    eval_rewards: list[str] = _f([], "extra reward specs scored on eval_prompts only (never trained on; "
                                     "non-differentiable ones are fine here)")
    eval_every: int = _f(1, "evaluate every N epochs (and at the end); 0 disables")
    eval_num_per_prompt: int = _f(1, "images per eval prompt (fixed seeds)")
    checkpoint_every: int = _f(5, "write checkpoint-N every N epochs (and at the end); 0 = only at the end")
    num_checkpoint_limit: int | None = _f(5, "keep only the newest N checkpoints (None keeps all)")
    resume_from: str | None = _f(None, "'latest' (newest checkpoint in output_dir, if any) or a checkpoint folder")
    log_with: str | None = _f(None, "'wandb' to mirror metrics to wandb (offline unless configured)")
    tracker_project: str = _f("artquant-reward-grad", "wandb project name")

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
        """Refuse inconsistent settings, naming the field, before any work starts."""
        for name in ("num_epochs", "train_steps_per_epoch", "sample_num_steps", "train_batch_size",
                     "train_gradient_accumulation_steps", "truncated_backprop_steps", "lora_rank",
                     "eval_num_per_prompt", "resolution"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.truncated_backprop_steps > self.sample_num_steps:
            raise ValueError(f"truncated_backprop_steps ({self.truncated_backprop_steps}) cannot exceed "
                             f"sample_num_steps ({self.sample_num_steps})")
        if self.resolution % 8:
            raise ValueError(f"resolution must be a multiple of 8, got {self.resolution}")
        if not 0.0 <= self.sample_eta <= 1.0:
            raise ValueError(f"sample_eta must be in [0, 1], got {self.sample_eta}")
        if self.guidance_scale < 1.0:
            raise ValueError(f"guidance_scale must be >= 1, got {self.guidance_scale}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0, got {self.kl_coef}")
        if self.kl_coef > 0 and not self.use_lora:
            raise ValueError("kl_coef > 0 needs use_lora=True (the reference is the UNet with its LoRA switched off)")
        if self.eval_every < 0 or self.checkpoint_every < 0:
            raise ValueError("eval_every and checkpoint_every must be >= 0")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError(f"mixed_precision must be 'no', 'fp16' or 'bf16', got {self.mixed_precision!r}")
        if self.log_with not in (None, "wandb"):
            raise ValueError(f"log_with must be 'wandb' or None, got {self.log_with!r}")
        if not self.pretrained_model:
            raise ValueError("pretrained_model is required ('tiny', a pipeline folder or a hub id)")
        if not self.reward:
            raise ValueError("reward is required (a load_reward spec of a differentiable reward)")
        if not self.prompts:
            raise ValueError("prompts is empty")
        if self.eval_rewards and not self.eval_prompts:
            raise ValueError("eval_rewards needs eval_prompts")

    @property
    def samples_per_epoch(self) -> int:
        """Samples drawn per process and epoch."""
        return self.train_steps_per_epoch * self.train_gradient_accumulation_steps * self.train_batch_size
