"""``train_scorer``: build the scorer, the data and the Trainer from a config, train, evaluate, save."""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from artquant_core.checkpoint import latest_checkpoint
from artquant_core.training.config import ScorerTrainingConfig
from artquant_core.training.vision_warmup import VISION_MODULES, is_vision_parameter

REQUIRED_CHECKPOINT_FILES = ("trainer_state.json",)


def resolve_attn_implementation(name: str) -> str:
    """'auto' → flash_attention_2 when flash-attn is installed and CUDA is there, else sdpa."""
    if name == "auto":
        has_flash = importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available()
        return "flash_attention_2" if has_flash else "sdpa"
    if name not in ("sdpa", "eager", "flash_attention_2"):
        raise ValueError(f"attn_implementation must be sdpa, eager, flash_attention_2 or auto, got {name!r}")
    return name


def load_scorer_for_training(config: ScorerTrainingConfig):
    """The scorer a run starts from: the embedded tiny default, a random tiny one, or a folder / hub id."""
    from artquant_core.tiny import build_tiny_scorer

    name = config.model_name_or_path
    if name == "tiny":
        if config.tiny_kwargs:
            raise ValueError("tiny_kwargs apply to model_name_or_path 'tiny-random' only")
        scorer = build_tiny_scorer(seed=config.seed, pretrained=True)
    elif name == "tiny-random":
        from artquant_core.tiny import TinyScorerConfig

        scorer = build_tiny_scorer(seed=config.seed, pretrained=False, config=TinyScorerConfig(**config.tiny_overrides()))
    else:
        from artquant_core.scorer import ArtQuantScorer

        dtype = torch.bfloat16 if config.bf16 else (torch.float16 if config.fp16 else None)
        kwargs: dict[str, Any] = {"attn_implementation": resolve_attn_implementation(config.attn_implementation)}
        if dtype is not None:
            kwargs["dtype"] = dtype
        scorer = ArtQuantScorer.from_pretrained(name, **kwargs)
    if config.use_lora:
        scorer.model = _wrap_lora(scorer.model, config)
    elif config.freeze_vision_tower:
        frozen = freeze_vision_encoder(scorer.model)
        if not frozen:
            raise ValueError(f"freeze_vision_tower: {name} has no vision encoder parameters to freeze")
    return scorer


def freeze_vision_encoder(model) -> int:
    """Stop gradients to the vision encoder, not to the projector; returns the number of tensors frozen."""
    frozen = 0
    for name, param in model.named_parameters():
        if is_vision_parameter(name, projector=False):
            param.requires_grad_(False)
            frozen += 1
    return frozen


def _wrap_lora(model, config: ScorerTrainingConfig):
    from peft import LoraConfig, get_peft_model

    targets: Any = config.lora_target_modules
    if "," in targets or targets.isidentifier():
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    save = None
    if config.train_vision_tower:
        names = {n.split(".")[-1] for n, _ in model.named_modules()}
        save = [m for m in VISION_MODULES if m in names] or None
    lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, modules_to_save=save, bias="none")
    try:
        return get_peft_model(model, lora)
    except ValueError as exc:
        raise ValueError(f"lora_target_modules={config.lora_target_modules!r} matches no module: {exc}") from None


def resolve_resume(config: ScorerTrainingConfig, resume_from_checkpoint: bool | str | None) -> str | None:
    """``True`` → the latest complete ``checkpoint-N`` in output_dir; a path is checked for its files."""
    if resume_from_checkpoint in (None, False, ""):
        return None
    if resume_from_checkpoint is True or resume_from_checkpoint == "latest":
        path = latest_checkpoint(config.output_dir)
        if path is None:
            raise FileNotFoundError(f"resume requested but {config.output_dir} holds no complete checkpoint-N folder")
    else:
        path = Path(resume_from_checkpoint)
        if not path.is_dir():
            raise FileNotFoundError(f"checkpoint folder not found: {path}")
    missing = [f for f in REQUIRED_CHECKPOINT_FILES if not (path / f).is_file()]
    if not any(path.glob("*model*.safetensors")):
        missing.append("*model*.safetensors")
    if not any(path.glob("optimizer.*")):
        missing.append("optimizer.pt")
    if missing:
        raise FileNotFoundError(f"checkpoint {path} is missing {', '.join(missing)}")
    return str(path)


