"""Pixel-statistics baselines: hand-made image features + closed-form ridge.

The reference points a learned scorer must beat, selectable by name
(:data:`FEATURE_SETS`):

- ``"global"``: *global* statistics only — colour histograms, HSV moments,
  luminance contrast, gradient and Laplacian energy (sharpness), a high-pass
  noise estimate — so it cannot tell where things are in the frame. On
  SynthArt, whose score depends mostly on placement, balance and horizon tilt,
  it stays far below the noise ceiling.
- ``"spatial"``: the same statistics plus a colour thumbnail (the image
  area-averaged onto a 4 x 4 grid, RGB: 48 numbers), the cheapest feature that
  knows *where* colour sits; a scorer that only matches it has learnt little
  beyond a blurred layout.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

HIST_BINS = 8
HUE_BINS = 12
ALPHAS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)
THUMBNAIL_GRID = 4


def _hsv(rgb: np.ndarray) -> np.ndarray:
    mx, mn = rgb.max(-1), rgb.min(-1)
    delta = mx - mn
    safe = np.where(delta > 1e-6, delta, 1.0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    h = np.where(mx == r, (g - b) / safe % 6, np.where(mx == g, (b - r) / safe + 2, (r - g) / safe + 4)) / 6
    h = np.where(delta > 1e-6, h, 0.0)
    s = np.where(mx > 1e-6, delta / np.where(mx > 1e-6, mx, 1.0), 0.0)
    return np.stack([h, s, mx], -1)


def _unit_range(image: np.ndarray) -> np.ndarray:
    """``image`` as float64 in [0, 1] (uint8-range input, i.e. any value above 1, is divided by 255)."""
    x = np.asarray(image, dtype=np.float64)
    return x / 255.0 if x.max() > 1.0 else x


def pixel_features(image: np.ndarray) -> np.ndarray:
    """Global statistics of one ``(H, W, 3)`` image (uint8 or float in [0, 1])."""
    x = _unit_range(image)
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


def _area_weights(length: int, cells: int) -> np.ndarray:
    """``(cells, length)`` matrix whose row ``c`` averages the pixels under cell ``c``.

    Each pixel ``[i, i + 1)`` counts by its overlap with the cell ``[c, c + 1) * length / cells``,
    so the average is exact for any size (no rounding of cell borders, no resampling filter).
    """
    edges = np.arange(cells + 1) * (length / cells)
    left, right = np.arange(length), np.arange(length) + 1.0
    overlap = np.clip(np.minimum(right[None, :], edges[1:, None]) - np.maximum(left[None, :], edges[:-1, None]), 0, None)
    return overlap / overlap.sum(1, keepdims=True)


def thumbnail_features(image: np.ndarray, grid: int = THUMBNAIL_GRID) -> np.ndarray:
    """The ``(H, W, 3)`` image area-averaged onto a ``grid`` x ``grid`` thumbnail, flattened
    (``grid * grid * 3`` values in [0, 1], row-major, RGB last)."""
    x = _unit_range(image)
    height, width = x.shape[:2]
    if height < grid or width < grid:
        raise ValueError(f"thumbnail_features: image {height}x{width} is smaller than the {grid}x{grid} grid")
    thumb = np.einsum("ah,hwc,bw->abc", _area_weights(height, grid), x, _area_weights(width, grid))
    return thumb.ravel()


#: The feature blocks the sets are made of, each computed once per image however many sets use it.
FEATURE_BLOCKS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "statistics": pixel_features,
    "thumbnail": thumbnail_features,
}

#: Baseline feature sets by name, as the blocks they concatenate: ``"global"`` (position-blind
#: statistics) and ``"spatial"`` (the statistics plus a 4 x 4 colour thumbnail).
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "global": ("statistics",),
    "spatial": ("statistics", "thumbnail"),
}


def _check_feature_set(name: str) -> tuple[str, ...]:
    if name not in FEATURE_SETS:
        raise ValueError(f"unknown baseline feature set {name!r}; known: {', '.join(FEATURE_SETS)}")
    return FEATURE_SETS[name]


def image_features(image: np.ndarray, feature_set: str = "global") -> np.ndarray:
    """The named feature set (:data:`FEATURE_SETS`) of one ``(H, W, 3)`` image (uint8 or float in [0, 1])."""
    return np.concatenate([FEATURE_BLOCKS[block](image) for block in _check_feature_set(feature_set)])


@dataclass
class PixelBaseline:
    """Standardised features -> ridge regression (weights solved in closed form).

    ``features`` names the feature set (:data:`FEATURE_SETS`) the weights were fitted on.
    """

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    alpha: float
    features: str = "global"

    def predict_features(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.scale) @ self.weights + self.bias

    def predict(self, images: Iterable) -> np.ndarray:
        """Scores for images given as arrays ``(H, W, 3)``, PIL images or file paths."""
        return self.predict_features(np.stack([image_features(_as_array(im), self.features) for im in images]))


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


def ridge_fit(features: np.ndarray, targets: np.ndarray, alpha: float, feature_set: str = "global") -> PixelBaseline:
    """Ridge regression of ``targets`` on standardised ``features`` (named ``feature_set``)."""
    mean = features.mean(0)
    scale = features.std(0)
    scale = np.where(scale > 1e-8, scale, 1.0)
    z = (features - mean) / scale
    bias = float(targets.mean())
    gram = z.T @ z + alpha * np.eye(z.shape[1])
    weights = np.linalg.solve(gram, z.T @ (targets - bias))
    return PixelBaseline(mean, scale, weights, bias, alpha, feature_set)


def _score_records(records: Sequence) -> list:
    return [r for r in records if _get(r, "gt_score") is not None]


def _get(record, key):
    return record.get(key) if isinstance(record, dict) else getattr(record, key, None)


def _image_path(record, root: Path | None) -> Path:
    path = Path(_get(record, "image"))
    return path if path.is_absolute() or root is None else root / path


def _feature_matrices(records: Sequence, root: Path | None, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Each named feature set of every record's image; each image is read, and each block computed, once."""
    blocks = list(dict.fromkeys(block for name in names for block in _check_feature_set(name)))
    rows: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for record in records:
        image = _as_array(_image_path(record, root))
        computed = {block: FEATURE_BLOCKS[block](image) for block in blocks}
        for name in names:
            rows[name].append(np.concatenate([computed[block] for block in FEATURE_SETS[name]]))
    return {name: np.stack(values) for name, values in rows.items()}


