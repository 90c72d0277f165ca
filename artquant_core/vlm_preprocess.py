"""Torch-native twins of the Hugging Face image processors the scorer families use.

One function per family turns a list of ``(3, H, W)`` float images in ``[0, 1]``
into the model's pixel inputs. The PIL path converts PIL → uint8 tensor and calls
the *same* function, so there is one preprocessing, not two, and gradients flow
from the score back to the pixels of a tensor input. :func:`prepare_images` takes
an already validated :class:`~artquant_core.images.ImageBatch` (what the rewards
hand the scorer) as it is, and validates anything else once.

Fidelity (see tests/test_scorer_preprocess.py):
- float input, same resize: identical to the HF processor given the same float
  array (``do_rescale=False``), max abs diff 0.0 up to float rounding;
- uint8 / PIL input: HF resizes with PIL on uint8, rounding after each separable
  pass. ``quantize=True`` emulates that rounding with a straight-through
  gradient; the remaining gap is PIL's fixed-point arithmetic (documented
  tolerance: max 0.05, mean 1e-3 in normalised units).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from artquant_core.images import image_batch, pad_to_square, round_to_uint8_grid

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def bicubic_resize(x: torch.Tensor, height: int, width: int, quantize: bool) -> torch.Tensor:
    """Resize ``(N, C, H, W)`` like PIL's BICUBIC (antialiased, a = -0.5).

    With ``quantize`` the result is rounded to uint8 after each separable pass,
    like PIL on an 8-bit image; PIL runs the vertical pass first when the height
    shrinks while the width grows, the horizontal pass first otherwise.
    """
    in_h, in_w = x.shape[-2:]
    if (in_h, in_w) == (height, width):
        return x
    if not quantize:
        return F.interpolate(x, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
    passes = [(in_h, width), (height, width)]
    if height < in_h and width > in_w:
        passes = [(height, in_w), (height, width)]
    for size in passes:
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)
            x = round_to_uint8_grid(x)
    return x


class _Normalize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x)) / self.std.to(x)


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen2-VL's target size: multiples of ``factor``, area within [min, max], aspect kept."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"image aspect ratio must be below 200, got {height}x{width}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


class QwenVLImagePreprocessor(_Normalize):
    """Qwen2-VL / Qwen2.5-VL: smart resize, rescale, normalise, patchify with temporal duplication.

    Output: ``pixel_values (sum of patches, C*T*P*P)`` and ``image_grid_thw (B, 3)``
    exactly in the layout of ``Qwen2VLImageProcessor``.
    """

    def __init__(self, patch_size=14, merge_size=2, temporal_patch_size=2, min_pixels=56 * 56,
                 max_pixels=28 * 28 * 1280, image_mean=CLIP_MEAN, image_std=CLIP_STD):
        super().__init__(image_mean, image_std)
        self.patch_size, self.merge_size, self.temporal_patch_size = patch_size, merge_size, temporal_patch_size
        self.min_pixels, self.max_pixels = min_pixels, max_pixels

    @classmethod
    def from_hf(cls, processor) -> "QwenVLImagePreprocessor":
        size = processor.size or {}
        get = lambda d, k: d.get(k) if isinstance(d, dict) else getattr(d, k, None)  # noqa: E731
        return cls(processor.patch_size, processor.merge_size, processor.temporal_patch_size,
                   get(size, "shortest_edge") or getattr(processor, "min_pixels", 56 * 56),
                   get(size, "longest_edge") or getattr(processor, "max_pixels", 28 * 28 * 1280),
                   tuple(processor.image_mean), tuple(processor.image_std))

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        return smart_resize(height, width, self.patch_size * self.merge_size, self.min_pixels, self.max_pixels)

    def num_image_tokens(self, grid_thw: torch.Tensor) -> list[int]:
        return [int(t * h * w) // self.merge_size**2 for t, h, w in grid_thw.tolist()]

    def _patchify(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        p, m, t = self.patch_size, self.merge_size, self.temporal_patch_size
        gh, gw = h // p, w // p
        x = x.reshape(b, c, gh // m, m, p, gw // m, m, p).permute(0, 2, 5, 3, 6, 1, 4, 7)
        x = x.unsqueeze(6).expand(*x.shape[:6], t, p, p)
        return x.reshape(b * gh * gw, c * t * p * p)

    def forward(self, images: list[torch.Tensor], quantize: bool = False) -> dict[str, torch.Tensor]:
        pixel_values, grids = [], []
        for group in _same_size_groups(images):
            x = torch.stack([images[i] for i in group])
            h, w = self.target_size(*x.shape[-2:])
            x = self.normalize(bicubic_resize(x, h, w, quantize))
            pixel_values.append((group, self._patchify(x).split((h // self.patch_size) * (w // self.patch_size))))
            grids += [(i, (1, h // self.patch_size, w // self.patch_size)) for i in group]
        ordered = dict(pv for group, chunks in pixel_values for pv in zip(group, chunks))
        grid = dict(grids)
        return {"pixel_values": torch.cat([ordered[i] for i in range(len(images))]),
                "image_grid_thw": torch.tensor([grid[i] for i in range(len(images))], dtype=torch.long)}


class ClipImagePreprocessor(_Normalize):
    """CLIP / LLaVA-1.5: [pad to square], resize shortest edge, centre crop, rescale, normalise → ``(B, 3, h, w)``.

    ``pad_to_square``: first centre each image on a square of the mean colour
    (``int(255 * image_mean)``), as LLaVA-1.5's reference code does (``image_aspect_ratio:
    pad``; the HF ``LlavaImageProcessor`` with ``do_pad=True``), so the crop that follows cuts
    nothing; off, a non-square image loses its ends to the crop (plain CLIP).
    """

    def __init__(self, shortest_edge=336, crop_size=(336, 336), image_mean=CLIP_MEAN, image_std=CLIP_STD,
                 pad_to_square: bool = False):
        super().__init__(image_mean, image_std)
        self.shortest_edge, self.crop_size = shortest_edge, tuple(crop_size)
        self.pad_to_square = bool(pad_to_square)
        self.pad_colour = tuple(int(m * 255) for m in image_mean)  # truncated, as LLaVA and HF do

    @classmethod
    def from_hf(cls, processor, pad_to_square: bool | None = None) -> "ClipImagePreprocessor":
        """Settings of a HF CLIP / LLaVA image processor; ``pad_to_square=None`` takes its ``do_pad``."""
        size, crop = processor.size, processor.crop_size
        get = lambda d, k: d.get(k) if isinstance(d, dict) else getattr(d, k, None)  # noqa: E731
        if not get(size, "shortest_edge") or not getattr(processor, "do_center_crop", True):
            raise ValueError(f"unsupported CLIP image processor settings: size={size}, crop_size={crop}")
        if pad_to_square is None:
            pad_to_square = bool(getattr(processor, "do_pad", False))
        return cls(get(size, "shortest_edge"), (get(crop, "height"), get(crop, "width")),
                   tuple(processor.image_mean), tuple(processor.image_std), pad_to_square=pad_to_square)

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        short, long = min(height, width), max(height, width)
        new_short, new_long = self.shortest_edge, int(self.shortest_edge * long / short)
        return (new_short, new_long) if height <= width else (new_long, new_short)

    def _center_crop(self, x: torch.Tensor) -> torch.Tensor:
        ch, cw = self.crop_size
        h, w = x.shape[-2:]
        if ch > h or cw > w:  # HF pads small images with zeros, centred
            top, left = (ch - h) // 2, (cw - w) // 2
            x = F.pad(x, (max(left, 0), max(cw - w - left, 0), max(top, 0), max(ch - h - top, 0)))
            h, w = x.shape[-2:]
        top, left = (h - ch) // 2, (w - cw) // 2
        return x[..., top:top + ch, left:left + cw]

    def forward(self, images: list[torch.Tensor], quantize: bool = False) -> dict[str, torch.Tensor]:
        out: list[torch.Tensor | None] = [None] * len(images)
        for group in _same_size_groups(images):
            x = torch.stack([images[i] for i in group])
            if self.pad_to_square:
                # The canvas colour is on the uint8 grid, so padding before the quantised resize
                # equals padding the 8-bit image, as the reference does.
                x = pad_to_square(x, self.pad_colour)
            x = self._center_crop(bicubic_resize(x, *self.target_size(*x.shape[-2:]), quantize))
            for i, row in zip(group, self.normalize(x)):
                out[i] = row
        return {"pixel_values": torch.stack(out)}


def _same_size_groups(images: list[torch.Tensor]) -> list[list[int]]:
    """Indices grouped by image size, so same-size images are resized as one batch."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, img in enumerate(images):
        groups.setdefault(tuple(img.shape[-2:]), []).append(i)
    return list(groups.values())


