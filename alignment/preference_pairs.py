"""Preference pairs for Diffusion-DPO: a file of ``{prompt, chosen, rejected}`` rows, checked row by row.

The file is a JSON list or JSON Lines; ``chosen`` / ``rejected`` are image
paths, relative to the file's folder unless absolute. Every row is checked
before any model loads, and a bad one is named by its row number.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

PAIR_KEYS = ("prompt", "chosen", "rejected")


@dataclass(frozen=True)
class PreferencePair:
    """One preference: ``chosen`` was preferred to ``rejected`` for ``prompt`` (absolute image paths)."""

    prompt: str
    chosen: Path
    rejected: Path


def load_preference_pairs(path: str | Path) -> list[PreferencePair]:
    """Read and check a pairs file (``.json`` list or ``.jsonl``); errors name the file and the row."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pairs_file: no such file: {path}")
    pairs = []
    from artquant_core.records import read_json_or_jsonl

    for index, row in enumerate(read_json_or_jsonl(path)):
        where = f"{path}, row {index}"
        if not isinstance(row, dict):
            raise ValueError(f"{where}: expected an object with keys {PAIR_KEYS}, got {type(row).__name__}")
        missing = [k for k in PAIR_KEYS if not isinstance(row.get(k), str) or not row.get(k).strip()]
        if missing:
            raise ValueError(f"{where}: missing or empty {', '.join(missing)} (each row needs {PAIR_KEYS})")
        images = {}
        for key in ("chosen", "rejected"):
            image = Path(row[key]).expanduser()
            image = image if image.is_absolute() else path.parent / image
            if not image.is_file():
                raise FileNotFoundError(f"{where}: {key} image not found: {image}")
            images[key] = image
        pairs.append(PreferencePair(row["prompt"].strip(), images["chosen"], images["rejected"]))
    if not pairs:
        raise ValueError(f"{path}: no preference pairs")
    return pairs


def load_pair_pixels(paths: list[Path], resolution: int) -> torch.Tensor:
    """Images ``(B, 3, resolution, resolution)`` in [0, 1]: shorter side resized, centre-cropped (as SD trains)."""
    from PIL import Image

    from artquant_core.images import load_image, pil_to_uint8_tensor

    out = []
    for p in paths:
        img = load_image(p)
        scale = resolution / min(img.size)
        w, h = max(resolution, round(img.width * scale)), max(resolution, round(img.height * scale))
        img = img.resize((w, h), Image.BICUBIC)
        left, top = (w - resolution) // 2, (h - resolution) // 2
        img = img.crop((left, top, left + resolution, top + resolution))
        out.append(pil_to_uint8_tensor(img).float() / 255.0)
    return torch.stack(out)