def _fit(x: np.ndarray, y: np.ndarray, feature_set: str, xv: np.ndarray | None, yv: np.ndarray | None) -> PixelBaseline:
    if xv is None:
        return ridge_fit(x, y, 10.0, feature_set)
    from artquant_core.synthart.dataset import spearman

    best = max(ALPHAS, key=lambda a: spearman(ridge_fit(x, y, a, feature_set).predict_features(xv), yv))
    return ridge_fit(x, y, best, feature_set)


def fit_pixel_baseline(train_records: Sequence, image_root: str | Path | None = None,
                       val_records: Sequence | None = None, features: str = "global") -> PixelBaseline:
    """Fit on the score records of ``train_records`` (dicts or ``Record``s).

    ``features`` picks the feature set (:data:`FEATURE_SETS`: ``"global"`` or ``"spatial"``).
    The ridge strength is picked on ``val_records`` by SRCC when given, else a
    fixed ``alpha = 10``.
    """
    _check_feature_set(features)
    root = Path(image_root) if image_root is not None else None
    train = _score_records(train_records)
    if len(train) < 2:
        raise ValueError(f"fit_pixel_baseline needs at least 2 score records, got {len(train)}")
    x = _feature_matrices(train, root, [features])[features]
    y = np.array([float(_get(r, "gt_score")) for r in train])
    if not val_records:
        return _fit(x, y, features, None, None)
    val = _score_records(val_records)
    xv = _feature_matrices(val, root, [features])[features]
    return _fit(x, y, features, xv, np.array([float(_get(r, "gt_score")) for r in val]))


def pixel_baselines_srcc(records_path: str | Path, features: Sequence[str] = tuple(FEATURE_SETS)) -> dict[str, dict]:
    """:func:`pixel_baseline_srcc` for several feature sets at once (each image read once).

    Returns ``{feature set name: result}``, in the order of ``features``.
    """
    from artquant_core.synthart.dataset import spearman

    for name in features:
        _check_feature_set(name)
    path = Path(records_path)
    if not path.is_file():
        raise FileNotFoundError(f"records file {str(path)!r} not found")
    records = json.loads(path.read_text())
    by_split = {s: [r for r in _score_records(records) if r.get("split") == s] for s in ("train", "val", "test")}
    for split, recs in by_split.items():
        if len(recs) < 2:
            raise ValueError(f"{path}: split {split!r} has {len(recs)} score records; need at least 2 "
                             f"(records need a 'split' field of train / val / test)")
    matrices = {split: _feature_matrices(recs, path.parent, features) for split, recs in by_split.items()}
    targets = {split: np.array([float(r["gt_score"]) for r in recs]) for split, recs in by_split.items()}
    results: dict[str, dict] = {}
    for name in features:
        model = _fit(matrices["train"][name], targets["train"], name, matrices["val"][name], targets["val"])
        pred, gt = model.predict_features(matrices["test"][name]), targets["test"]
        results[name] = {"srcc": spearman(pred, gt), "plcc": float(np.corrcoef(pred, gt)[0, 1]),
                         "n_train": len(by_split["train"]), "n_test": len(gt), "alpha": model.alpha,
                         "features": name}
    return results


def pixel_baseline_srcc(records_path: str | Path, features: str = "global") -> dict:
    """Fit on the train split, pick alpha on val, report SRCC/PLCC on test.

    ``records_path`` is a SynthArt ``records.json`` (or any records file whose
    records carry ``split``); image paths are relative to its folder. ``features``
    names the feature set (:data:`FEATURE_SETS`).
    """
    return pixel_baselines_srcc(records_path, (features,))[features]
