"""What the shipped tiny scorer perceives of pixel noise, blur and JPEG, after its own resize.

    python -m scripts.bench_degradations [--n 64] [--sizes 64,128,256] [--seed 6000] [--out DIR]

Why: the scorer's technique judgement was learnt only from SynthArt's blur and pixel noise, drawn at
64 px, the size the scorer works at. Real images arrive larger (a 512 px Stable Diffusion sample,
a camera photo) and are degraded at *that* size, by a sensor or a codec; the scorer then shrinks
them to 64 px (antialiased bicubic, see ``artquant_core/vlm_preprocess.py``). What survives that
shrink depends on the degradation:

* **pixel noise** is independent per pixel: an antialiased 4x downscale averages about 16 pixels
  into one, so noise drawn at 256 px reaches the scorer with roughly sd / 4;
* **blur** defined as a fraction of the side (SynthArt's ``MAX_BLUR``) is scale-free: the same
  relative sigma looks the same after any resize;
* **JPEG** blocks are 8 px at the drawn size (16 px for the subsampled chroma), so 2 px after a 4x
  downscale; SynthArt never draws them, so the scorer was never taught about them.

What is measured: ``n`` SynthArt paintings of an unseen ``--seed`` re-rendered at each size with
their degradation latents set to perfect (``sharpness = clean = 1``; everything else as drawn), then
each degradation at each strength applied at that size. Per (kind, strength, size): the mean paired
score change ``score(degraded) - score(clean)`` over the paintings, its standard error, and the
verdict "perceived" when ``|change| >= 3 SE`` -- for the overall score and for the
``technical_execution`` aspect. ``rms_drawn`` / ``rms_seen``: the RMS pixel change on [0, 1]
at the drawn size and in the 64 px image the scorer actually sees. For reference, SynthArt's own
range at 64 px: the change from ``clean`` 1 to 0 and from ``sharpness`` 1 to 0.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np

from artquant_core.synthart.painter import MAX_BLUR, MAX_NOISE
from scripts.bench_painter import nhwc_uint8_to_tensor

KINDS = ("noise", "blur", "jpeg")
# noise: sd on [0, 1] (SynthArt's maximum is MAX_NOISE); blur: Gaussian sigma as a fraction of the
# side (SynthArt's maximum is MAX_BLUR); jpeg: PIL quality, from mild to heavy.
STRENGTHS: dict[str, tuple[float, ...]] = {
    "noise": (0.02, 0.04, 0.08, MAX_NOISE),
    "blur": (0.005, 0.01, 0.02, MAX_BLUR),
    "jpeg": (90, 50, 25, 10),
}
ASPECTS = ("overall", "technical_execution")
DEFAULT_SIZES = (64, 128, 256)
PERCEIVED_SE = 3.0  # a change this many standard errors away from 0 counts as perceived


# ---------------------------------------------------------------------------- images
def render_painting(seed: int, index: int, size: int, **latent) -> np.ndarray:
    """SynthArt painting ``index`` of ``seed`` as uint8 ``(size, size, 3)``, with latent fields
    overridden by ``latent`` (e.g. ``clean=1.0``). Without overrides it is ``synth_item``'s painting."""
    from artquant_core.synthart.dataset import synth_item

    return synth_item(seed, index, size, latent_overrides=latent)["pixels"]


def clean_paintings(seed: int, n: int, size: int) -> np.ndarray:
    """``(n, size, size, 3)`` uint8 paintings with no blur and no pixel noise: the controlled base."""
    return np.stack([render_painting(seed, i, size, sharpness=1.0, clean=1.0) for i in range(n)])


def degrade(images: np.ndarray, kind: str, strength: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """A degraded copy of uint8 ``(N, H, W, 3)`` images, applied at their own size.

    ``kind``: ``"noise"`` (Gaussian, sd ``strength`` on [0, 1], rounded and clipped like SynthArt's),
    ``"blur"`` (PIL Gaussian blur, sigma ``strength`` times the side, like SynthArt's) or ``"jpeg"``
    (PIL JPEG round trip at quality ``strength``, 1..100, default chroma subsampling). A strength of 0
    leaves the images untouched for every kind.
    """
    from PIL import Image, ImageFilter

    if kind not in KINDS:
        raise ValueError(f"unknown degradation kind {kind!r}; known: {', '.join(KINDS)}")
    if strength < 0:
        raise ValueError(f"strength must be >= 0, got {strength}")
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 (N, H, W, 3) images, got {images.dtype} {images.shape}")
    if strength == 0:
        return images.copy()
    if kind == "noise":
        rng = np.random.default_rng(0) if rng is None else rng
        noise = rng.normal(0.0, strength * 255.0, size=images.shape).astype(np.float32)
        return np.clip(images.astype(np.float32) + noise + 0.5, 0, 255).astype(np.uint8)
    if kind == "blur":
        sigma = strength * images.shape[1]
        return np.stack([np.asarray(Image.fromarray(im).filter(ImageFilter.GaussianBlur(sigma))) for im in images])
    quality = round(float(strength))
    if not 1 <= quality <= 100:
        raise ValueError(f"jpeg quality must be in 1..100, got {strength}")
    out = []
    for im in images:
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, "JPEG", quality=quality)
        out.append(np.asarray(Image.open(buf).convert("RGB")))
    return np.stack(out)


