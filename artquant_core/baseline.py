"""Pixel-statistics baseline: global colour/contrast/sharpness features + closed-form ridge.

The reference point a learned scorer must beat. It sees only *global*
statistics — colour histograms, HSV moments, luminance contrast, gradient and
Laplacian energy (sharpness), a high-pass noise estimate — so it cannot tell
where things are in the frame. On SynthArt, whose score depends mostly on
placement, balance and horizon tilt, it stays far below the noise ceiling.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

HIST_BINS = 8
HUE_BINS = 12
ALPHAS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)


def _hsv(rgb: np.ndarray) -> np.ndarray:
    mx, mn = rgb.max(-1), rgb.min(-1)
    delta = mx - mn
    safe = np.where(delta > 1e-6, delta, 1.0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    h = np.where(mx == r, (g - b) / safe % 6, np.where(mx == g, (b - r) / safe + 2, (r - g) / safe + 4)) / 6
    h = np.where(delta > 1e-6, h, 0.0)
    s = np.where(mx > 1e-6, delta / np.where(mx > 1e-6, mx, 1.0), 0.0)
    return np.stack([h, s, mx], -1)


def pixel_features(image: np.ndarray) -> np.ndarray:
    """Global statistics of one ``(H, W, 3)`` image (uint8 or float in [0, 1])."""
    x = np.asarray(image, dtype=np.float64)
    if x.max() > 1.0:
        x = x / 255.0
    feats: list[np.ndarray] = []
    for c in range(3):
        feats.append(np.histogram(x[..., c], bins=HIST_BINS, range=(0, 1))[0] / x[..., c].size)
    hsv = _hsv(x)
    weight = hsv[..., 1].ravel()
    hue_hist = np.histogram(hsv[..., 0].ravel(), bins=HUE_BINS, range=(0, 1), weights=weight)[0]
    feats.append(hue_hist / max(weight.sum(), 1e-6))
    feats.append(np.concatenate([x.mean((0, 1)), x.std((0, 1)), hsv.mean((0, 1)), hsv.std((0, 1))]))
    lum = x @ np.array([0.299, 0.587, 0.114])
    gx, gy = np.diff(lum, axis=1), np.diff(lum, axis=0)
    lap = lum[1:-1, 1:-1] * 4 - lum[:-2, 1:-1] - lum[2:, 1:-1] - lum[1:-1, :-2] - lum[1:-1, 2:]
    grad = np.concatenate([np.abs(gx).ravel(), np.abs(gy).ravel()])
    feats.append(np.array([
        lum.mean(), lum.std(), np.percentile(lum, 5), np.percentile(lum, 95),
        grad.mean(), np.percentile(grad, 90), (grad > 0.1).mean(),
        np.abs(lap).mean(), np.median(np.abs(lap)), lap.std(),
        x.std(-1).mean(),  # colourfulness proxy
    ]))
    return np.concatenate(feats)


@dataclass
class PixelBaseline:
    """Standardised features -> ridge regression (weights solved in closed form)."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    alpha: float

    def predict_features(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.scale) @ self.weights + self.bias

    def predict(self, images: Iterable) -> np.ndarray:
        """Scores for images given as arrays ``(H, W, 3)``, PIL images or file paths."""
        return self.predict_features(np.stack([pixel_features(_as_array(im)) for im in images]))


def _as_array(image) -> np.ndarray:
    if isinstance(image, (str, Path)):
        with Image.open(image) as im:
            return np.asarray(im.convert("RGB"))
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:  # CHW tensor layout
        arr = arr.transpose(1, 2, 0)
    return arr


def ridge_fit(features: np.ndarray, targets: np.ndarray, alpha: float) -> PixelBaseline:
    mean = features.mean(0)
    scale = features.std(0)
    scale = np.where(scale > 1e-8, scale, 1.0)
    z = (features - mean) / scale
    bias = float(targets.mean())
    gram = z.T @ z + alpha * np.eye(z.shape[1])
    weights = np.linalg.solve(gram, z.T @ (targets - bias))
    return PixelBaseline(mean, scale, weights, bias, alpha)


def _score_records(records: Sequence) -> list:
    return [r for r in records if _get(r, "gt_score") is not None]


def _get(record, key):
    return record.get(key) if isinstance(record, dict) else getattr(record, key, None)


def _image_path(record, root: Path | None) -> Path:
    path = Path(_get(record, "image"))
    return path if path.is_absolute() or root is None else root / path


def fit_pixel_baseline(train_records: Sequence, image_root: str | Path | None = None,
                       val_records: Sequence | None = None) -> PixelBaseline:
    """Fit on the score records of ``train_records`` (dicts or ``Record``s).

    The ridge strength is picked on ``val_records`` by SRCC when given, else a
    fixed ``alpha = 10``.
    """
    root = Path(image_root) if image_root is not None else None
    train = _score_records(train_records)
    if len(train) < 2:
        raise ValueError(f"fit_pixel_baseline needs at least 2 score records, got {len(train)}")
    x = np.stack([pixel_features(_as_array(_image_path(r, root))) for r in train])
    y = np.array([float(_get(r, "gt_score")) for r in train])
    if not val_records:
        return ridge_fit(x, y, 10.0)
    from artquant_core.synthart.dataset import spearman

    val = _score_records(val_records)
    xv = np.stack([pixel_features(_as_array(_image_path(r, root))) for r in val])
    yv = np.array([float(_get(r, "gt_score")) for r in val])
    best = max(ALPHAS, key=lambda a: spearman(ridge_fit(x, y, a).predict_features(xv), yv))
    return ridge_fit(x, y, best)


def pixel_baseline_srcc(records_path: str | Path) -> dict:
    """Fit on the train split, pick alpha on val, report SRCC/PLCC on test.

    ``records_path`` is a SynthArt ``records.json`` (or any records file whose
    records carry ``split``); image paths are relative to its folder.
    """
    from artquant_core.synthart.dataset import spearman

    path = Path(records_path)
    if not path.is_file():
        raise FileNotFoundError(f"records file {str(path)!r} not found")
    records = json.loads(path.read_text())
    by_split = {s: [r for r in _score_records(records) if r.get("split") == s] for s in ("train", "val", "test")}
    for split, recs in by_split.items():
        if len(recs) < 2:
            raise ValueError(f"{path}: split {split!r} has {len(recs)} score records; need at least 2")
    model = fit_pixel_baseline(by_split["train"], path.parent, by_split["val"])
    test = by_split["test"]
    pred = model.predict([_image_path(r, path.parent) for r in test])
    gt = np.array([r["gt_score"] for r in test])
    return {"srcc": spearman(pred, gt), "plcc": float(np.corrcoef(pred, gt)[0, 1]),
            "n_train": len(by_split["train"]), "n_test": len(test), "alpha": model.alpha}
