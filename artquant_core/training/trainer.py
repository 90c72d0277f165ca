"""``ScorerTrainer``: ``transformers.Trainer`` with the ArtQuant losses, SRCC validation and atomic checkpoints."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer

from artquant_core.checkpoint import fsync_tree, prune_checkpoints
from artquant_core.training.data import TASK_IDS
from artquant_core.training.losses import (expected_score, level_kl_loss, level_log_probs,
                                           pair_fidelity_loss, token_cross_entropy)

STAGING_DIR = ".staging"
AUX_KEYS = ("loss_description", "loss_answer", "loss_kl", "loss_pair")


class ScorerTrainer(Trainer):
    """Trainer whose model is the scorer's HF model (possibly peft-wrapped).

    ``compute_loss`` mixes the tasks of a batch: description CE, score answer CE
    (level token excluded) + KL on the level token, and the optional in-batch
    Thurstone fidelity loss. ``evaluate`` scores the validation records through
    ``scorer.score`` (the inference path) and reports SRCC/PLCC/MSE/MAE.
    Checkpoints are staged in ``output_dir/.staging`` and renamed into place.
    """

    def __init__(self, *args, scorer, eval_items: list[tuple[str, float]] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.scorer = scorer
        self.eval_items = eval_items or []
        self.model_accepts_loss_kwargs = False  # our loss is a per-batch mean: let Trainer scale it for GA
        self._aux: dict[str, list[float]] = {k: [] for k in AUX_KEYS}
        self.last_predictions: tuple[list[float], list[float]] | None = None

    # ------------------------------------------------------------------ losses
    def compute_loss(self, model, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch=None):
        cfg = self.args
        task_ids = inputs.pop("task_ids")
        positions = inputs.pop("level_positions")
        level_ids = inputs.pop("level_ids")
        targets = inputs.pop("level_targets")
        gt, gt_std = inputs.pop("gt_scores"), inputs.pop("gt_std")
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs.logits
        desc_rows, score_rows = task_ids == TASK_IDS["description"], task_ids != TASK_IDS["description"]
        loss_desc = token_cross_entropy(logits, labels, desc_rows)
        loss_answer = token_cross_entropy(logits, labels, score_rows)
        rows = score_rows.nonzero().flatten()
        level_logits = logits[rows, positions[rows] - 1]  # the logits that predict the level token
        loss_kl = level_kl_loss(level_logits, targets[rows], level_ids[rows], cfg.level_softmax)
        loss = cfg.description_weight * loss_desc + cfg.score_weight * (loss_answer + cfg.kl_weight * loss_kl)
        loss_pair = None
        if "pair" in cfg.task_list and cfg.pair_weight > 0:
            overall = (task_ids == TASK_IDS["score"]).nonzero().flatten()  # pairs compare overall scores only
            pair_logits = logits[overall, positions[overall] - 1]
            probs = level_log_probs(pair_logits, level_ids[overall], "levels").exp()
            mu, sigma = expected_score(probs, self.scorer.anchors.to(probs.device))
            loss_pair = pair_fidelity_loss(mu, sigma, gt[overall], gt_std[overall], cfg.pair_sigma)
            loss = loss + cfg.pair_weight * loss_pair
        if model.training:
            for key, value in zip(AUX_KEYS, (loss_desc, loss_answer, loss_kl, loss_pair)):
                if value is not None:
                    self._aux[key].append(float(value.detach()))
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            for key, values in self._aux.items():
                if values:
                    logs[key] = round(sum(values) / len(values), 6)
                    values.clear()
        super().log(logs, start_time)

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def predict_scores(self, max_items: int | None = None) -> tuple[list[float], list[float]]:
        """Scores of the validation images through the inference read-out, and their ground truth."""
        from artquant_core.images import load_image, pil_to_uint8_tensor

        items = self.eval_items[:max_items] if max_items else self.eval_items
        was_training = self.scorer.training
        self.scorer.eval()
        preds: list[float] = []
        bs = max(1, self.args.eval_batch_size)
        for start in range(0, len(items), bs):
            chunk = items[start:start + bs]
            images = [pil_to_uint8_tensor(load_image(path)) for path, _ in chunk]
            batch = torch.stack(images) if len({im.shape for im in images}) == 1 else \
                [load_image(path) for path, _ in chunk]
            preds.extend(self.scorer.score(batch).score.float().cpu().tolist())
        self.scorer.train(was_training)
        return preds, [g for _, g in items]

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        from artquant_core.metrics import evaluate_scores

        if not self.eval_items:
            return {}
        preds, gts = self.predict_scores()
        self.last_predictions = (preds, gts)
        try:
            raw = evaluate_scores(preds, gts)
        except ValueError as exc:  # e.g. a collapsed model predicting one constant score
            warnings.warn(f"validation metrics undefined: {exc}")
            raw = {"srcc": 0.0, "plcc": 0.0}
        metrics = {f"{metric_key_prefix}_{k}": float(v) for k, v in raw.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    # ------------------------------------------------------------------ checkpoints
    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        """Checkpoints are scorer folders: HF weights (safetensors) + tokenizer + scorer metadata."""
        output_dir = output_dir or self.args.output_dir
        self.scorer.save_pretrained(output_dir)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        """Load full weights through ``from_pretrained``, strictly.

        transformers 5 saves some VLMs under their original key names; the stock
        resume loads the state dict non-strictly and would silently skip them.
        """
        model = model or self.model
        if hasattr(model, "peft_config") or self.is_fsdp_enabled or self.is_deepspeed_enabled:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        dtype = next(model.parameters()).dtype
        fresh = type(model).from_pretrained(resume_from_checkpoint, dtype=dtype)
        result = model.load_state_dict(fresh.state_dict(), strict=False)
        missing = [k for k in result.missing_keys if k not in (getattr(model, "_tied_weights_keys", None) or ())]
        if missing or result.unexpected_keys:
            raise ValueError(f"checkpoint {resume_from_checkpoint} does not match the model: missing "
                             f"{missing[:5]}, unexpected {result.unexpected_keys[:5]}")

    def _get_output_dir(self, trial) -> str:
        return getattr(self, "_staging_root", None) or super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        """Write checkpoint-N into a staging folder, then rename it into place in one step.

        A run killed mid-write leaves only ``.staging/``, which resume never looks at.
        """
        run_dir = Path(super()._get_output_dir(trial))
        name = f"checkpoint-{self.state.global_step}"
        staging_root = run_dir / STAGING_DIR
        if self.args.should_save:
            shutil.rmtree(staging_root / name, ignore_errors=True)
            staging_root.mkdir(parents=True, exist_ok=True)
        self.accelerator.wait_for_everyone()
        self._staging_root = str(staging_root)
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging_root = None
        self.accelerator.wait_for_everyone()  # every rank has written its RNG state
        if self.args.should_save:
            fsync_tree(staging_root / name)
            final = run_dir / name
            if final.exists():
                shutil.rmtree(final)
            os.replace(staging_root / name, final)
            prune_checkpoints(run_dir, self.args.save_total_limit)
            try:
                staging_root.rmdir()
            except OSError:
                pass
        self.accelerator.wait_for_everyone()
