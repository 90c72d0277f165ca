"""Image loading and image-batch validation shared by the scorer, the rewards and the trainers.

Entry points:

- :func:`load_image` reads a file into an RGB ``PIL.Image`` the same way every
  time (EXIF orientation applied, transparency composited on white, L / P /
  CMYK / 16-bit converted properly) and refuses truncated, corrupt or
  decompression-bomb files with an error naming the file — a silently black
  or half-grey training image is worse than a crash.
- :func:`image_batch` validates whatever a caller hands a reward or a scorer
  (a ``(B, 3, H, W)`` tensor, uint8 or float, or a list of PIL images and/or
  ``(3, H, W)`` tensors, sizes free) once, into an :class:`ImageBatch`: float
  pixels in ``[0, 1]`` (autograd intact) plus whether they came as 8-bit. The
  rewards and the scorer take an ``ImageBatch`` as it is, so a batch is
  validated once however many rewards score it.
- :func:`to_image_batch`: the same validation, returning one float
  ``(B, 3, H, W)`` tensor (optionally resized).
- The uint8 conversions, each written once: :func:`pil_to_uint8_tensor`,
  :func:`float_to_uint8`, :func:`round_to_uint8_grid`, :func:`to_pil_images`.
"""

from __future__ import annotations

import functools
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps

# Generous default: a 10k x 10k painting scan is fine, a 50k x 50k PNG bomb is not.
DEFAULT_MAX_PIXELS = 100_000_000

# Values this far outside [0, 1] are rounding noise from a previous op, not a bug.
RANGE_TOLERANCE = 1e-6

# CLIP's image_mean in 0..255, truncated as LLaVA and the HF LLaVA processor do: the padding colour.
CLIP_MEAN_RGB = (122, 116, 104)

_TRANSPARENT_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_WHITE = (255, 255, 255)
_truncated_flag_lock = threading.Lock()
# What PIL's decoders and EXIF parser raise on bad bytes (besides ValueError).
_DECODE_ERRORS = (OSError, SyntaxError, EOFError, KeyError, IndexError, TypeError, struct.error,
                  zlib.error, Image.DecompressionBombError)


def _has_transparency(img: Image.Image) -> bool:
    return img.mode in _TRANSPARENT_MODES or "transparency" in img.info


def _sixteen_bit_to_l(img: Image.Image) -> Image.Image:
    """16/32-bit integer or float grey -> 8-bit L, scaling the full range (never clipping at 255)."""
    array = np.asarray(img)
    if img.mode == "F":
        # Float grey: [0, 1] data is scaled up, anything larger is taken as [0, 255].
        array = np.nan_to_num(array.astype(np.float64), nan=0.0)
        scale = 255.0 if array.size and array.max() <= 1.0 else 1.0
        out = np.clip(np.rint(array * scale), 0, 255)
    else:
        # I;16* and I (what PNG/TIFF 16-bit grey decodes to): 0..65535 -> 0..255.
        array = np.clip(array.astype(np.float64), 0, 65535)
        out = np.rint(array / 257.0)
    return Image.fromarray(out.astype(np.uint8))


def to_rgb(img: Image.Image) -> Image.Image:
    """Return ``img`` as an 8-bit RGB image: EXIF orientation applied, transparency on white.

    Handles RGB, RGBA/LA/PA (alpha-composited on white), P and L (with or without a
    transparency entry), 1, CMYK, YCbCr and 16-bit grey (``I;16``, ``I``, ``F``: scaled
    to 8 bits over the full range rather than clipped).
    """
    img = ImageOps.exif_transpose(img)
    if img.mode == "RGB" and "transparency" not in img.info:
        return img
    if img.mode.startswith("I") or img.mode == "F":
        img = _sixteen_bit_to_l(img)
    if _has_transparency(img):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ValueError(f"cannot convert image mode {img.mode!r} to RGB: {exc}") from exc


def load_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Load ``path`` as an RGB ``PIL.Image`` (see :func:`to_rgb` for the conversions).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file
    for anything unreadable: truncated or corrupt data, unknown formats, or more than
    ``max_pixels`` pixels (checked from the header, before decoding; ``None`` disables
    the limit). Pixels are decoded eagerly (``.load()``), so errors surface here and not
    later in a data-loader worker.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as img:
            width, height = img.size
            if max_pixels is not None and width * height > max_pixels:
                raise ValueError(
                    f"image {path} has {width}x{height} = {width * height} pixels, more than the "
                    f"limit of {max_pixels} (possible decompression bomb; raise max_pixels to allow it)")
            _load_strict(img)
            return to_rgb(img)
    except ValueError as exc:
        if str(path) in str(exc):
            raise
        raise ValueError(f"cannot read image {path}: {exc}") from exc
    except _DECODE_ERRORS as exc:
        raise ValueError(f"cannot read image {path} (truncated or corrupt?): {exc}") from exc


