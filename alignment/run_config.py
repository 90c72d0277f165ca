"""Settings every alignment run shares (DDPO, reward-gradient): one base dataclass.

``DDPOConfig`` and ``RewardGradConfig`` inherit these fields and redeclare the
few whose default or meaning differs (a redeclared field keeps its place, so
``--help`` lists the shared keys first, then the method's own).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def config_field(default, help: str, **kw):
    """A dataclass field with its ``--help`` text (lists get a fresh copy per instance)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


_f = config_field

DEFAULT_PROMPTS = ["a painting of a cat", "a painting of a dog", "a landscape with mountains",
                   "a still life with fruit", "a portrait of a woman", "a city street at night"]
DEFAULT_EVAL_PROMPTS = ["a painting of a horse", "a forest in winter", "a boat on the sea", "a vase of flowers"]


def _as_list(value: Any, field_name: str) -> list:
    """A string, or a one-item list holding a bracketed JSON / YAML list, becomes that list."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        text = value[0].strip()
        if text.startswith("[") and text.endswith("]"):
            import yaml

            try:
                parsed = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ValueError(f"{field_name}: {text[:80]!r} looks like a list but does not parse ({exc})") from None
            if not isinstance(parsed, list) or not all(isinstance(v, str) for v in parsed):
                raise ValueError(f"{field_name}: expected a list of strings, got {text[:80]!r}")
            return parsed
    return list(value)


@dataclass
class AlignmentRunConfig:
    """Model, prompts, LoRA, precision, evaluation, tracking and checkpoint settings of an alignment run."""

    # model and data
    pretrained_model: str = _f("tiny", "'painter' (the shipped SynthArt-trained tiny SD, copied to "
                                       "output_dir/painter), 'tiny' (random-init tiny SD, built into "
                                       "output_dir/tiny_sd), a diffusers pipeline folder or a hub id (SD 1.x / 2.x)")
    reward: str = _f("brightness", "reward spec for reward.load_reward, e.g. 'artquant', 'artquant:PATH', "
                                   "'brightness', 'artquant*0.8+jpeg_compressibility*0.2'")
    prompts: list[str] = _f(DEFAULT_PROMPTS, "training prompts: a list, or one path to a text file (one prompt a line)")
    eval_prompts: list[str] = _f(DEFAULT_EVAL_PROMPTS, "held-out prompts for evaluation (list or one file path); "
                                                       "empty disables evaluation")
    negative_prompt: str = _f("", "negative prompt (the unconditional branch of guidance)")
    output_dir: str = _f("runs/alignment", "run folder: metrics.jsonl, reward_curve.png, checkpoint-N/")
    seed: int = _f(0, "seed of everything (LoRA init, sampling noise, prompt choice, eval noise)")
    resolution: int = _f(64, "image side in pixels (latent side = resolution / VAE factor)")

    # sampling
    num_epochs: int = _f(10, "number of epochs")
    sample_num_steps: int = _f(10, "DDIM steps per trajectory")
    sample_eta: float = _f(1.0, "DDIM eta")
    guidance_scale: float = _f(5.0, "classifier-free guidance scale, in sampling and training (1 = no guidance)")

    # training
    train_batch_size: int = _f(2, "trajectories per training micro-batch (per process)")
    train_gradient_accumulation_steps: int = _f(1, "micro-batches accumulated per optimizer update")
    learning_rate: float = _f(3e-4, "AdamW learning rate")
    lr_warmup_steps: int = _f(0, "optimizer updates over which the learning rate rises linearly to learning_rate: "
                                 "Adam's first updates move every parameter by about the full rate whatever the "
                                 "gradient's signal, so a warm-up keeps a noisy start from walking the model away")
    adam_weight_decay: float = _f(1e-4, "AdamW weight decay")
    max_grad_norm: float = _f(1.0, "gradient-norm clipping")
    use_lora: bool = _f(True, "train LoRA adapters on the UNet attention (else full fine-tuning)")
    lora_rank: int = _f(4, "LoRA rank (alpha = rank)")
    kl_coef: float = _f(0.0, "weight of the KL to the frozen reference policy (LoRA: adapters disabled)")
    mixed_precision: str = _f("no", "'no', 'fp16' or 'bf16' (frozen weights in that dtype on GPU, autocast)")
    channels_last: bool = _f(True, "channels-last memory layout for the UNet and VAE convolutions")

    # evaluation, tracking, checkpoints
    eval_rewards: list[str] = _f([], "extra reward specs scored on eval_prompts only (never trained on)")
    eval_every: int = _f(5, "evaluate every N epochs (and at the end); 0 disables")
    eval_num_per_prompt: int = _f(2, "images per eval prompt (fixed seeds)")
    checkpoint_every: int = _f(5, "write checkpoint-N every N epochs (and at the end); 0 = only at the end")
    num_checkpoint_limit: int | None = _f(5, "keep only the newest N checkpoints (None keeps all)")
    resume_from: str | None = _f(None, "'latest' (newest checkpoint in output_dir, if any) or a checkpoint folder")
    log_with: str | None = _f(None, "accelerate tracker(s) to mirror metrics and eval grids to, e.g. 'wandb', "
                                    "'tensorboard', 'wandb,tensorboard' (wandb offline unless configured); "
                                    "metrics.jsonl and the curves are always written")
    tracker_project: str = _f("artquant-alignment", "wandb project name")

    def __post_init__(self) -> None:
        """Accept the shapes YAML and ``--key value`` produce: one prompts file as a string, comma lists,
        and a whole list written as one JSON / YAML string (``--prompts '["a cat", "a dog"]'``)."""
        self.prompts = _as_list(self.prompts, "prompts")
        self.eval_prompts = _as_list(self.eval_prompts, "eval_prompts")
        self.eval_rewards = _as_list(self.eval_rewards, "eval_rewards")
        # "--eval_rewards a,b" and "--eval_rewards a b" (and YAML lists) mean the same
        self.eval_rewards = [s.strip() for item in self.eval_rewards for s in str(item).split(",") if s.strip()]
        if self.log_with in ("none", "None", ""):
            self.log_with = None
        self.validate()

    def uses_reference_policy(self) -> bool:
        """Whether training compares against the frozen starting model (a full fine-tuning then keeps a copy)."""
        return self.kl_coef > 0

    def validate(self, num_processes: int = 1) -> None:
        """Refuse inconsistent settings, naming the field, before any work starts.

        Runs on construction (``__post_init__``) and again when a trainer starts (a field may have
        been set since); subclasses extend it with their own fields and call ``super().validate``.
        """
        for name in ("pretrained_model", "reward"):
            if not getattr(self, name):
                raise ValueError(f"{name} is required (see --help)")
        if not self.prompts:
            raise ValueError("prompts is empty: give a list or one prompts file")
        for name in ("num_epochs", "sample_num_steps", "train_batch_size", "train_gradient_accumulation_steps",
                     "lora_rank", "resolution", "eval_num_per_prompt"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.resolution % 8:
            raise ValueError(f"resolution must be a multiple of 8 (the VAE's downsampling), got {self.resolution}")
        if not 0.0 <= self.sample_eta <= 1.0:
            raise ValueError(f"sample_eta must be in [0, 1], got {self.sample_eta}")
        if self.guidance_scale < 1.0:
            raise ValueError(f"guidance_scale must be >= 1 (1 = no guidance), got {self.guidance_scale}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0, got {self.kl_coef}")
        if self.lr_warmup_steps < 0:
            raise ValueError(f"lr_warmup_steps must be >= 0, got {self.lr_warmup_steps}")
        if self.eval_every < 0 or self.checkpoint_every < 0:
            raise ValueError("eval_every and checkpoint_every must be >= 0")
        if self.eval_rewards and not self.eval_prompts:
            raise ValueError("eval_rewards needs eval_prompts (the held-out prompts they score)")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError(f"mixed_precision must be 'no', 'fp16' or 'bf16', got {self.mixed_precision!r}")
        from artquant_core.tracking import tracker_names

        tracker_names(self.log_with)  # an unknown tracker is named, with the known ones
