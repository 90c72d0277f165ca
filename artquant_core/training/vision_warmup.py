"""Vision warm-up: teach a from-scratch vision tower to see before the language model asks it to.

A vision tower trained from random init only through the language model's
level-token loss does not learn on CPU-scale budgets: the gradient reaching it
is the language model's noise, and the level distribution collapses to the
same answer for every image (what the first pre-training of the tiny scorer
showed: validation SRCC 0.0–0.05 after 400 steps). Regressing the records'
score and attribute scores directly from the projected visual tokens — the
exact features the language model reads — through a temporary linear head
trains the same tower to SRCC 0.8 in a few CPU minutes. The head is thrown
away; the tower and projector keep what they learnt, and the joint
description + score training then only has to route those features to the
level words.

Used by ``train_scorer`` when ``vision_warmup_steps > 0`` (skipped on resume:
the checkpoint already holds the warmed-up tower). The warmed-up vision weights
are saved atomically to ``output_dir/vision_warmup/`` so that a run killed
before its first checkpoint does not redo the warm-up.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from artquant_core.images import load_image, pil_to_uint8_tensor

VISION_MODULES = ("visual", "vision_tower", "multi_modal_projector")
PROJECTOR_MODULES = ("merger", "multi_modal_projector")  # Qwen-VL's merger sits inside `visual`


def is_vision_parameter(name: str, projector: bool = True) -> bool:
    """Whether parameter ``name`` belongs to the vision tower (and, with ``projector``, to the projector)."""
    path = f".{name}."
    if not any(f".{m}." in path for m in VISION_MODULES):
        return False
    return projector or not any(f".{m}." in path for m in PROJECTOR_MODULES)


def warmup_targets(records: Sequence[Any], image_root: str | Path) -> tuple[list[str], list[str], torch.Tensor]:
    """Image paths, target names and a ``(N, K)`` target matrix (NaN where a record lacks that score).

    Targets: the record's ``gt_score`` ("overall") and every attribute score found in
    any record (ArtiMuse-style ``attributes``). Description records are left out.
    """
    root = Path(image_root)
    rows = [r for r in records if getattr(r, "task_type", None) != "description"
            and getattr(r, "gt_score", None) is not None]
    if not rows:
        raise ValueError("vision warm-up needs score records (gt_score); the training data has none")
    names = ["overall"] + sorted({a for r in rows for a in (getattr(r, "attributes", None) or {}) if a != "overall"})
    targets = torch.full((len(rows), len(names)), float("nan"))
    for i, rec in enumerate(rows):
        targets[i, 0] = float(rec.gt_score)
        for k, name in enumerate(names[1:], start=1):
            value = (getattr(rec, "attributes", None) or {}).get(name)
            if value is not None:
                targets[i, k] = float(value)
    paths = [str(p if Path(p).is_absolute() else root / p) for p in (str(r.image) for r in rows)]
    return paths, names, targets


def _base_model(model: nn.Module) -> nn.Module:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _vision_parameters(model: nn.Module) -> list[nn.Parameter]:
    params = [p for n, p in model.named_parameters() if is_vision_parameter(n)]
    if not params:
        raise ValueError("vision warm-up: the model has no vision tower / projector parameters "
                         f"(looked for modules named {', '.join(VISION_MODULES)})")
    return params


def image_token_features(scorer, images: torch.Tensor) -> torch.Tensor:
    """``(B, T, D)`` projected visual tokens of a uint8 image batch: what the language model reads.

    Every image of the batch must give the same number of tokens ``T`` (the
    warm-up head is a linear map over all of them, so it sees where each token is).
    """
    from artquant_core.vlm_preprocess import prepare_images

    items, quantize = prepare_images(images)
    pixel_inputs, n_tokens = scorer.pixel_inputs(items, quantize=quantize)
    if len(set(n_tokens)) != 1:
        raise ValueError(f"vision warm-up needs images that give equal visual token counts; got {sorted(set(n_tokens))}"
                         " (resize the training images to one size)")
    features = _base_model(scorer.model).get_image_features(**pixel_inputs).pooler_output
    return torch.stack(list(features)) if isinstance(features, (list, tuple)) else features.view(len(items), n_tokens[0], -1)


def _load_batch(paths: list[str]) -> torch.Tensor:
    images = [pil_to_uint8_tensor(load_image(p)) for p in paths]
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) != 1:
        raise ValueError(f"vision warm-up needs images of one size; this batch has {sorted(shapes)} "
                         f"(e.g. {paths[0]})")
    return torch.stack(images)


def vision_warmup(scorer, paths: list[str], targets: torch.Tensor, steps: int, learning_rate: float = 1e-3,
                  batch_size: int = 64, seed: int = 0, weight_decay: float = 0.01,
                  progress: bool = True) -> list[dict[str, float]]:
    """Train the scorer's vision tower + projector for ``steps`` on score regression; returns the loss history.

    ``targets (N, K)`` are standardised per column; NaN entries are masked out
    of the squared error. AdamW, linear warm-up over the first 5 % of steps,
    cosine decay, gradient clipping at 1. The global RNG is left untouched.
    """
    from tqdm.auto import tqdm

    if steps <= 0:
        return []
    if len(paths) != len(targets):
        raise ValueError(f"vision warm-up: {len(paths)} images for {len(targets)} target rows")
    params = _vision_parameters(scorer.model)
    was_trainable = [p.requires_grad for p in params]
    mean = torch.nanmean(targets, 0)
    std = torch.nanmean((targets - mean) ** 2, 0).sqrt().nan_to_num(1.0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    norm_targets = (targets - mean) / std
    rng = random.Random(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        probe = image_token_features(scorer, _load_batch(paths[:1])).detach()
        head = nn.Linear(probe[0].numel(), targets.shape[1]).to(device=probe.device, dtype=probe.dtype)
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW([*params, *head.parameters()], lr=learning_rate, weight_decay=weight_decay)
    warm = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda k: min(1.0, (k + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(k, steps) / steps)))
    history: list[dict[str, float]] = []
    scorer.model.train()
    bar = tqdm(range(steps), desc="vision warm-up", disable=not progress)
    try:
        for step in bar:
            index = [rng.randrange(len(paths)) for _ in range(batch_size)]
            features = image_token_features(scorer, _load_batch([paths[i] for i in index]))
            goal = norm_targets[index].to(features.device, features.dtype)
            seen = ~torch.isnan(goal)
            error = (head(features.flatten(1)) - goal.nan_to_num(0.0)) ** 2
            loss = (error * seen).sum() / seen.sum().clamp_min(1)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"vision warm-up: non-finite loss at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([*params, *head.parameters()], 1.0)
            optimizer.step()
            schedule.step()
            history.append({"step": step + 1, "loss": loss.item()})
            bar.set_postfix(loss=f"{history[-1]['loss']:.3f}")
    finally:
        for p, flag in zip(params, was_trainable):
            p.requires_grad_(flag)
        optimizer.zero_grad(set_to_none=True)
    return history


def save_vision_weights(scorer, folder: str | Path, info: dict[str, Any]) -> Path:
    """Write the vision tower + projector tensors (``vision.safetensors``) and ``info`` atomically."""
    import json

    from safetensors.torch import save_file

    from artquant_core.checkpoint import atomic_directory

    model = _base_model(scorer.model)
    names = {id(p) for p in _vision_parameters(model)}
    tensors = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if id(p) in names}
    with atomic_directory(folder) as tmp:
        save_file(tensors, str(tmp / "vision.safetensors"))
        (tmp / "vision_warmup.json").write_text(json.dumps(info) + "\n")
    return Path(folder)


def load_vision_weights(scorer, folder: str | Path) -> int:
    """Copy the tensors of ``save_vision_weights`` back into the scorer; returns how many were loaded."""
    from safetensors.torch import load_file

    model = _base_model(scorer.model)
    params = dict(model.named_parameters())
    tensors = load_file(str(Path(folder) / "vision.safetensors"))
    wrong = [n for n, t in tensors.items() if n not in params or params[n].shape != t.shape]
    if wrong:
        raise ValueError(f"{folder}/vision.safetensors does not fit this model (e.g. {wrong[0]!r}); "
                         "it was written for another architecture")
    with torch.no_grad():
        for name, tensor in tensors.items():
            params[name].copy_(tensor.to(params[name].device, params[name].dtype))
    return len(tensors)