def _compute_dtype(x: torch.Tensor) -> torch.Tensor:
    """float32, except that float64 stays float64 (finite-difference gradient checks need it)."""
    return x if x.dtype == torch.float64 else x.float()


def prepare_images(images: Any, name: str = "images") -> tuple[list[torch.Tensor], bool]:
    """``(3, H, W)`` float images in [0, 1] for the family preprocessors, and whether they came as 8-bit.

    An :class:`~artquant_core.images.ImageBatch` (already validated, e.g. by a reward)
    is taken as it is. Anything else is validated once by
    :func:`~artquant_core.images.image_batch`: a ``(B, 3, H, W)`` tensor (float in [0, 1]
    or uint8), a non-empty list of PIL images / ``(3, H, W)`` tensors whose sizes may
    differ (Qwen-VL keeps each image's aspect), or one PIL image. 8-bit sources (PIL
    included) are resized with uint8 rounding like the HF processor; float tensors keep
    full precision and their autograd graph. Bad values (NaN, outside [0, 1], wrong shape)
    raise ``ValueError`` naming the image.
    """
    from PIL import Image

    if isinstance(images, Image.Image):
        images = [images]
    if isinstance(images, (list, tuple)) and not images:
        raise ValueError(f"{name} is an empty list; pass at least one image")
    batch = image_batch(images, name)
    return [_compute_dtype(item) for item in batch.items()], batch.from_uint8