def _log_to_library_log(state, logs) -> None:
    if state.is_world_process_zero and logs:
        from artquant_core.console import library_logger

        library_logger().info("trainer step %s: %s", state.global_step, logs)


class _QuietProgressCallback(ProgressCallback):
    """The Trainer's progress bar, with its log dicts sent to the run's log file instead of the terminal."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        _log_to_library_log(state, logs)


class _LogFileCallback(TrainerCallback):
    """``PrinterCallback`` (no progress bar) writing to the run's log file instead of printing."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        _log_to_library_log(state, logs)


def _log_dicts_to_library_log(trainer) -> None:
    """Under a quiet ``artquant`` console the Trainer's raw log dicts (``{'loss': ...}``, printed between
    the command's own lines) go to ``OUT/artquant.log``; ``--verbose`` keeps them on the terminal."""
    from artquant_core.console import is_quiet

    if not is_quiet():
        return
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(_QuietProgressCallback)
    if trainer.pop_callback(PrinterCallback) is not None:
        trainer.add_callback(_LogFileCallback)


def _checkpoint_step(path: str) -> int:
    return int(json.loads((Path(path) / "trainer_state.json").read_text())["global_step"])


class TrackerCallback(TrainerCallback):
    """Mirrors the Trainer's logs into the shared RunTracker and redraws the curves."""

    def __init__(self, tracker) -> None:
        self.tracker = tracker

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            row = dict(logs)
            row.setdefault("epoch", state.epoch)
            self.tracker.log(row, step=state.global_step)

    def _plot(self) -> None:
        self.tracker.plot("loss_curve.png", "step", ["loss", "loss_answer", "loss_kl", "loss_description",
                                                     "loss_pair"], title="training loss", ylabel="loss")
        if any("eval_srcc" in r for r in self.tracker.rows()):
            self.tracker.plot("eval_curve.png", "step", ["eval_srcc", "eval_plcc"], title="validation",
                              ylabel="correlation")

    def on_evaluate(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self._plot()

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self._plot()

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self._plot()


def _warm_up_vision(scorer, records, root: str, config: ScorerTrainingConfig) -> None:
    """Score regression on the vision tower first (from-scratch models); kept in ``output_dir/vision_warmup/``."""
    from artquant_core.training.vision_warmup import (load_vision_weights, save_vision_weights, vision_warmup,
                                                       warmup_targets)

    folder = Path(config.output_dir) / "vision_warmup"
    wanted = {"steps": config.vision_warmup_steps, "learning_rate": config.vision_warmup_learning_rate,
              "batch_size": config.vision_warmup_batch_size, "seed": config.seed}
    if (folder / "vision_warmup.json").is_file():
        done = json.loads((folder / "vision_warmup.json").read_text())
        found = {k: done.get(k) for k in wanted}
        if found != wanted:
            raise ValueError(f"{folder} holds a vision warm-up with other settings "
                             f"({found} vs {wanted}); remove it or use another output_dir")
        load_vision_weights(scorer, folder)  # a run killed before its first checkpoint: keep the warm-up
        return
    paths, names, targets = warmup_targets(records, root)
    history = vision_warmup(scorer, paths, targets, config.vision_warmup_steps,
                            learning_rate=config.vision_warmup_learning_rate,
                            batch_size=config.vision_warmup_batch_size, seed=config.seed,
                            progress=not config.disable_tqdm)
    if config.process_index == 0:
        save_vision_weights(scorer, folder, {**wanted, "targets": names, "n_images": len(paths),
                                             "history": history})


def _eval_items(config: ScorerTrainingConfig) -> list[tuple[str, float]]:
    from artquant_core.records import load_records

    records = load_records(config.eval_data, image_root=config.image_root, check_images=not config.skip_bad_images)
    items = [(rec.image, float(rec.gt_score)) for rec in records
             if rec.task_type != "description" and rec.gt_score is not None and Path(rec.image).is_file()]
    if not items:
        raise ValueError(f"eval_data {config.eval_data}: no score records to validate on")
    return items[: config.max_eval_samples] if config.max_eval_samples else items


def train_scorer(config: ScorerTrainingConfig, resume_from_checkpoint: bool | str | None = None,
                 callbacks: list | None = None) -> dict[str, Any]:
    """Train an ArtQuant scorer; returns the final metrics.

    ``resume_from_checkpoint=True`` continues from the latest complete
    checkpoint in ``config.output_dir`` (a path picks one). The output folder
    gets ``metrics.jsonl``, ``loss_curve.png``, ``scatter.png`` (with
    ``eval_data``), ``checkpoint-N/`` folders and the final scorer, loadable by
    ``ArtQuantScorer.from_pretrained(config.output_dir)``. Extra ``callbacks``
    (``transformers.TrainerCallback``) are passed to the Trainer.
    """
    from artquant_core.records import load_records
    from artquant_core.scatter import plot_score_scatter
    from artquant_core.tracking import RunTracker
    from artquant_core.training.data import ExampleDataset, ScorerCollator, build_examples
    from artquant_core.training.trainer import ScorerTrainer

    if not config.train_data:
        raise ValueError("train_data is required (a records JSON/JSONL file)")
    resume = resolve_resume(config, resume_from_checkpoint)
    output_dir = Path(config.output_dir)
    scorer = load_scorer_for_training(config)
    records = load_records(config.train_data, image_root=config.image_root, check_images=not config.skip_bad_images,
                           scale=scorer.scale)
    if config.max_train_samples:
        records = records[: config.max_train_samples]
    root = config.image_root or str(Path(config.train_data).parent)
    examples = build_examples(records, config.task_list, scorer.scale, root, source=str(config.train_data),
                              seed=config.seed, attributes_per_record=config.attributes_per_record,
                              description_fraction=config.description_fraction)
    train_set = ExampleDataset(examples, skip_bad_images=config.skip_bad_images)
    if config.vision_warmup_steps > 0 and resume is None:
        _warm_up_vision(scorer, records, root, config)
    eval_items = _eval_items(config) if config.eval_data else []
    if not eval_items and config.eval_strategy != "no":
        raise ValueError(f"eval_strategy={config.eval_strategy.value!r} needs eval_data")

    log_with = "wandb" if "wandb" in config.report_to else None
    config.report_to = [r for r in config.report_to if r != "wandb"]  # the RunTracker owns wandb
    tracker = RunTracker(output_dir, log_with=log_with, config=config.to_dict(),
                         resume_step=_checkpoint_step(resume) if resume else None,
                         run_name=config.run_name, is_main_process=config.process_index == 0)
    trainer = ScorerTrainer(model=scorer.model, args=config, train_dataset=train_set,
                            eval_dataset=eval_items or None, data_collator=ScorerCollator(scorer),
                            processing_class=scorer.tokenizer, callbacks=[TrackerCallback(tracker), *(callbacks or [])],
                            scorer=scorer, eval_items=eval_items)
    _log_dicts_to_library_log(trainer)
    try:
        result = trainer.train(resume_from_checkpoint=resume)
    except (ValueError, OSError):
        # bad data met mid-run: keep what was learnt so far, then report the culprit
        if trainer.state.global_step > 0 and config.save_strategy != "no":
            trainer._save_checkpoint(trainer.model, None)
        tracker.close()
        raise
    metrics: dict[str, Any] = {"train_loss": float(result.training_loss), "global_step": int(result.global_step),
                               "n_train_examples": len(train_set), "n_skipped_images": train_set.n_skipped}
    if eval_items:
        metrics.update(trainer.evaluate())
        if trainer.is_world_process_zero():
            preds, gts = trainer.last_predictions
            plot_score_scatter(preds, gts, output_dir / "scatter.png", title="validation")
            (output_dir / "eval_predictions.json").write_text(json.dumps({"pred": preds, "gt": gts}))
    if trainer.is_world_process_zero():
        scorer.save_pretrained(output_dir, merge_lora=config.merge_lora_on_save)
        tracker.log({f"final_{k}": v for k, v in metrics.items()}, step=trainer.state.global_step)
        (output_dir / "final_metrics.json").write_text(json.dumps(metrics, indent=2))
    trainer.accelerator.wait_for_everyone()
    tracker.close()
    if train_set.n_skipped:
        warnings.warn(f"{train_set.n_skipped} training images were unreadable and skipped")
    return metrics