def _load_strict(img: Image.Image) -> None:
    """``img.load()`` with PIL's LOAD_TRUNCATED_IMAGES forced off (someone may have set it)."""
    if not ImageFile.LOAD_TRUNCATED_IMAGES:
        img.load()
        return
    with _truncated_flag_lock:
        previous = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            img.load()
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = previous


def pil_to_uint8_tensor(img: Image.Image) -> torch.Tensor:
    """An image (any mode, converted by :func:`to_rgb`) as a ``(3, H, W)`` uint8 tensor."""
    array = np.asarray(to_rgb(img), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def float_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float pixels in ``[0, 1]`` (any shape) as uint8 ``0..255``: nearest level, clamped, detached.

    This is the rounding of every saved image. Half-precision input is scaled in float32
    (``255 * x`` in bf16 is off by whole levels); float64 stays float64.
    """
    values = images.detach()
    values = values.to(torch.promote_types(values.dtype, torch.float32))
    return (values * 255.0).round().clamp(0, 255).to(torch.uint8)


def round_to_uint8_grid(images: torch.Tensor) -> torch.Tensor:
    """Float pixels snapped to the nearest of the 256 uint8 levels (:func:`float_to_uint8` / 255).

    Same dtype and device as ``images``; the gradient passes straight through (as if
    nothing were rounded), so a preprocessing that emulates 8-bit resizing stays differentiable.
    """
    snapped = float_to_uint8(images).to(images.dtype) / 255.0
    return images + (snapped - images).detach()


def to_pil_images(images: Any) -> list[Image.Image]:
    """A batch as a list of PIL images (a list of PIL images is returned as it is).

    ``images``: a ``(B, 3, H, W)`` or ``(B, 1, H, W)`` tensor or array, uint8 or float in
    ``[0, 1]`` (rounded by :func:`float_to_uint8`), or an :class:`ImageBatch`.
    """
    if isinstance(images, (list, tuple)) and all(isinstance(item, Image.Image) for item in images):
        return list(images)
    if isinstance(images, (list, tuple)):  # (3, H, W) tensors, maybe mixed with PIL images
        images = image_batch(images)
    if isinstance(images, ImageBatch):
        return [to_pil_images(item[None])[0] for item in images.items()]
    pixels = images.detach().cpu() if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images))
    if pixels.ndim != 4 or pixels.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape (B, 3, H, W) or (B, 1, H, W), got {tuple(pixels.shape)}")
    if pixels.dtype != torch.uint8:
        pixels = float_to_uint8(pixels)
    return [Image.fromarray(np.ascontiguousarray(a.transpose(1, 2, 0)).squeeze()) for a in pixels.numpy()]


def pad_to_square(img: Image.Image | torch.Tensor,
                  fill: Sequence[int] = CLIP_MEAN_RGB) -> Image.Image | torch.Tensor:
    """Centre ``img`` on a square canvas of colour ``fill`` (0..255 per channel; default CLIP's mean).

    ``img``: an RGB PIL image, or float pixels ``(..., 3, H, W)`` in ``[0, 1]`` (the canvas
    is ``fill / 255``; differentiable with respect to the pixels). Both place the image
    alike, so padding a PIL image and converting it equals converting it and padding.
    This is how LLaVA keeps the aspect ratio before resizing to the model's square input
    (a centre crop would cut the composition that an aesthetic score is about).
    """
    is_pil = isinstance(img, Image.Image)
    width, height = img.size if is_pil else (img.shape[-1], img.shape[-2])
    if width == height:
        return img
    side = max(width, height)
    left, top = (side - width) // 2, (side - height) // 2
    if is_pil:
        canvas = Image.new("RGB", (side, side), tuple(int(c) for c in fill))
        canvas.paste(img, (left, top))
        return canvas
    colour = torch.tensor([int(c) for c in fill], dtype=img.dtype, device=img.device) / 255.0
    canvas = colour.view(3, 1, 1).expand(*img.shape[:-2], side, side).clone()
    canvas[..., top:top + height, left:left + width] = img
    return canvas


def _size_hw(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int):
        return (size, size)
    height, width = (int(s) for s in size)
    return (height, width)


def _check_float_batch(batch: torch.Tensor, name: str) -> torch.Tensor:
    values = batch.detach()
    if values.shape[0] == 0:
        return batch
    flat = values.reshape(values.shape[0], -1)
    finite = torch.isfinite(flat).all(dim=1)
    if not bool(finite.all()):
        index = int((~finite).nonzero()[0, 0])
        raise ValueError(f"{name}[{index}] contains NaN or inf values")
    low, high = flat.amin(dim=1), flat.amax(dim=1)
    bad = (low < -RANGE_TOLERANCE) | (high > 1 + RANGE_TOLERANCE)
    if bool(bad.any()):
        index = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"{name}[{index}] has values outside [0, 1] (min {float(low[index]):.6g}, max "
            f"{float(high[index]):.6g}); expected floats in [0, 1] or uint8 in [0, 255]")
    if bool((low < 0).any()) or bool((high > 1).any()):
        batch = batch.clamp(0.0, 1.0)  # out-of-place: keeps autograd, gradient 1 inside [0, 1]
    return batch


def _tensor_batch(images: torch.Tensor, name: str) -> torch.Tensor:
    if images.ndim != 4 or images.shape[1] != 3:
        hint = " (a single image? add a batch dimension with .unsqueeze(0))" if images.ndim == 3 else ""
        raise ValueError(f"{name} must have shape (B, 3, H, W), got {tuple(images.shape)}{hint}")
    if images.dtype == torch.uint8:
        return images.to(torch.float32) / 255.0
    if not images.is_floating_point():
        raise ValueError(f"{name} must be a float tensor in [0, 1] or uint8 in [0, 255], got dtype {images.dtype}")
    return _check_float_batch(images, name)


def _resize(batch: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize of ``(N, 3, H, W)`` pixels (differentiable), kept in ``[0, 1]``."""
    if tuple(batch.shape[-2:]) == size:
        return batch
    return torch.nn.functional.interpolate(batch, size=size, mode="bilinear", antialias=True,
                                           align_corners=False).clamp(0, 1)


def _item_to_tensor(item: Any, index: int, name: str, size: tuple[int, int] | None) -> torch.Tensor:
    if isinstance(item, Image.Image):
        rgb = to_rgb(item)
        if size is not None and rgb.size != (size[1], size[0]):
            rgb = rgb.resize((size[1], size[0]), Image.BICUBIC)
        return pil_to_uint8_tensor(rgb).to(torch.float32) / 255.0
    if isinstance(item, torch.Tensor):
        if item.ndim != 3 or item.shape[0] != 3:
            raise ValueError(f"{name}[{index}] must have shape (3, H, W), got {tuple(item.shape)}")
        try:
            tensor = _tensor_batch(item.unsqueeze(0), name)
        except ValueError as exc:  # the one-image batch says name[0]; report the real index
            raise ValueError(str(exc).replace(f"{name}[0]", f"{name}[{index}]", 1)) from exc
        return tensor[0] if size is None else _resize(tensor, size)[0]
    raise ValueError(f"{name}[{index}] must be a PIL image or a (3, H, W) tensor, got {type(item).__name__}")


def _validated_items(images: Any, name: str, size: tuple[int, int] | None) -> list[torch.Tensor]:
    """Each item of a list of PIL images / ``(3, H, W)`` tensors as float ``(3, H, W)`` in ``[0, 1]``."""
    if isinstance(images, Image.Image):
        raise ValueError(f"{name} must be a list of PIL images or a (B, 3, H, W) tensor, got a single "
                         "PIL image (wrap it in a list)")
    if not isinstance(images, (list, tuple)):
        raise ValueError(f"{name} must be a (B, 3, H, W) tensor or a list of PIL images, "
                         f"got {type(images).__name__}")
    tensors = []
    for index, item in enumerate(images):
        try:
            tensors.append(_item_to_tensor(item, index, name, size))
        except ValueError as exc:
            message = str(exc)
            if f"{name}[{index}]" not in message:
                message = f"{name}[{index}]: {message}"
            raise ValueError(message) from exc
    return tensors


def _is_8bit(item: Any) -> bool:
    return isinstance(item, Image.Image) or (isinstance(item, torch.Tensor) and item.dtype == torch.uint8)


@dataclass(frozen=True, eq=False)  # eq would compare pixel tensors elementwise
class ImageBatch:
    """A validated image batch: what the rewards and the scorer work on. Build it with :func:`image_batch`.

    ``pixels``: float ``(B, 3, H, W)`` in ``[0, 1]`` when every image has the same size,
    else a list of float ``(3, H, W)`` (one per image); a float input keeps its dtype,
    device and autograd graph. ``from_uint8``: every image came as 8-bit (uint8 tensor,
    PIL image), so the pixels lie on the uint8 grid and the scorer resizes them with
    PIL's uint8 rounding, as the Hugging Face processor does with the files. A validated
    batch travels as it is, so that fact is never lost on the way and nothing is checked twice.
    """

    pixels: torch.Tensor | list[torch.Tensor]
    from_uint8: bool = False

    @classmethod
    def from_items(cls, items: Sequence[torch.Tensor], from_uint8: bool = False) -> ImageBatch:
        """A batch of validated ``(3, H, W)`` float items: stacked when their sizes agree, one dtype."""
        if not items:
            return cls(torch.zeros(0, 3, 0, 0, dtype=torch.float32), from_uint8)
        dtype = functools.reduce(torch.promote_types, (t.dtype for t in items))
        items = [t if t.dtype == dtype else t.to(dtype) for t in items]
        if len({tuple(t.shape) for t in items}) == 1:
            return cls(torch.stack(items), from_uint8)
        return cls(list(items), from_uint8)

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, index: slice) -> ImageBatch:
        if not isinstance(index, slice):
            raise TypeError(f"ImageBatch takes slices (batch[i:i + 1]), got {type(index).__name__}; "
                            "use batch.items()[i] for one image")
        if self.same_size:
            return ImageBatch(self.pixels[index], self.from_uint8)
        return ImageBatch.from_items(self.pixels[index], self.from_uint8)

    @property
    def same_size(self) -> bool:
        """Whether the pixels are one ``(B, 3, H, W)`` tensor (every image the same size)."""
        return isinstance(self.pixels, torch.Tensor)

    @property
    def sizes(self) -> list[tuple[int, int]]:
        """``(H, W)`` of each image."""
        return [tuple(item.shape[-2:]) for item in self.items()]

    def items(self) -> list[torch.Tensor]:
        """The images as a list of ``(3, H, W)`` float tensors."""
        return list(self.pixels.unbind(0)) if self.same_size else list(self.pixels)

    @property
    def dtype(self) -> torch.dtype:
        return self.pixels.dtype if self.same_size else self.pixels[0].dtype

    @property
    def device(self) -> torch.device:
        return self.pixels.device if self.same_size else self.pixels[0].device

    @property
    def requires_grad(self) -> bool:
        return any(item.requires_grad for item in ([self.pixels] if self.same_size else self.pixels))

    def to(self, device: str | torch.device, non_blocking: bool = False) -> ImageBatch:
        """The batch with its pixels on ``device`` (differentiable, like ``Tensor.to``)."""
        if self.same_size:
            return ImageBatch(self.pixels.to(device, non_blocking=non_blocking), self.from_uint8)
        return ImageBatch([item.to(device, non_blocking=non_blocking) for item in self.pixels], self.from_uint8)


def image_batch(images: Any, name: str = "images") -> ImageBatch:
    """Validate ``images`` once into an :class:`ImageBatch`; an ``ImageBatch`` is returned as it is.

    Accepts a ``(B, 3, H, W)`` tensor (uint8 -> float32 / 255; float tensors keep their
    dtype, device and autograd graph) or a list/tuple of PIL images (converted with
    :func:`to_rgb`) and/or ``(3, H, W)`` tensors, whose sizes may differ. A bare
    ``(3, H, W)`` tensor is refused: it is ambiguous with a batch of three grey images.
    ``from_uint8`` is set when every image is 8-bit (uint8 tensors, PIL images); a list
    mixing 8-bit and float images is a float batch. An empty list gives an empty batch.
    Errors are ``ValueError`` naming ``name``, the offending index and the problem
    (shape, dtype, NaN/inf, values outside ``[0, 1]``).
    """
    if isinstance(images, ImageBatch):
        return images
    if isinstance(images, torch.Tensor):
        return ImageBatch(_tensor_batch(images, name), from_uint8=images.dtype == torch.uint8)
    items = _validated_items(images, name, None)
    return ImageBatch.from_items(items, from_uint8=bool(items) and all(_is_8bit(item) for item in images))


def to_image_batch(images: Any, name: str = "images",
                   size: int | Sequence[int] | None = None) -> torch.Tensor:
    """Validate and convert ``images`` into a float ``(B, 3, H, W)`` batch in ``[0, 1]``.

    Accepts what :func:`image_batch` accepts. ``size`` (int or ``(H, W)``) resizes every
    image (PIL bicubic for PIL inputs, antialiased bilinear for tensors, differentiable);
    without it, the images must all have the same size. An empty batch gives a
    ``(0, 3, H, W)`` tensor. Errors are ``ValueError`` naming ``name``, the offending
    index and the problem.
    """
    hw = _size_hw(size)
    if hw is not None and isinstance(images, (list, tuple)):
        # PIL images are resized by PIL, on their 8-bit pixels, before they become floats.
        batch = ImageBatch.from_items(_validated_items(images, name, hw))
    else:
        batch = image_batch(images, name)
    if hw is None:
        if not batch.same_size:
            sizes = batch.sizes
            index = next(i for i, s in enumerate(sizes) if s != sizes[0])
            raise ValueError(f"{name}[{index}] has size {sizes[index]} (H, W) but {name}[0] has {sizes[0]}; "
                             "pass size=... to resize them to one size")
        return batch.pixels
    if len(batch) == 0:
        return torch.zeros((0, 3) + hw, dtype=batch.dtype, device=batch.device)
    if batch.same_size:
        return _resize(batch.pixels, hw)
    return torch.cat([_resize(item[None], hw) for item in batch.items()])
