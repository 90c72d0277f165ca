"""The HTTP wire format shared by :mod:`reward.remote` (client) and :mod:`reward.serving` (server).

A score request is ``POST /score`` with an ``.npz`` body (``application/x-npz``):

- ``images``: ``(B, H, W, 3)`` uint8, 0..255 — channels last, as image files and PIL hold
  them, and 4x smaller than float32. Float32/float64 in ``[0, 1]`` is accepted too (then
  validated for NaN and range), for clients that must not round to 8 bits.
- ``prompts`` (optional): ``(B,)`` unicode array (``numpy.str_``, never an object array).

The server reads it with ``numpy.load(..., allow_pickle=False)``: nothing in a request is
ever unpickled. The answer is JSON: ``{"rewards": [...], "name": ..., "batch_requests": k,
"batch_images": n}`` or, on error, ``{"error": message, "retryable": bool}`` with a 4xx
(the request is wrong: not retried) or 5xx status.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

import numpy as np
import torch

CONTENT_TYPE = "application/x-npz"
_KEYS = {"images", "prompts"}
_FLOAT_DTYPES = (np.float32, np.float64)


class BadRequest(ValueError):
    """The request body is wrong (HTTP 400); the message names the field and the problem."""


@dataclass(frozen=True)
class ScoreRequest:
    """One decoded request: ``images`` ``(B, 3, H, W)`` uint8 or float, and one prompt per image or ``None``."""

    images: torch.Tensor
    prompts: list[str] | None

    def __len__(self) -> int:
        return int(self.images.shape[0])


def encode_request(images_hwc: np.ndarray, prompts: list[str] | None = None) -> bytes:
    """The ``.npz`` body of a score request (``images_hwc``: ``(B, H, W, 3)`` uint8 or float)."""
    arrays = {"images": np.ascontiguousarray(images_hwc)}
    if prompts is not None:
        # np.array of str is a fixed-width unicode array ('<U..'): it loads without pickle.
        arrays["prompts"] = np.array(list(prompts), dtype=np.str_).reshape(len(prompts))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # uncompressed: pixels barely compress and zlib would cost CPU on both ends
    return buffer.getvalue()


def _load_arrays(body: bytes) -> dict[str, np.ndarray]:
    if not body:
        raise BadRequest("empty request body; expected an .npz archive with 'images' (B, H, W, 3) uint8")
    if not body.startswith(b"PK"):  # the zip magic: say so plainly rather than numpy's "pickled data" error
        raise BadRequest(f"request body is not an .npz archive (starts with {body[:8]!r}); expected 'images' "
                         "(B, H, W, 3) uint8 and optionally 'prompts' saved with numpy.savez")
    try:
        with np.load(io.BytesIO(body), allow_pickle=False) as archive:
            unknown = sorted(set(archive.files) - _KEYS)
            if unknown:
                raise BadRequest(f"unknown field(s) {', '.join(unknown)} in the request; expected 'images' "
                                 "and optionally 'prompts'")
            return {key: archive[key] for key in archive.files}
    except BadRequest:
        raise
    except ValueError as exc:  # object arrays (pickles) land here: "Object arrays cannot be loaded ..."
        raise BadRequest(f"request body: {exc}") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise BadRequest(f"request body is not a readable .npz archive ({type(exc).__name__}: {exc})") from None


def _images(array: np.ndarray | None) -> torch.Tensor:
    if array is None:
        raise BadRequest("field 'images' is missing; expected (B, H, W, 3) uint8")
    if array.ndim != 4 or array.shape[-1] != 3:
        raise BadRequest(f"field 'images' must have shape (B, H, W, 3) (channels last), got {array.shape}")
    if array.shape[1] < 1 or array.shape[2] < 1:
        raise BadRequest(f"field 'images' has an empty image size {array.shape[1:3]}")
    if array.dtype != np.uint8 and array.dtype not in _FLOAT_DTYPES:
        raise BadRequest(f"field 'images' has dtype {array.dtype}; send uint8 0..255 (or float32 in [0, 1])")
    if array.dtype in _FLOAT_DTYPES and array.shape[0]:
        flat = array.reshape(array.shape[0], -1)
        finite = np.isfinite(flat).all(axis=1)
        if not finite.all():
            raise BadRequest(f"field 'images': image {int(np.argmin(finite))} contains NaN or inf pixels")
        outside = (flat.min(axis=1) < 0) | (flat.max(axis=1) > 1)
        if outside.any():
            raise BadRequest(f"field 'images': image {int(np.argmax(outside))} has float pixels outside [0, 1]")
    return torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))


def _prompts(array: np.ndarray | None, count: int) -> list[str] | None:
    if array is None:
        return None
    if array.dtype.kind != "U" or array.ndim != 1:
        raise BadRequest(f"field 'prompts' must be a 1-D unicode string array, got dtype {array.dtype} "
                         f"shape {array.shape}")
    if len(array) != count:
        raise BadRequest(f"field 'prompts' has {len(array)} entries but 'images' has {count} images")
    return [str(p) for p in array]


def decode_request(body: bytes) -> ScoreRequest:
    """Validate a request body into a :class:`ScoreRequest`; :class:`BadRequest` names what is wrong."""
    arrays = _load_arrays(body)
    images = _images(arrays.get("images"))
    return ScoreRequest(images, _prompts(arrays.get("prompts"), int(images.shape[0])))