# ---------------------------------------------------------------------------- the scorer
def seen_by_scorer(scorer, images: np.ndarray) -> np.ndarray:
    """The pixels the scorer's model gets, before normalisation: ``(N, h, w, 3)`` float on [0, 1],
    resized by the scorer's own preprocessing (uint8 rounding included, as for a uint8 input)."""
    import torch

    from artquant_core.vlm_preprocess import bicubic_resize

    x = nhwc_uint8_to_tensor(images).float() / 255.0
    h, w = scorer.family.preprocessor.target_size(*x.shape[-2:])
    with torch.no_grad():
        return bicubic_resize(x, h, w, quantize=True).permute(0, 2, 3, 1).numpy().astype(np.float64)


def score_images(scorer, images: np.ndarray, batch_size: int = 64) -> dict[str, np.ndarray]:
    """Per-image scores (1-10) of uint8 ``(N, H, W, 3)`` images, one array per aspect in ``ASPECTS``."""
    import torch

    tensor = nhwc_uint8_to_tensor(images)
    with torch.no_grad():
        return {a: scorer.score(tensor, aspect=None if a == "overall" else a, batch_size=batch_size)
                .score.double().numpy() for a in ASPECTS}


def paired_change(degraded: np.ndarray, clean: np.ndarray) -> dict:
    """Mean of ``degraded - clean`` over paired images, its standard error and the verdict."""
    diff = np.asarray(degraded, np.float64) - np.asarray(clean, np.float64)
    mean, se = float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(len(diff)))
    return {"change": mean, "se": se, "perceived": bool(mean != 0 and abs(mean) >= PERCEIVED_SE * se)}


