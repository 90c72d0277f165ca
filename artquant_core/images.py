"""Image loading and image-batch validation shared by the scorer, the rewards and the trainers.

Two entry points:

- :func:`load_image` reads a file into an RGB ``PIL.Image`` the same way every
  time (EXIF orientation applied, transparency composited on white, L / P /
  CMYK / 16-bit converted properly) and refuses truncated, corrupt or
  decompression-bomb files with an error naming the file — a silently black
  or half-grey training image is worse than a crash.
- :func:`to_image_batch` turns whatever a caller hands a scorer or a reward
  (a ``(B, 3, H, W)`` tensor, uint8 or float, or a list of PIL images) into
  one float ``(B, 3, H, W)`` tensor in ``[0, 1]``, keeping autograd intact.
"""

from __future__ import annotations

import functools
import struct
import threading
import zlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps

# Generous default: a 10k x 10k painting scan is fine, a 50k x 50k PNG bomb is not.
DEFAULT_MAX_PIXELS = 100_000_000

# Values this far outside [0, 1] are rounding noise from a previous op, not a bug.
RANGE_TOLERANCE = 1e-6

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


def pad_to_square(img: Image.Image, fill: Sequence[int] = (122, 116, 104)) -> Image.Image:
    """Centre ``img`` (RGB) on a square canvas of colour ``fill`` (default: CLIP's mean colour).

    This is how the method keeps the aspect ratio before resizing to the model's square input.
    """
    width, height = img.size
    if width == height:
        return img
    side = max(width, height)
    canvas = Image.new("RGB", (side, side), tuple(int(c) for c in fill))
    canvas.paste(img, ((side - width) // 2, (side - height) // 2))
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
        if size is not None and tuple(tensor.shape[-2:]) != size:
            tensor = torch.nn.functional.interpolate(tensor, size=size, mode="bilinear",
                                                     antialias=True, align_corners=False).clamp(0, 1)
        return tensor[0]
    raise ValueError(f"{name}[{index}] must be a PIL image or a (3, H, W) tensor, got {type(item).__name__}")


def to_image_batch(images: Any, name: str = "images",
                   size: int | Sequence[int] | None = None) -> torch.Tensor:
    """Validate and convert ``images`` into a float ``(B, 3, H, W)`` batch in ``[0, 1]``.

    Accepts a ``(B, 3, H, W)`` tensor (uint8 -> float32 / 255; float tensors keep their
    dtype, device and autograd graph) or a list/tuple of PIL images (converted with
    :func:`to_rgb`) and/or ``(3, H, W)`` tensors. A bare ``(3, H, W)`` tensor is refused:
    it is ambiguous with a batch of three grey images. ``size`` (int or ``(H, W)``)
    resizes every image (PIL bicubic for PIL inputs, antialiased bilinear for tensors,
    differentiable); without it, list items must all have the same size. An empty
    batch gives a ``(0, 3, H, W)`` tensor. Errors are ``ValueError`` naming ``name``,
    the offending index and the problem (shape, NaN/inf, values outside ``[0, 1]``).
    """
    hw = _size_hw(size)
    if isinstance(images, torch.Tensor):
        batch = _tensor_batch(images, name)
        if hw is not None and batch.shape[0] == 0:
            return batch.new_zeros((0, 3) + hw)
        if hw is not None and tuple(batch.shape[-2:]) != hw:
            batch = torch.nn.functional.interpolate(batch, size=hw, mode="bilinear",
                                                    antialias=True, align_corners=False).clamp(0, 1)
        return batch
    if isinstance(images, Image.Image):
        raise ValueError(f"{name} must be a list of PIL images or a (B, 3, H, W) tensor, got a single "
                         "PIL image (wrap it in a list)")
    if not isinstance(images, (list, tuple)):
        raise ValueError(f"{name} must be a (B, 3, H, W) tensor or a list of PIL images, "
                         f"got {type(images).__name__}")
    if len(images) == 0:
        height, width = hw if hw is not None else (0, 0)
        return torch.zeros(0, 3, height, width, dtype=torch.float32)
    tensors = []
    for index, item in enumerate(images):
        try:
            tensor = _item_to_tensor(item, index, name, hw)
        except ValueError as exc:
            message = str(exc)
            if f"{name}[{index}]" not in message:
                message = f"{name}[{index}]: {message}"
            raise ValueError(message) from exc
        if tensors and tensor.shape != tensors[0].shape:
            raise ValueError(
                f"{name}[{index}] has size {tuple(tensor.shape[-2:])} (H, W) but {name}[0] has "
                f"{tuple(tensors[0].shape[-2:])}; pass size=... to resize them to one size")
        tensors.append(tensor)
    dtype = functools.reduce(torch.promote_types, (t.dtype for t in tensors))
    tensors = [t if t.dtype == dtype else t.to(dtype) for t in tensors]
    return torch.stack(tensors)
