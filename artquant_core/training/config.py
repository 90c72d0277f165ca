"""``ScorerTrainingConfig``: ``transformers.TrainingArguments`` plus the ArtQuant method's fields.

Every standard Trainer field works unchanged (bf16, gradient checkpointing,
DeepSpeed/FSDP, ``report_to``, ``save_steps`` …); the fields below add the
model, the data, the task mix and the loss weights. Defaults are the
reference's loss weights and CPU-friendly run settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from artquant_core.training.losses import PAIR_SIGMA_MODES

TASKS = ("score", "description", "attributes", "pair")


def _has_accelerator() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available() or bool(mps is not None and mps.is_available())


@dataclass
class ScorerTrainingConfig(TrainingArguments):
    # --- model -----------------------------------------------------------
    model_name_or_path: str = field(default="tiny", metadata={
        "help": "'tiny' (embedded default, shipped weights), 'tiny-random' (random init), a saved scorer folder or a hub id."})
    attn_implementation: str = field(default="sdpa", metadata={
        "help": "'sdpa' (default), 'eager', or 'flash_attention_2' (needs the flash extra); 'auto' picks flash when installed."})
    tiny_kwargs: str = field(default="", metadata={
        "help": "Size/init knobs for 'tiny-random' as comma-separated key=value (e.g. 'image_size=64,vision_depth=2')."})
    # --- data ------------------------------------------------------------
    train_data: str | None = field(default=None, metadata={"help": "Training records (JSON list or JSONL)."})
    eval_data: str | None = field(default=None, metadata={"help": "Validation records (score records) for SRCC/PLCC."})
    image_root: str | None = field(default=None, metadata={
        "help": "Folder relative image paths resolve against (default: the records file's folder)."})
    skip_bad_images: bool = field(default=False, metadata={
        "help": "Skip unreadable images with a warning and a count instead of stopping."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Cap on validation records scored."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Cap on training records used."})
    tasks: str = field(default="score,description,attributes", metadata={
        "help": f"Comma-separated tasks mixed per batch, from {TASKS}."})
    attributes_per_record: int = field(default=0, metadata={
        "help": "Attribute score examples per record (seeded random subset; 0 = all of them)."})
    description_fraction: float = field(default=1.0, metadata={
        "help": "Share of the description records used (seeded random subset; 1 = all)."})
    # --- losses ----------------------------------------------------------
    description_weight: float = field(default=1.0, metadata={"help": "Weight of the description next-token CE."})
    score_weight: float = field(default=0.05, metadata={"help": "Weight of the score loss (answer CE + KL)."})
    kl_weight: float = field(default=1.0, metadata={"help": "Weight of the level KL inside the score loss."})
    pair_weight: float = field(default=1.0, metadata={"help": "Weight of the Thurstone fidelity loss (pair task)."})
    level_softmax: str = field(default="vocab", metadata={
        "help": "'vocab': KL against the full-vocabulary softmax (the method); 'levels': over the level tokens only."})
    pair_sigma: str = field(default="fixed", metadata={
        "help": "Pair task, spreads of the predicted preference: 'fixed' (1 per image, the reference's "
                "DeQA-Score recipe), 'detached' (the predicted spreads without their gradient) or 'predicted' "
                "(with it: the model can then lower the loss by inflating its spread). The target always "
                "uses the records' std (1 where absent)."})
    # --- parameters trained ----------------------------------------------
    use_lora: bool = field(default=False, metadata={"help": "Train LoRA adapters (peft) instead of all weights."})
    lora_rank: int = field(default=128)
    lora_alpha: int = field(default=256)
    lora_dropout: float = field(default=0.05)
    lora_target_modules: str = field(default=r".*(language_model|text_model).*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)", metadata={
        "help": "Regex (or comma-separated names) of the modules LoRA wraps; default: the language model's linear layers."})
    train_vision_tower: bool = field(default=False, metadata={
        "help": "With LoRA: also fully train the vision tower and projector."})
    freeze_vision_tower: bool = field(default=False, metadata={
        "help": "Full fine-tuning: keep the vision encoder fixed and train the projector and language model "
                "(LLaVA's second stage; here, after a vision warm-up)."})
    merge_lora_on_save: bool = field(default=False, metadata={
        "help": "Save the final scorer with the adapters merged into the weights."})
    vision_warmup_steps: int = field(default=0, metadata={
        "help": "Steps of score + attribute regression on the vision tower and projector (temporary linear head "
                "on the visual tokens) before the main training; for towers trained from scratch. 0 = off; "
                "skipped on resume."})
    vision_warmup_learning_rate: float = field(default=1e-3, metadata={"help": "AdamW peak learning rate of the vision warm-up."})
    vision_warmup_batch_size: int = field(default=64, metadata={"help": "Images per vision warm-up step."})
    # --- run -------------------------------------------------------------
    warmup_ratio: float | None = field(default=None, metadata={
        "help": "Fraction of steps for linear warm-up (sets warmup_steps; transformers 5 dropped the field)."})
    eval_batch_size: int = field(default=16, metadata={"help": "Batch size when scoring validation images."})
    # --- TrainingArguments defaults changed for this method -------------------
    learning_rate: float = field(default=2e-5, metadata={"help": "AdamW peak learning rate (reference: 2e-5 with LoRA)."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Schedule after warm-up (cosine as the reference)."})
    logging_steps: float = field(default=10, metadata={"help": "Log every N steps (metrics.jsonl / wandb)."})
    save_steps: float = field(default=200, metadata={"help": "Checkpoint every N steps (atomic checkpoint-N/)."})
    dataloader_pin_memory: bool = field(default=False, metadata={"help": "Pin host memory (only useful on GPU)."})

    def __post_init__(self) -> None:
        if self.output_dir is None:
            self.output_dir = "runs/scorer"
        if self.warmup_ratio is not None:
            if not 0.0 <= self.warmup_ratio < 1.0:
                raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
            self.warmup_steps = self.warmup_ratio
        # The collator builds model inputs from records; nothing may be dropped by column name.
        self.remove_unused_columns = False
        if not self.use_cpu and not _has_accelerator():
            self.use_cpu = True  # several CPU processes (torchrun / accelerate) then join over gloo
        super().__post_init__()
        unknown = [t for t in self.task_list if t not in TASKS]
        if unknown:
            raise ValueError(f"tasks: unknown task(s) {unknown}; known: {', '.join(TASKS)}")
        if self.freeze_vision_tower and self.use_lora:
            raise ValueError("freeze_vision_tower applies to full fine-tuning; with use_lora the vision tower is "
                             "frozen unless train_vision_tower is set")
        if self.vision_warmup_steps < 0 or self.vision_warmup_batch_size < 1:
            raise ValueError(f"vision_warmup_steps must be >= 0 and vision_warmup_batch_size >= 1, got "
                             f"{self.vision_warmup_steps} and {self.vision_warmup_batch_size}")
        if self.pair_sigma not in PAIR_SIGMA_MODES:
            raise ValueError(f"pair_sigma must be one of {', '.join(PAIR_SIGMA_MODES)}, got {self.pair_sigma!r}")
        if self.level_softmax not in ("vocab", "levels"):
            raise ValueError(f"level_softmax must be 'vocab' or 'levels', got {self.level_softmax!r}")
        for name in ("description_weight", "score_weight", "kl_weight", "pair_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @property
    def task_list(self) -> list[str]:
        return [t.strip() for t in self.tasks.split(",") if t.strip()]

    def tiny_overrides(self) -> dict:
        """``tiny_kwargs`` parsed into keyword arguments (ints/floats/bools converted)."""
        out: dict = {}
        for item in filter(None, (s.strip() for s in self.tiny_kwargs.split(","))):
            if "=" not in item:
                raise ValueError(f"tiny_kwargs: expected key=value, got {item!r}")
            key, value = (s.strip() for s in item.split("=", 1))
            for cast in (int, float):
                try:
                    value = cast(value)
                    break
                except ValueError:
                    pass
            if value in ("true", "True"):
                value = True
            elif value in ("false", "False"):
                value = False
            out[key] = value
        return out
