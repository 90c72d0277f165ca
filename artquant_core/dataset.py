"""A torch ``Dataset`` over records; images stay uint8 until the model's own preprocessing."""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset

from artquant_core.images import DEFAULT_MAX_PIXELS, load_image, pad_to_square, pil_to_uint8_tensor
from artquant_core.records import Record

# CLIP's mean colour in 0..255: what the method pads non-square images with.
CLIP_MEAN_RGB = (122, 116, 104)


class RecordDataset(Dataset):
    """Items are dicts: ``image`` (uint8 ``(3, H, W)``), ``id``, ``task_type``, ``gt_score``,
    ``level_probs``, ``std``, ``conversations``, ``attributes``, ``index``.

    ``image_size``: pad to a square with ``pad_color`` (as the method does, keeping the
    aspect ratio), then resize to ``image_size`` x ``image_size``; ``None`` keeps the native
    size (:func:`collate_records` then returns a list when sizes differ).
    ``skip_bad_images``: an unreadable image is reported with a warning, counted in
    ``num_skipped`` / ``skipped`` (per process: data-loader workers keep their own counts),
    and replaced by the next readable record, whose item carries ``replaces`` = the bad id;
    without it the error names the record and the file.
    """

    def __init__(self, records: Sequence[Record], image_size: int | None = None, skip_bad_images: bool = False,
                 pad_color: Sequence[int] = CLIP_MEAN_RGB, max_pixels: int | None = DEFAULT_MAX_PIXELS):
        if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
            raise ValueError(f"image_size must be a positive integer or None, got {image_size!r}")
        self.records = list(records)
        self.image_size = image_size
        self.skip_bad_images = skip_bad_images
        self.pad_color = tuple(pad_color)
        self.max_pixels = max_pixels
        self.skipped: dict[str, str] = {}  # record id -> error message

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def __len__(self) -> int:
        return len(self.records)

    def _image(self, record: Record) -> torch.Tensor:
        img = load_image(record.image, max_pixels=self.max_pixels)
        if self.image_size is not None:
            img = pad_to_square(img, self.pad_color).resize((self.image_size, self.image_size), Image.BICUBIC)
        return pil_to_uint8_tensor(img)

    def _item(self, index: int, image: torch.Tensor) -> dict[str, Any]:
        record = self.records[index]
        return {
            "image": image, "id": record.id, "task_type": record.task_type, "gt_score": record.gt_score,
            "level_probs": record.level_probs, "std": record.std, "conversations": record.conversations,
            "attributes": record.attributes, "index": index,
        }

    def __getitem__(self, index: int) -> dict[str, Any]:
        replaces = None
        for offset in range(len(self.records)):
            position = (index + offset) % len(self.records)
            record = self.records[position]
            try:
                item = self._item(position, self._image(record))
            except (ValueError, FileNotFoundError) as exc:
                if not self.skip_bad_images:
                    raise ValueError(f"record {position} (id {record.id!r}): {exc}") from exc
                if record.id not in self.skipped:
                    warnings.warn(f"skipping record {position} (id {record.id!r}): {exc}", stacklevel=2)
                self.skipped[record.id] = str(exc)
                replaces = replaces or record.id
                continue
            if replaces is not None:
                item["replaces"] = replaces
            return item
        raise ValueError(f"no readable image among the {len(self.records)} records "
                         f"({self.num_skipped} skipped)")


def _optional_tensor(values: list[Any]) -> torch.Tensor:
    return torch.tensor([math.nan if v is None else float(v) for v in values], dtype=torch.float32)


def collate_records(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch dataset items; images stay uint8 (a stacked ``(B, 3, H, W)`` tensor, or a list of
    ``(3, H, W)`` tensors when sizes differ). Missing ``gt_score`` / ``std`` become NaN;
    ``level_probs`` is a ``(B, L)`` float32 tensor when every item has them, else a list."""
    items = list(items)
    images = [item["image"] for item in items]
    same_size = len({tuple(image.shape) for image in images}) <= 1
    level_probs = [item["level_probs"] for item in items]
    batch: dict[str, Any] = {
        "image": torch.stack(images) if images and same_size else images,
        "id": [item["id"] for item in items],
        "task_type": [item["task_type"] for item in items],
        "gt_score": _optional_tensor([item["gt_score"] for item in items]),
        "std": _optional_tensor([item["std"] for item in items]),
        "level_probs": (torch.tensor(level_probs, dtype=torch.float32)
                        if items and all(p is not None for p in level_probs) else level_probs),
        "conversations": [item["conversations"] for item in items],
        "attributes": [item["attributes"] for item in items],
        "index": torch.tensor([item["index"] for item in items], dtype=torch.long),
        "num_replaced": sum(1 for item in items if "replaces" in item),
    }
    return batch
