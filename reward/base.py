"""The reward protocol every alignment trainer relies on, and the shared call machinery.

A reward is any callable ``reward(images, prompts=None) -> Tensor (B,)`` with a
``name`` and a ``differentiable`` flag. :class:`BaseReward` implements the parts
every concrete reward needs once — input validation, prompt checks, the empty
batch, mixed image sizes, the differentiability guard and the NaN/inf check —
so a subclass only writes :meth:`BaseReward.compute` on a clean float batch.

Validation makes an :class:`~artquant_core.images.ImageBatch`; a ``BaseReward``
called with one (as :class:`~reward.composite.CompositeReward` calls its
components) takes it as it is, so a batch is checked once per composite call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol, Sequence, runtime_checkable

import torch

from artquant_core.images import ImageBatch, image_batch


@runtime_checkable
class Reward(Protocol):
    """What alignment code knows about a reward: a name, a flag, and a call returning ``(B,)``."""

    name: str
    differentiable: bool

    def __call__(self, images: Any, prompts: Sequence[str] | None = None) -> torch.Tensor: ...


def check_prompts(prompts: Sequence[str] | None, batch_size: int, who: str) -> list[str] | None:
    """``None`` or one string per image; anything else is a ``ValueError`` naming ``who``."""
    if prompts is None:
        return None
    if isinstance(prompts, str):
        raise ValueError(f"{who}: prompts must be a list of strings (one per image), got a single string")
    prompts = list(prompts)
    if len(prompts) != batch_size:
        raise ValueError(f"{who}: prompts has {len(prompts)} entries but the image batch has {batch_size}")
    for index, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise ValueError(f"{who}: prompts[{index}] must be a string, got {type(prompt).__name__}")
    return prompts


def output_dtype(images: torch.Tensor | ImageBatch) -> torch.dtype:
    """Rewards are float32; float64 inputs keep float64 so that gradient checks stay exact."""
    return torch.float64 if images.dtype == torch.float64 else torch.float32


def check_finite(values: torch.Tensor, who: str) -> torch.Tensor:
    """Raise ``FloatingPointError`` naming ``who`` and the first batch index with NaN/inf."""
    finite = torch.isfinite(values.detach())
    if not bool(finite.all()):
        index = int((~finite).nonzero()[0, 0]) if finite.ndim else 0
        bad = float(values.detach().reshape(-1)[index]) if values.numel() else float("nan")
        raise FloatingPointError(f"reward {who!r} produced a non-finite value ({bad}) at batch index {index}")
    return values


class BaseReward(ABC):
    """Common call path; subclasses set ``name``/``differentiable`` and implement :meth:`compute`."""

    name: str = "reward"
    differentiable: bool = True
    # CompositeReward hands a component with this flag the validated ImageBatch, not the raw images.
    accepts_image_batch: bool = True

    @abstractmethod
    def compute(self, images: torch.Tensor, prompts: list[str] | None) -> torch.Tensor:
        """Values ``(B,)`` for a validated float batch in ``[0, 1]`` with ``B >= 1``."""

    def compute_batch(self, batch: ImageBatch, prompts: list[str] | None) -> torch.Tensor:
        """Values ``(B,)`` for a validated batch of one image size, ``B >= 1``.

        By default :meth:`compute` on its float pixels; a reward that needs more than the
        pixels (``ArtQuantReward``: whether they came as 8-bit) overrides this instead.
        """
        return self.compute(batch.pixels, prompts)

    def __call__(self, images: Any, prompts: Sequence[str] | None = None) -> torch.Tensor:
        batch = image_batch(images, name="images")  # an ImageBatch passes through unchecked
        prompts = check_prompts(prompts, len(batch), self.name)
        if len(batch) == 0:
            return torch.zeros(0, dtype=torch.float32, device=batch.device)
        wants_grad = batch.requires_grad and torch.is_grad_enabled()
        if wants_grad and not self.differentiable:
            raise ValueError(f"reward {self.name!r} is not differentiable but the images require grad; "
                             "pass images.detach() (e.g. for DDPO) or use a differentiable reward")
        if batch.same_size:
            values = self._values(batch, prompts)
        else:
            # Images of different sizes cannot share a batch: score them one at a time.
            values = torch.cat([self._values(batch[i:i + 1], None if prompts is None else prompts[i:i + 1])
                                for i in range(len(batch))])
        return check_finite(values, self.name)

    def _values(self, batch: ImageBatch, prompts: list[str] | None) -> torch.Tensor:
        values = self.compute_batch(batch, prompts)
        if values.shape != (len(batch),):
            raise RuntimeError(f"reward {self.name!r} returned shape {tuple(values.shape)}, "
                               f"expected ({len(batch)},)")
        return values.to(device=batch.device, dtype=output_dtype(batch))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, differentiable={self.differentiable})"
