"""The ArtQuant scorer as a batched, optionally differentiable reward.

Two paths behind one call:

- **no-grad** (the images do not require grad, or grad mode is off — DDPO,
  reranking, evaluation): ``torch.inference_mode``, the model in eval mode, the
  batch cut into chunks of ``max_batch``, optional bf16 autocast and
  ``torch.compile`` (meant for GPUs);
- **gradient** (the images require grad — DRaFT / AlignProp): the whole batch in
  one differentiable call, full precision, so ``d reward / d pixels`` is exact.

8-bit inputs (uint8 tensors, PIL images) reach the scorer as an ``ImageBatch``
flagged ``from_uint8``, so its preprocessing emulates PIL's uint8 rounding and
the reward equals ``artquant score`` on the same files — alone or inside a
``CompositeReward``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch

from artquant_core.images import ImageBatch
from reward.base import BaseReward, output_dtype

_DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
           "float16": torch.float16, "fp32": None, "float32": None, "no": None, None: None}


def _resolve_dtype(dtype: Any) -> torch.dtype | None:
    if isinstance(dtype, torch.dtype):
        return None if dtype == torch.float32 else dtype
    if dtype not in _DTYPES:
        raise ValueError(f"unknown autocast dtype {dtype!r}; use one of bf16, fp16, fp32 or a torch.dtype")
    return _DTYPES[dtype]


class ArtQuantReward(BaseReward):
    """Reward = the scorer's expected level score for ``aspect`` (``None`` = overall quality).

    Args:
        scorer_or_path: an ``ArtQuantScorer`` (or any module with ``.score(images, aspect)``
            taking an ``artquant_core.images.ImageBatch`` and returning an object with
            ``.score``, and a ``.scale`` with ``.anchors``), or a path / hub id for
            ``ArtQuantScorer.from_pretrained``.
        aspect: attribute prompt, e.g. ``"composition"``; ``None`` scores overall quality.
        normalize: map the score linearly from ``[min anchor, max anchor]`` to ``[0, 1]``.
        max_batch: chunk size of the no-grad path (bounds memory; the gradient path is one call).
        autocast_dtype: ``"bf16"``/``"fp16"``/``torch.bfloat16`` to autocast the no-grad path
            (ignored on CPU unless ``autocast_on_cpu``); the gradient path never autocasts.
        compile: wrap the no-grad scoring call in ``torch.compile`` (worth it on GPU only).
        freeze: put the scorer in eval mode with ``requires_grad_(False)`` so that the
            gradient path computes gradients for the images only.
        device: move the scorer there (default: leave it where it is); images are moved to
            the scorer's device and the reward comes back on the images' device.
        name: the reward's base name (default ``"artquant"``; ``load_reward("judge")`` uses
            ``"judge"``); ``.name`` is that, or ``"<name>@<aspect>"`` with an aspect.
    """

    differentiable = True

    def __init__(self, scorer_or_path: Any, aspect: str | None = None, normalize: bool = True,
                 max_batch: int = 32, autocast_dtype: Any = None, compile: bool = False,
                 freeze: bool = True, device: str | torch.device | None = None,
                 autocast_on_cpu: bool = False, name: str = "artquant") -> None:
        if isinstance(scorer_or_path, (str, Path)):
            from artquant_core.scorer import ArtQuantScorer

            scorer_or_path = ArtQuantScorer.from_pretrained(str(scorer_or_path))
        if not hasattr(scorer_or_path, "score") or not hasattr(scorer_or_path, "scale"):
            raise ValueError(f"ArtQuantReward needs a scorer with .score() and .scale, got "
                             f"{type(scorer_or_path).__name__}")
        if int(max_batch) < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.scorer = scorer_or_path
        if device is not None:
            self.scorer.to(device)
        if freeze and isinstance(self.scorer, torch.nn.Module):
            self.scorer.eval().requires_grad_(False)
        self.aspect = aspect
        self.normalize = bool(normalize)
        self.max_batch = int(max_batch)
        self.autocast_dtype = _resolve_dtype(autocast_dtype)
        self.autocast_on_cpu = bool(autocast_on_cpu)
        self.name = name if aspect is None else f"{name}@{aspect}"
        anchors = [float(a) for a in self.scorer.scale.anchors]
        self.low, self.high = min(anchors), max(anchors)
        if not self.high > self.low:
            raise ValueError(f"scorer scale anchors {anchors} do not span a range")
        self._score_fn = self.scorer.score
        self._compiled_fn = torch.compile(self.scorer.score) if compile else None

    @property
    def device(self) -> torch.device:
        params = self.scorer.parameters() if isinstance(self.scorer, torch.nn.Module) else iter(())
        first = next(params, None)
        return first.device if first is not None else torch.device("cpu")

    def _map(self, scores: torch.Tensor) -> torch.Tensor:
        if not self.normalize:
            return scores
        return (scores - self.low) / (self.high - self.low)

    def _autocast(self, device: torch.device):
        if self.autocast_dtype is None or (device.type == "cpu" and not self.autocast_on_cpu):
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.autocast_dtype)

    def compute(self, images: torch.Tensor, prompts: list[str] | None) -> torch.Tensor:
        """Scores of float pixels (no uint8 rounding emulated); the call path uses :meth:`compute_batch`."""
        return self.compute_batch(ImageBatch(images), prompts)

    def compute_batch(self, batch: ImageBatch, prompts: list[str] | None) -> torch.Tensor:
        # The batch goes to the scorer as it is: validated once, its from_uint8 flag intact.
        device = self.device
        if batch.requires_grad and torch.is_grad_enabled():
            # Gradient path: one differentiable call in the images' own precision.
            scores = self._score_fn(batch.to(device), aspect=self.aspect).score
            return self._map(scores)
        score_fn = self._compiled_fn or self._score_fn
        chunks = []
        with torch.inference_mode(), self._autocast(device):
            for start in range(0, len(batch), self.max_batch):
                chunk = batch[start:start + self.max_batch].to(device, non_blocking=True)
                chunks.append(score_fn(chunk, aspect=self.aspect).score.to(output_dtype(batch)))
        return self._map(torch.cat(chunks))

    def __repr__(self) -> str:
        return (f"ArtQuantReward(scorer={type(self.scorer).__name__}, aspect={self.aspect!r}, "
                f"normalize={self.normalize}, max_batch={self.max_batch})")
