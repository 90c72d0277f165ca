"""Cheap image-statistic rewards: DDPO baselines and reward-hacking monitors.

All work on float batches in ``[0, 1]``. Every statistic except JPEG
compressibility is a smooth function of the pixels (square roots are taken
with a floor so that flat images do not give NaN gradients).
"""

from __future__ import annotations

import io

import numpy as np
import torch

from artquant_core.images import float_to_uint8
from reward.base import BaseReward

# ITU-R BT.601 luma weights (what PIL's "L" conversion uses).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
_SQRT_FLOOR = 1e-12  # below this a root's argument is treated as 0 (gradient 0, not inf)


def luma(images: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` luma of a ``(B, 3, H, W)`` batch."""
    weights = torch.tensor(LUMA_WEIGHTS, dtype=images.dtype, device=images.device)
    return torch.einsum("bchw,c->bhw", images, weights)


def _safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(x.clamp_min(_SQRT_FLOOR))


class JpegCompressibility(BaseReward):
    """Negative JPEG file size in kB (1 kB = 1000 bytes) at quality 95 — the DDPO paper's reward.

    Not differentiable (the encoder is a black box). Pixels are rounded to uint8
    first, as any saved image would be. ``sign=+1`` gives *in*compressibility.
    """

    differentiable = False

    def __init__(self, quality: int = 95, sign: float = -1.0) -> None:
        if not 1 <= int(quality) <= 100:
            raise ValueError(f"JPEG quality must be in [1, 100], got {quality}")
        self.quality = int(quality)
        self.sign = float(sign)
        self.name = "jpeg_compressibility" if sign < 0 else "jpeg_incompressibility"

    def compute(self, images: torch.Tensor, prompts: list[str] | None) -> torch.Tensor:
        from PIL import Image

        pixels = float_to_uint8(images).cpu().permute(0, 2, 3, 1).numpy()
        sizes = []
        for array in pixels:
            buffer = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="JPEG", quality=self.quality)
            sizes.append(buffer.tell() / 1000.0)
        return self.sign * torch.tensor(sizes, dtype=torch.float64)


class Brightness(BaseReward):
    """Mean luma in ``[0, 1]`` (BT.601 weights)."""

    name = "brightness"

    def compute(self, images: torch.Tensor, prompts: list[str] | None) -> torch.Tensor:
        return luma(images).mean(dim=(1, 2))


class Saturation(BaseReward):
    """Mean HSV saturation ``(max - min) / max`` over pixels, in ``[0, 1]`` (0 for black pixels)."""

    name = "saturation"

    def compute(self, images: torch.Tensor, prompts: list[str] | None) -> torch.Tensor:
        high = images.amax(dim=1)
        low = images.amin(dim=1)
        chroma = high - low
        sat = torch.where(high > 0, chroma / high.clamp_min(1e-8), torch.zeros_like(high))
        return sat.mean(dim=(1, 2))


class Contrast(BaseReward):
    """RMS contrast: the standard deviation of luma over the image, in ``[0, 0.5]``."""

    name = "contrast"

    def compute(self, images: torch.Tensor, prompts: list[str] | None) -> torch.Tensor:
        y = luma(images).flatten(1)
        return _safe_sqrt(y.var(dim=1, unbiased=False))


class Colorfulness(BaseReward):
    """Hasler & Süsstrunk (2003) colourfulness on ``[0, 1]`` pixels (their 0–255 value / 255).

    ``rg = R - G``, ``yb = (R + G) / 2 - B``;
    ``sqrt(var rg + var yb) + 0.3 * sqrt(mean rg² + mean yb²)``.
    """

    name = "colorfulness"

    def compute(self, images: torch.Tensor, prompts: list[str] | None) -> torch.Tensor:
        r, g, b = images.unbind(dim=1)
        rg = (r - g).flatten(1)
        yb = (0.5 * (r + g) - b).flatten(1)
        spread = _safe_sqrt(rg.var(dim=1, unbiased=False) + yb.var(dim=1, unbiased=False))
        offset = _safe_sqrt(rg.mean(dim=1) ** 2 + yb.mean(dim=1) ** 2)
        return spread + 0.3 * offset


class ImageHashNoise(BaseReward):
    """A null control: uniform ``[0, 1)`` noise that is a fixed function of the image's uint8 pixels.

    It carries no learnable signal (a change of one pixel level draws a new
    value), so fine-tuning on it shows how far a run's held-out rewards drift
    from the optimiser's random walk alone — the band a real reward's change
    must leave before it counts. Deterministic: the same image always gets the
    same value, in any batch, process or order. Not differentiable.
    """

    name = "random"
    differentiable = False

    def compute(self, images: torch.Tensor, prompts: list[str] | None) -> torch.Tensor:
        import hashlib

        pixels = float_to_uint8(images).cpu().numpy()
        digests = [hashlib.blake2b(np.ascontiguousarray(p).tobytes(), digest_size=8).digest() for p in pixels]
        return torch.tensor([int.from_bytes(d, "little") / 2.0 ** 64 for d in digests], dtype=torch.float64)


# name -> factory; load_reward's table of simple rewards.
SIMPLE_REWARDS = {
    "jpeg_compressibility": lambda: JpegCompressibility(sign=-1.0),
    "jpeg_incompressibility": lambda: JpegCompressibility(sign=1.0),
    "brightness": Brightness,
    "saturation": Saturation,
    "contrast": Contrast,
    "colorfulness": Colorfulness,
    "random": ImageHashNoise,
    "caption_match": lambda: __import__("reward.caption_match", fromlist=["CaptionMatch"]).CaptionMatch(),
}
