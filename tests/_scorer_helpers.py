"""Shared fixtures for the scorer tests: tiny scorers of both families and test images."""

from __future__ import annotations

import numpy as np
from PIL import Image

FAMILIES = ("qwen2_5_vl", "llava")


def painting(h: int, w: int, seed: int = 0) -> Image.Image:
    """A deterministic RGB test image with smooth structure plus noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    layers = [np.sin(x / (5.0 + seed + c) + c) * np.cos(y / (4.0 + c) - seed) for c in range(3)]
    arr = np.stack(layers, -1) * 100 + 128 + rng.normal(0, 20, (h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
