"""Pictures a person would rather look at than read: curves and image grids with scores.

matplotlib runs headless (Agg); every function writes one PNG and returns its path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path) -> Path:
    """Lay out, write (creating the folder) and close a matplotlib figure; return the path."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    _pyplot().close(fig)
    return path


def plot_curves(rows: Sequence[dict[str, Any]], x_key: str, y_keys: Sequence[str], path: str | Path,
                title: str = "", std_suffix: str | None = None, ylabel: str = "") -> Path:
    """Line plot of ``y_keys`` against ``x_key`` over metric rows (rows lacking a key are skipped).

    With ``std_suffix`` (e.g. ``"_std"`` for ``reward_mean``/``reward_std``, the
    mean key being ``<base>_mean``), a shaded band of mean ± std is drawn.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for key in y_keys:
        pts = [(r[x_key], r[key]) for r in rows if x_key in r and r.get(key) is not None]
        if not pts:
            continue
        xs, ys = np.array(pts, dtype=float).T
        ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3, label=key)
        if std_suffix and key.endswith("_mean"):
            std_key = key[: -len("_mean")] + std_suffix
            sd = [(r[x_key], r[std_key]) for r in rows if x_key in r and r.get(key) is not None
                  and r.get(std_key) is not None]
            if len(sd) == len(xs):
                s = np.array([v for _, v in sd], dtype=float)
                ax.fill_between(xs, ys - s, ys + s, alpha=0.2)
    ax.set_xlabel(x_key)
    ax.set_ylabel(ylabel)
    # a long line (a reward-hacking note) is set smaller rather than cut off at the figure's edge: about 60
    # characters fit this figure's width at matplotlib's default title size (12 pt)
    longest = max((len(line) for line in title.split("\n")), default=0)
    ax.set_title(title, fontsize=None if longest <= 60 else max(7.0, 12.0 * 60 / longest))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def image_grid(images: Any, path: str | Path, captions: Sequence[str] | None = None, ncols: int = 8,
               highlight: Sequence[int] = (), cell: int = 128, row_labels: Sequence[str] | None = None) -> Path:
    """Contact sheet: images (``(B,3,H,W)`` tensor in [0,1] / uint8, or PIL list) in rows of ``ncols``.

    ``captions[i]`` is written under image ``i``; indices in ``highlight`` get a
    thick frame (the best of a best-of-N group); ``row_labels`` go left of each row.
    """
    from PIL import Image, ImageDraw

    from artquant_core.images import to_pil_images

    pil = to_pil_images(images)
    n = len(pil)
    ncols = max(1, min(ncols, n or 1))
    nrows = max(1, -(-n // ncols))
    caption_h = 14 if captions else 0
    label_w = 140 if row_labels else 0
    pad = 4
    W = label_w + ncols * (cell + pad) + pad
    H = nrows * (cell + caption_h + pad) + pad
    sheet = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(sheet)
    marked = set(int(i) for i in highlight)
    for i, im in enumerate(pil):
        r, c = divmod(i, ncols)
        x = label_w + pad + c * (cell + pad)
        y = pad + r * (cell + caption_h + pad)
        sheet.paste(im.convert("RGB").resize((cell, cell), Image.Resampling.NEAREST
                                             if im.width < cell else Image.Resampling.BICUBIC), (x, y))
        if i in marked:
            draw.rectangle([x - 2, y - 2, x + cell + 1, y + cell + 1], outline=(220, 30, 30), width=3)
        if captions:
            draw.text((x + 2, y + cell + 1), str(captions[i])[: cell // 6], fill=(0, 0, 0))
    if row_labels:
        for r, label in enumerate(row_labels[:nrows]):
            draw.text((pad, pad + r * (cell + caption_h + pad) + cell // 2), str(label)[:22], fill=(0, 0, 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path

