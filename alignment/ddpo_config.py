"""Configuration of a DDPO run (YAML + ``--key value`` through ``artquant_core.config.parse_config``)."""

from __future__ import annotations

from dataclasses import dataclass, field


def _f(default, help: str, **kw):
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


DEFAULT_PROMPTS = ["a painting of a cat", "a painting of a dog", "a landscape with mountains",
                   "a still life with fruit", "a portrait of a woman", "a city street at night"]
DEFAULT_EVAL_PROMPTS = ["a painting of a horse", "a forest in winter", "a boat on the sea", "a vase of flowers"]


@dataclass
class DDPOConfig:
    """DDPO (Black et al. 2023) fine-tuning settings.

    Dataclass defaults run on the embedded tiny SD on a CPU in about a second
    per epoch; ``configs/ddpo_sd15.yaml`` holds the paper's SD 1.5 settings.
    Batch sizes are per process (as in ``accelerate launch``).
    """

    # model and data
    pretrained_model: str = _f("tiny", "'tiny' (embedded tiny SD, built into output_dir/tiny_sd), a diffusers "
                                       "pipeline folder or a hub id (SD 1.x / 2.x)")
    reward: str = _f("brightness", "reward spec for reward.load_reward, e.g. 'artquant', 'artquant:PATH', "
                                   "'brightness', 'artquant*0.8+jpeg_compressibility*0.2'")
    prompts: list[str] = _f(DEFAULT_PROMPTS, "training prompts: a list, or one path to a text file (one prompt a line)")
    eval_prompts: list[str] = _f(DEFAULT_EVAL_PROMPTS, "held-out prompts for evaluation (list or one file path); "
                                                       "empty disables evaluation")
    negative_prompt: str = _f("", "negative prompt (the unconditional branch of guidance)")
    output_dir: str = _f("runs/ddpo", "run folder: metrics.jsonl, reward_curve.png, eval grids, checkpoint-N/")
    seed: int = _f(0, "seed of everything (sampling noise, prompt choice, shuffles, eval noise)")
    resolution: int = _f(64, "image side in pixels (latent side = resolution / VAE factor)")

    # sampling
    num_epochs: int = _f(10, "number of epochs (sample, reward, train)")
    sample_num_steps: int = _f(10, "DDIM steps per trajectory")
    sample_eta: float = _f(1.0, "DDIM eta; must be > 0 (the policy's noise)")
    guidance_scale: float = _f(5.0, "classifier-free guidance scale, in sampling and training")
    sample_batch_size: int = _f(4, "trajectories per sampling batch (per process)")
    sample_num_batches_per_epoch: int = _f(2, "sampling batches per epoch (per process)")

    # training
    train_batch_size: int = _f(2, "trajectories per training micro-batch (per process)")
    train_gradient_accumulation_steps: int = _f(1, "micro-batches per optimizer step (each over all trained timesteps)")
    train_timestep_fraction: float = _f(1.0, "fraction of each trajectory's timesteps trained on (random per sample)")
    train_timestep_batch: int | None = _f(5, "timesteps per UNet call in training (unset: all trained timesteps of "
                                             "a micro-batch in one call); bounds activation memory. 5 is as fast "
                                             "as 10 on the tiny SD with 34 MiB less peak RSS")
    train_num_inner_epochs: int = _f(1, "passes over each epoch's samples")
    learning_rate: float = _f(3e-4, "AdamW learning rate")
    adam_weight_decay: float = _f(1e-4, "AdamW weight decay")
    max_grad_norm: float = _f(1.0, "gradient-norm clipping")
    clip_range: float = _f(1e-4, "PPO clip range of the importance ratio")
    adv_clip_max: float = _f(5.0, "advantages clipped to +-adv_clip_max")
    per_prompt_stat_tracking: bool = _f(True, "normalise rewards per prompt (else by batch statistics)")
    per_prompt_buffer_size: int = _f(16, "rewards kept per prompt for its statistics")
    per_prompt_min_count: int = _f(16, "rewards a prompt needs before its own statistics are used")
    use_lora: bool = _f(True, "train LoRA adapters on the UNet attention (else full fine-tuning)")
    lora_rank: int = _f(4, "LoRA rank (alpha = rank)")
    kl_coef: float = _f(0.0, "weight of the KL to the frozen reference policy (LoRA: adapters disabled)")
    mixed_precision: str = _f("no", "'no', 'fp16' or 'bf16' (frozen weights in that dtype, autocast)")
    channels_last: bool = _f(True, "channels-last memory layout for the UNet and VAE convolutions")

    # evaluation, tracking, checkpoints
    eval_rewards: list[str] = _f([], "extra reward specs scored on eval_prompts only (never trained on)")
    eval_every: int = _f(5, "evaluate every N epochs (and at the end); 0 disables")
    eval_num_per_prompt: int = _f(2, "images per eval prompt (fixed seeds)")
    checkpoint_every: int = _f(5, "write checkpoint-N every N epochs (and at the end)")
    num_checkpoint_limit: int | None = _f(5, "keep only the newest N checkpoints (None keeps all)")
    resume_from: str | None = _f(None, "'latest' (newest checkpoint in output_dir, if any) or a checkpoint folder")
    log_with: str | None = _f(None, "'wandb' to mirror metrics to wandb (offline unless configured)")
    tracker_project: str = _f("artquant-ddpo", "wandb project name")

    def validate(self, num_processes: int = 1) -> None:
        """Refuse inconsistent settings, naming the field, before any work starts."""
        if self.sample_eta <= 0:
            raise ValueError(f"sample_eta must be > 0 for DDPO (got {self.sample_eta}): with eta 0 the DDIM step "
                             "is deterministic and its log-probability is undefined")
        for name in ("num_epochs", "sample_num_steps", "sample_batch_size", "sample_num_batches_per_epoch",
                     "train_batch_size", "train_gradient_accumulation_steps", "train_num_inner_epochs",
                     "lora_rank", "per_prompt_buffer_size", "per_prompt_min_count", "resolution"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("learning_rate", "clip_range", "adv_clip_max", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0 < self.train_timestep_fraction <= 1:
            raise ValueError(f"train_timestep_fraction must be in (0, 1], got {self.train_timestep_fraction}")
        if self.train_timestep_batch is not None and self.train_timestep_batch < 1:
            raise ValueError(f"train_timestep_batch must be >= 1 or unset, got {self.train_timestep_batch}")
        samples = self.sample_batch_size * self.sample_num_batches_per_epoch
        per_step = self.train_batch_size * self.train_gradient_accumulation_steps
        if samples % per_step:
            raise ValueError(
                f"batch sizes do not divide: sample_batch_size*sample_num_batches_per_epoch*num_processes = "
                f"{self.sample_batch_size}*{self.sample_num_batches_per_epoch}*{num_processes} = "
                f"{samples * num_processes} samples per epoch is not a multiple of train_batch_size*"
                f"train_gradient_accumulation_steps*num_processes = {self.train_batch_size}*"
                f"{self.train_gradient_accumulation_steps}*{num_processes} = {per_step * num_processes}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError(f"mixed_precision must be 'no', 'fp16' or 'bf16', got {self.mixed_precision!r}")
        if self.log_with not in (None, "", "none", "wandb"):
            raise ValueError(f"log_with must be 'wandb' or None, got {self.log_with!r}")
        if self.kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0, got {self.kl_coef}")
        if self.eval_every < 0 or self.checkpoint_every < 0:
            raise ValueError("eval_every and checkpoint_every must be >= 0")