def _rms(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over images of the RMS pixel difference, on [0, 1]."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    if np.issubdtype(np.asarray(a).dtype, np.integer):
        d = d / 255.0
    return float(np.sqrt((d ** 2).reshape(len(d), -1).mean(axis=1)).mean())


# ---------------------------------------------------------------------------- the benchmark
def run_bench(n: int = 64, sizes: tuple[int, ...] = DEFAULT_SIZES, seed: int = 6000,
              strengths: dict[str, tuple[float, ...]] | None = None, scorer=None, batch_size: int = 64) -> dict:
    """Score changes of every (kind, strength, size) cell and SynthArt's own range at 64 px.

    Returns ``n``, ``seed``, ``sizes``, ``aspects``, ``perceived_se``, ``clean`` (mean clean score per
    size and aspect), ``rows`` (one per cell: ``kind``, ``strength``, ``size``, ``seen_size``,
    ``rms_drawn``, ``rms_seen`` and, per aspect, ``change`` / ``se`` / ``perceived``),
    ``synthart_range`` (``clean`` 1 -> 0 and ``sharpness`` 1 -> 0 at 64 px, same fields) and ``seconds``.
    ``scorer``: a loaded scorer (default: the shipped tiny scorer).
    """
    if n < 2:
        raise ValueError("n must be at least 2 (standard errors)")
    if not sizes or min(sizes) < 16:
        raise ValueError(f"sizes must be integers >= 16, got {sizes}")
    strengths = STRENGTHS if strengths is None else strengths
    for kind in strengths:
        if kind not in KINDS:
            raise ValueError(f"unknown degradation kind {kind!r}; known: {', '.join(KINDS)}")
    if scorer is None:
        from artquant_core import build_tiny_scorer

        scorer = build_tiny_scorer().eval()
    t0 = time.perf_counter()
    clean_means, rows, clean_scored = {}, [], {}
    for size in sizes:
        base = clean_paintings(seed, n, size)
        base_scores, base_seen = score_images(scorer, base, batch_size), seen_by_scorer(scorer, base)
        clean_scored[size] = (base, base_scores)
        clean_means[str(size)] = {a: float(s.mean()) for a, s in base_scores.items()}
        for kind, values in strengths.items():
            for strength in values:
                # one noise stream per cell, so any cell can be rerun alone
                rng = np.random.default_rng([seed, size, KINDS.index(kind), round(float(strength) * 1000)])
                bad = degrade(base, kind, strength, rng)
                seen = seen_by_scorer(scorer, bad)
                bad_scores = score_images(scorer, bad, batch_size)
                rows.append({"kind": kind, "strength": float(strength), "size": size,
                             "seen_size": list(seen.shape[1:3]), "rms_drawn": _rms(bad, base),
                             "rms_seen": _rms(seen, base_seen),
                             **{a: paired_change(bad_scores[a], base_scores[a]) for a in ASPECTS}})

    # SynthArt's own range: its renderer's worst noise / blur against the same clean base, at 64 px
    if 64 not in clean_scored:
        base = clean_paintings(seed, n, 64)
        clean_scored[64] = (base, score_images(scorer, base, batch_size))
    base, base_scores = clean_scored[64]
    synthart = {}
    for field, other in (("clean", "sharpness"), ("sharpness", "clean")):
        worst = np.stack([render_painting(seed, i, 64, **{field: 0.0, other: 1.0}) for i in range(n)])
        worst_scores = score_images(scorer, worst, batch_size)
        synthart[field] = {"rms_drawn": _rms(worst, base),
                           **{a: paired_change(worst_scores[a], base_scores[a]) for a in ASPECTS}}
    return {"n": n, "seed": seed, "sizes": list(sizes), "aspects": list(ASPECTS), "perceived_se": PERCEIVED_SE,
            "strengths": {k: [float(v) for v in vs] for k, vs in strengths.items()},
            "clean": clean_means, "rows": rows, "synthart_range": synthart,
            "seconds": round(time.perf_counter() - t0, 1)}


# ---------------------------------------------------------------------------- outputs
def _strength_label(kind: str, strength: float, size: int) -> str:
    if kind == "noise":
        return f"sd {strength:g}"
    if kind == "blur":
        return f"sigma {strength:g} ({strength * size:.2g} px)"
    return f"quality {int(strength)}"


def _cell(change: dict) -> str:
    return f"{change['change']:+.3f} ± {change['se']:.3f}" + (" **yes**" if change["perceived"] else " no")


def format_table(result: dict) -> str:
    """The result as markdown: one row per cell, then SynthArt's range."""
    head = ("| kind | strength | size | RMS drawn | RMS seen | Δ overall ± SE, perceived | "
            "Δ technical ± SE, perceived |\n|---|---|---|---|---|---|---|")
    lines = [f"n = {result['n']} paintings per cell (seed {result['seed']}); perceived: "
             f"|Δ| >= {result['perceived_se']:g} SE; clean mean score (overall / technical) by size: "
             + ", ".join(f"{s} px {c['overall']:.2f} / {c['technical_execution']:.2f}"
                         for s, c in result["clean"].items()), "", head]
    for r in result["rows"]:
        lines.append(f"| {r['kind']} | {_strength_label(r['kind'], r['strength'], r['size'])} | {r['size']} | "
                     f"{r['rms_drawn']:.4f} | {r['rms_seen']:.4f} | {_cell(r['overall'])} | "
                     f"{_cell(r['technical_execution'])} |")
    for field, r in result["synthart_range"].items():
        worst = f"sd {MAX_NOISE:g}" if field == "clean" else f"sigma {MAX_BLUR:g}"
        lines.append(f"| SynthArt {field} 1 → 0 | {worst} | 64 | {r['rms_drawn']:.4f} | {r['rms_drawn']:.4f} | "
                     f"{_cell(r['overall'])} | "
                     f"{_cell(r['technical_execution'])} |")
    return "\n".join(lines)


def _sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sizes must be a comma list of integers, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=64, help="paintings per cell")
    p.add_argument("--sizes", type=_sizes, default=DEFAULT_SIZES, help="drawn sizes, comma list (default 64,128,256)")
    p.add_argument("--seed", type=int, default=6000, help="SynthArt seed (unseen by the shipped scorer)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", default=None, help="folder for bench_degradations.json (default: print only)")
    args = p.parse_args(argv)
    result = run_bench(n=args.n, sizes=args.sizes, seed=args.seed, batch_size=args.batch_size)
    print(format_table(result))
    if args.out:
        from artquant_core.records import write_json_atomic

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        print(f"wrote {write_json_atomic(out / 'bench_degradations.json', result, indent=2)}")
    print(f"{result['seconds']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
