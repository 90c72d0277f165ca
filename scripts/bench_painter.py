"""Benchmark the painter (the tiny SD trained on SynthArt) against SynthArt itself.

    python -m scripts.bench_painter --painter DIR [--n 256] [--seed 5000] [--steps 20] [--guidance 3.0] [--out DIR]

What is measured, all at 64 px on ``n`` images:

* **reference**: the SynthArt paintings of an unseen seed ``--seed`` (``synth_item(seed, i)``, i < n);
* **painter**: the painter's samples for the *captions* of those same paintings (DDIM ``--steps``
  steps, classifier-free guidance ``--guidance``, fixed initial noise drawn from a
  ``torch.Generator`` seeded with ``--noise-seed``, so a rerun gives the same images);
* **floor**: the SynthArt paintings of another unseen seed ``--floor-seed`` (default ``seed + 1``):
  the Fréchet distance two independent draws of the true distribution have at this ``n``
  (FD is biased upwards at small ``n``; comparing against the floor at the same ``n`` removes most of it);
* **vae_reconstruction**: the floor paintings encoded and decoded by the painter's own VAE: the
  distance no sampler can beat with that autoencoder (what its latents cannot hold, e.g. pixel noise);
* **random_init**: the random-init tiny SD (``build_tiny_sd(pretrained=False)``), same captions and sampler:
  the score of a painter that learnt nothing.

For each set: the Fréchet distance of its :func:`image_features` to the reference's, the ratio
FD / FD(floor) (1 = indistinguishable from SynthArt by these features), the shipped scorer's mean
score, the main-shape accuracy (does the painting show the shape its caption names? a small CNN trained
on SynthArt of another seed tells, :mod:`scripts.shape_classifier`; SynthArt's own rows are its ceiling,
0.25 is chance), the per-channel contrast (mean over images of each channel's pixel std) and the grain
(:func:`grain`: pixel noise; its spread over a set is SynthArt's variety of noise). Writes
``bench_painter.json`` and ``bench_painter_grid.png`` (painter sample beside the SynthArt painting
of the same caption, with the caption) into ``--out`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

THUMB = 4  # thumbnail side of the colour-layout feature
FEATURE_NAMES = ([f"thumb_{c}_{y}_{x}" for y in range(THUMB) for x in range(THUMB) for c in "rgb"]
                 + [f"std_{c}" for c in "rgb"] + [f"grad_{c}" for c in "rgb"])
FEATURE_DIM = len(FEATURE_NAMES)  # 4*4*3 + 3 + 3 = 54
SET_NAMES = ("reference", "floor", "vae_reconstruction", "painter", "random_init")
COMPARED = SET_NAMES[1:]  # the sets measured against the reference
FEATURE_GROUPS = {"thumb": slice(0, 3 * THUMB * THUMB), "std": slice(3 * THUMB * THUMB, 3 * THUMB * THUMB + 3),
                  "grad": slice(3 * THUMB * THUMB + 3, FEATURE_DIM)}


# ---------------------------------------------------------------------------- features and FD
def _as_unit_nhwc(images) -> np.ndarray:
    """``(N, H, W, 3)`` float64 in [0, 1] from uint8 (N, H, W, 3) / (N, 3, H, W) arrays or tensors
    (uint8 is divided by 255; float input is taken to be in [0, 1] already)."""
    array = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
    if array.ndim != 4:
        raise ValueError(f"expected a batch of images (N, H, W, 3) or (N, 3, H, W), got shape {array.shape}")
    if array.shape[-1] != 3 and array.shape[1] == 3:
        array = array.transpose(0, 2, 3, 1)
    if array.shape[-1] != 3:
        raise ValueError(f"expected 3 colour channels, got shape {array.shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float64) / 255.0
    return array.astype(np.float64)


def image_features(images) -> np.ndarray:
    """``(N, 54)`` float64 features of a batch of RGB images (pixels scaled to [0, 1]).

    * ``thumb_*`` (48): a 4x4 colour thumbnail, each cell the area average of its block of pixels
      (the layout: sky / ground colours, where the shapes are); H and W must be multiples of 4;
    * ``std_*`` (3): each channel's pixel standard deviation over the image (contrast);
    * ``grad_*`` (3): each channel's mean absolute finite difference, horizontal and vertical
      averaged (edge density / texture / sharpness: blur lowers it, noise raises it).
    """
    x = _as_unit_nhwc(images)
    n, h, w, _ = x.shape
    if h % THUMB or w % THUMB:
        raise ValueError(f"image size {h}x{w} is not a multiple of {THUMB}")
    thumb = x.reshape(n, THUMB, h // THUMB, THUMB, w // THUMB, 3).mean(axis=(2, 4)).reshape(n, -1)
    std = x.std(axis=(1, 2))
    grad = 0.5 * (np.abs(np.diff(x, axis=1)).mean(axis=(1, 2)) + np.abs(np.diff(x, axis=2)).mean(axis=(1, 2)))
    return np.concatenate([thumb, std, grad], axis=1)


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and covariance ``(D, D)`` (unbiased, ``N - 1``) of ``(N, D)`` features."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"need (N >= 2, D) features, got shape {features.shape}")
    return features.mean(axis=0), np.atleast_2d(np.cov(features, rowvar=False))


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
    """Symmetric square root of a covariance (eigenvalues below 0 from round-off clipped to 0)."""
    vals, vecs = np.linalg.eigh(0.5 * (cov + cov.T))
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def frechet_distance_from_stats(mu1, cov1, mu2, cov2) -> float:
    """``|mu1 - mu2|^2 + tr(C1) + tr(C2) - 2 tr((C1 C2)^(1/2))``.

    ``tr((C1 C2)^(1/2))`` is computed as the sum of the square roots of the eigenvalues of the
    symmetric PSD matrix ``C1^(1/2) C2 C1^(1/2)`` (same spectrum as ``C1 C2``), so singular
    covariances (``N <= D``) are fine and no complex parts appear; tiny negative eigenvalues from
    round-off are clipped to 0, and the result is clipped at 0.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
    root1 = _psd_sqrt(cov1)
    middle = root1 @ cov2 @ root1
    eig = np.linalg.eigvalsh(0.5 * (middle + middle.T))
    trace_sqrt = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = mu1 - mu2
    return max(float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_sqrt), 0.0)


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance between the Gaussians fitted to two ``(N, D)`` feature sets."""
    return frechet_distance_from_stats(*feature_stats(features_a), *feature_stats(features_b))


def fd_breakdown(features: np.ndarray, reference_features: np.ndarray) -> dict:
    """Where a Fréchet distance comes from: its mean term ``|mu1 - mu2|^2`` and covariance term (the
    rest), and the distance of each feature group alone (``thumb`` colour layout, ``std`` contrast,
    ``grad`` edges / texture). The groups' distances do not add up to the whole (cross-covariances),
    but they say which property is off: a ``thumb`` mean term is a colour bias, a ``grad`` term
    missing noise or blur."""
    (mu1, cov1), (mu2, cov2) = feature_stats(features), feature_stats(reference_features)
    total = frechet_distance_from_stats(mu1, cov1, mu2, cov2)
    mean_term = float(((mu1 - mu2) ** 2).sum())
    return {"mean_term": mean_term, "covariance_term": max(0.0, total - mean_term),
            "groups": {name: frechet_distance(features[:, cols], reference_features[:, cols])
                       for name, cols in FEATURE_GROUPS.items()}}


def grain(images) -> np.ndarray:
    """``(N,)`` each image's grain: the root mean square of what a 3x3 box blur removes, averaged over the
    channels ([0, 1] scale). SynthArt's pixel noise dominates it (edges add a little); a decoder that smooths
    the noise away gives low values for every image, one that draws it spreads them as SynthArt does."""
    x = _as_unit_nhwc(images)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = x.shape[1:3]
    blurred = sum(padded[:, dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)) / 9.0
    return np.sqrt(((x - blurred) ** 2).mean(axis=(1, 2))).mean(axis=1)


def grain_summary(images) -> dict[str, float]:
    """Mean and 10th / 90th percentiles of :func:`grain` over a set (the spread is the variety of noise)."""
    values = grain(images)
    return {"mean": float(values.mean()), "p10": float(np.percentile(values, 10)),
            "p90": float(np.percentile(values, 90))}


def contrast(images) -> list[float]:
    """Per-channel contrast of a set: the mean over images of each channel's pixel std, [0, 1] scale."""
    return [float(v) for v in _as_unit_nhwc(images).std(axis=(1, 2)).mean(axis=0)]


# ---------------------------------------------------------------------------- data and sampling
def synthart_set(seed: int, n: int, size: int = 64) -> tuple[np.ndarray, list[str]]:
    """``(N, size, size, 3)`` uint8 SynthArt paintings of ``seed`` (indices 0..n-1) and their captions."""
    from artquant_core.synthart.dataset import synth_item

    items = [synth_item(seed, i, size) for i in range(n)]
    return np.stack([it["pixels"] for it in items]).astype(np.uint8), [it["caption"] for it in items]


def load_pipeline(path: str | Path, device: str = "cpu"):
    """``StableDiffusionPipeline.from_pretrained(path)`` with a DDIM scheduler and no progress bars."""
    import diffusers
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    diffusers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    try:
        import transformers

        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
    except ImportError:  # pragma: no cover - diffusers' SD pipeline needs transformers anyway
        pass
    pipe = StableDiffusionPipeline.from_pretrained(str(path), safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def vae_reconstruct(pipe, images_nhwc_uint8: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """``images`` encoded (posterior mean) and decoded by ``pipe.vae``; uint8 like the input."""
    import torch

    from alignment.painter_training import uint8_to_vae_input
    from artquant_core.images import float_to_uint8

    vae, out = pipe.vae, []
    with torch.no_grad():
        for start in range(0, len(images_nhwc_uint8), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images_nhwc_uint8[start:start + batch_size]))
            x = uint8_to_vae_input(batch).to(device=vae.device, dtype=vae.dtype)
            decoded = vae.decode(vae.encode(x).latent_dist.mean).sample.float().cpu()
            out.append(float_to_uint8((decoded / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).double()).numpy())
    return np.concatenate(out, axis=0)


def sample_painter(pipe, captions: list[str], steps: int = 20, guidance: float = 3.0, noise_seed: int = 0,
                   batch_size: int = 64, size: int = 64) -> np.ndarray:
    """``(N, size, size, 3)`` uint8 samples, one per caption (DDIM, eta 0, CFG ``guidance``).

    The initial latents of all N samples are drawn up front from a CPU ``torch.Generator``
    seeded with ``noise_seed`` and passed to the pipeline, so a sample depends only on its
    caption, its index and the seed, not on the batch size or the device's RNG.
    """
    import torch

    from artquant_core.images import float_to_uint8

    factor = pipe.vae_scale_factor
    if size % factor:
        raise ValueError(f"size {size} is not a multiple of the VAE factor {factor}")
    shape = (len(captions), pipe.unet.config.in_channels, size // factor, size // factor)
    latents = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(noise_seed), dtype=torch.float32)
    device, dtype = pipe.unet.device, pipe.unet.dtype
    out = []
    with torch.no_grad():
        for start in range(0, len(captions), batch_size):
            chunk = captions[start:start + batch_size]
            images = pipe(chunk, height=size, width=size, num_inference_steps=steps, guidance_scale=guidance,
                          eta=0.0, latents=latents[start:start + len(chunk)].to(device=device, dtype=dtype),
                          output_type="np").images
            out.append(float_to_uint8(torch.from_numpy(np.asarray(images, dtype=np.float64))).numpy())
    return np.concatenate(out, axis=0)


def nhwc_uint8_to_tensor(images_nhwc_uint8: np.ndarray):
    """A uint8 ``(N, H, W, 3)`` array as the uint8 ``(N, 3, H, W)`` tensor the scorer takes."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(images_nhwc_uint8)).permute(0, 3, 1, 2).contiguous()


def scorer_mean(scorer, images_nhwc_uint8: np.ndarray, batch_size: int = 100) -> float:
    """The scorer's mean score over a uint8 (N, H, W, 3) set (fed as a uint8 (N, 3, H, W) tensor)."""
    import torch

    with torch.no_grad():
        return float(scorer.score(nhwc_uint8_to_tensor(images_nhwc_uint8), batch_size=batch_size).score.float().mean())


def _painter_training_seed(painter: Path) -> int | None:
    summary = painter / "training_summary.json"
    if summary.is_file():
        try:
            return json.loads(summary.read_text()).get("data", {}).get("seed")
        except (ValueError, AttributeError):
            return None
    return None


# ---------------------------------------------------------------------------- the benchmark
def run_bench(painter: str | Path, n: int = 256, seed: int = 5000, steps: int = 20, guidance: float = 3.0,
              floor_seed: int | None = None, noise_seed: int = 0, random_init_seed: int = 0,
              random_init_dir: str | Path | None = None, batch_size: int = 64, device: str = "cpu",
              score: bool = True, size: int = 64, keep_images: bool = False, shapes: bool = True,
              shape_classifier=None) -> dict:
    """Run the benchmark (see the module docstring) and return the result dict.

    ``random_init_dir``: an existing random-init tiny SD folder (else one is built in a temp dir
    with ``build_tiny_sd(pretrained=False, seed=random_init_seed)``). ``score=False`` skips the
    shipped scorer (``scorer_mean`` is then ``None``; it is also ``None`` when the scorer is not shipped).
    ``keep_images``: also return the uint8 image sets and captions under ``"_images"`` / ``"_captions"``.
    ``shapes``: measure main-shape accuracy with a :mod:`scripts.shape_classifier` (``shape_classifier``,
    or one trained here with its defaults, ~45 s on one CPU core); ``shape_accuracy`` is ``None`` otherwise.
    """
    import torch

    painter = Path(painter)
    floor_seed = seed + 1 if floor_seed is None else floor_seed
    if floor_seed == seed:
        raise ValueError("floor_seed must differ from seed (the floor compares two independent draws)")
    if n < 2:
        raise ValueError("n must be at least 2 (covariances)")
    seconds: dict[str, float] = {}
    train_seed = _painter_training_seed(painter)
    seen = train_seed is not None and train_seed in (seed, floor_seed)
    if seen:
        print(f"warning: seed {seed}/{floor_seed} is the painter's training seed {train_seed}; "
              "the benchmark is meant for unseen seeds", file=sys.stderr)

    t = time.perf_counter()
    reference, captions = synthart_set(seed, n, size)
    floor_images, floor_captions = synthart_set(floor_seed, n, size)
    seconds["synthart"] = time.perf_counter() - t

    torch_threads = torch.get_num_threads()
    t = time.perf_counter()
    painter_pipe = load_pipeline(painter, device)
    painter_images = sample_painter(painter_pipe, captions, steps, guidance, noise_seed, batch_size, size)
    seconds["painter_sampling"] = time.perf_counter() - t
    reconstructed = vae_reconstruct(painter_pipe, floor_images, batch_size)

    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_painter_random_") as tmp:
        if random_init_dir is None:
            from alignment.tiny_sd import build_tiny_sd

            random_init_dir = build_tiny_sd(Path(tmp) / "random_init", seed=random_init_seed, pretrained=False)
        random_images = sample_painter(load_pipeline(random_init_dir, device), captions, steps, guidance,
                                       noise_seed, batch_size, size)
    seconds["random_init_sampling"] = time.perf_counter() - t

    sets = {"reference": reference, "floor": floor_images, "vae_reconstruction": reconstructed,
            "painter": painter_images, "random_init": random_images}
    feats = {k: image_features(v) for k, v in sets.items()}
    ref_stats = feature_stats(feats["reference"])
    fd = {k: frechet_distance_from_stats(*ref_stats, *feature_stats(feats[k])) for k in COMPARED}
    floor = fd["floor"]
    breakdown = {k: fd_breakdown(feats[k], feats["reference"]) for k in COMPARED}

    means: dict[str, float] | None = None
    if score:
        t = time.perf_counter()
        try:
            from artquant_core import build_tiny_scorer

            scorer = build_tiny_scorer().eval()
        except FileNotFoundError as err:
            print(f"warning: no shipped scorer ({err}); scorer means skipped", file=sys.stderr)
        else:
            scorer.to(device)
            means = {k: scorer_mean(scorer, sets[k]) for k in SET_NAMES}
        seconds["scoring"] = time.perf_counter() - t

    shape_result = None
    if shapes:
        t = time.perf_counter()
        shape_result = _shape_accuracies(sets, captions, floor_captions, shape_classifier)
        seconds["shapes"] = time.perf_counter() - t

    result = {
        "painter": str(painter), "n": n, "seed": seed, "floor_seed": floor_seed, "noise_seed": noise_seed,
        "steps": steps, "guidance": guidance, "size": size, "random_init_seed": random_init_seed,
        "painter_training_seed": train_seed, "seed_seen_in_training": seen,
        "features": {"dim": FEATURE_DIM, "names": FEATURE_NAMES,
                     "description": "4x4x3 area-average colour thumbnail, per-channel pixel std, "
                                    "per-channel mean |finite difference|; pixels in [0, 1]"},
        "fd": fd,
        "fd_ratio_to_floor": {k: (fd[k] / floor if floor > 0 else float("inf")) for k in COMPARED[1:]},
        "fd_breakdown": breakdown,
        "scorer_mean": means,
        "shape_accuracy": shape_result and {k: v["accuracy"] for k, v in shape_result["sets"].items()},
        "shape_accuracy_detail": shape_result,
        "contrast_rgb": {k: contrast(v) for k, v in sets.items()},
        "contrast_mean": {k: float(np.mean(contrast(v))) for k, v in sets.items()},
        "grain": {k: grain_summary(v) for k, v in sets.items()},
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "device": device, "torch_threads": torch_threads,
    }
    if keep_images:
        result["_images"], result["_captions"] = sets, captions
    return result


def _shape_accuracies(sets: dict[str, np.ndarray], captions: list[str], floor_captions: list[str],
                      classifier=None) -> dict:
    """Main-shape accuracy of every set: the shapes its images should show are those of the captions
    they were drawn for (the floor set and its VAE reconstructions: the floor seed's captions)."""
    from scripts import shape_classifier as sc

    settings = None
    if classifier is None:
        settings = {"train_seed": sc.TRAIN_SEED, "defaults": "train_shape_classifier()"}
        classifier = sc.train_shape_classifier()
    expected = {name: sc.shapes_of_captions(floor_captions if name in ("floor", "vae_reconstruction") else captions)
                for name in sets}
    return {"classifier": settings, "chance": 1.0 / len(sc.SHAPES),
            "sets": {name: sc.shape_accuracy(classifier, images, expected[name]) for name, images in sets.items()}}


# ---------------------------------------------------------------------------- outputs
def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width=width) or [""]


def sample_grid(painter_images: np.ndarray, reference_images: np.ndarray, captions: list[str],
                n_pairs: int = 8, scale: int = 2):
    """A PIL image: ``n_pairs`` rows, each the painter's sample, the SynthArt painting of the same
    caption (both upscaled ``scale``x, nearest) and the caption, wrapped, to their right."""
    from PIL import Image, ImageDraw, ImageFont

    n_pairs = min(n_pairs, len(captions))
    h, w = painter_images.shape[1:3]
    cell_h, cell_w, pad, text_w = h * scale, w * scale, 6, 330
    header = 16
    grid = Image.new("RGB", (2 * cell_w + 3 * pad + text_w, header + n_pairs * (cell_h + pad) + pad), "white")
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default()
    draw.text((pad, 2), "painter", fill="black", font=font)
    draw.text((2 * pad + cell_w, 2), "SynthArt", fill="black", font=font)
    draw.text((3 * pad + 2 * cell_w, 2), "caption", fill="black", font=font)
    for i in range(n_pairs):
        top = header + pad + i * (cell_h + pad)
        for j, img in enumerate((painter_images[i], reference_images[i])):
            tile = Image.fromarray(np.ascontiguousarray(img)).resize((cell_w, cell_h), Image.NEAREST)
            grid.paste(tile, (pad + j * (cell_w + pad), top))
        for k, line in enumerate(_wrap(f"{i}: {captions[i]}", 52)[: cell_h // 12]):
            draw.text((3 * pad + 2 * cell_w, top + k * 12), line, fill="black", font=font)
    return grid


def format_table(result: dict) -> str:
    """A plain-text table of the result."""
    means = result.get("scorer_mean") or {}
    fd, ratio = result["fd"], result["fd_ratio_to_floor"]
    lines = [f"painter {result['painter']}  n={result['n']} seed={result['seed']} floor_seed={result['floor_seed']} "
             f"steps={result['steps']} guidance={result['guidance']}",
             f"{'set':<19} {'FD vs ref':>10} {'/ floor':>8} {'scorer':>8} {'shape acc':>9} "
             f"{'contrast r,g,b (mean)':>30} {'grain p10/mean/p90':>20}"]
    shape_acc = result.get("shape_accuracy") or {}
    for name in SET_NAMES:
        fd_s = "-" if name == "reference" else f"{fd[name]:.4f}"
        ratio_s = f"{ratio[name]:.2f}" if name in ratio else ("1.00" if name == "floor" else "-")
        score_s = f"{means[name]:.3f}" if name in means else "-"
        c = result["contrast_rgb"][name]
        contrast_s = f"{c[0]:.3f},{c[1]:.3f},{c[2]:.3f} ({result['contrast_mean'][name]:.3f})"
        shape_s = f"{shape_acc[name]:.3f}" if name in shape_acc else "-"
        g = (result.get("grain") or {}).get(name)
        grain_s = f"{g['p10']:.3f}/{g['mean']:.3f}/{g['p90']:.3f}" if g else "-"
        lines.append(f"{name:<19} {fd_s:>10} {ratio_s:>8} {score_s:>8} {shape_s:>9} {contrast_s:>30} {grain_s:>20}")
    breakdown = result.get("fd_breakdown")
    if breakdown:
        lines.append(f"where the distance comes from:\n{'set':<19} {'mean term':>10} {'cov term':>10} "
                     + " ".join(f"{'FD ' + g:>10}" for g in FEATURE_GROUPS))
        for name, parts in breakdown.items():
            lines.append(f"{name:<19} {parts['mean_term']:>10.4f} {parts['covariance_term']:>10.4f} "
                         + " ".join(f"{parts['groups'][g]:>10.4f}" for g in FEATURE_GROUPS))
    return "\n".join(lines)


def write_outputs(result: dict, out: str | Path, n_pairs: int = 8) -> dict[str, str]:
    """``bench_painter.json`` (without the image arrays) and, when images were kept,
    ``bench_painter_grid.png`` + ``bench_painter_grid.txt`` (its captions) into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": str(out / "bench_painter.json")}
    public = {k: v for k, v in result.items() if not k.startswith("_")}
    images = result.get("_images")
    if images is not None:
        captions = result["_captions"]
        grid_path = out / "bench_painter_grid.png"
        sample_grid(images["painter"], images["reference"], captions, n_pairs).save(grid_path)
        k = min(n_pairs, len(captions))
        (out / "bench_painter_grid.txt").write_text(
            "rows: painter sample | SynthArt painting of the same caption\n"
            + "".join(f"{i}: {c}\n" for i, c in enumerate(captions[:k])))
        paths.update(grid=str(grid_path), grid_captions=str(out / "bench_painter_grid.txt"))
        public["grid_captions"] = captions[:k]
    public["outputs"] = paths
    Path(paths["json"]).write_text(json.dumps(public, indent=2) + "\n")
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--painter", required=True, help="a StableDiffusionPipeline folder (the painter)")
    p.add_argument("--n", type=int, default=256, help="images per set")
    p.add_argument("--seed", type=int, default=5000, help="unseen SynthArt seed: reference images and captions")
    p.add_argument("--floor-seed", type=int, default=None, help="second unseen seed for the floor (default seed+1)")
    p.add_argument("--noise-seed", type=int, default=0, help="seed of the initial latents")
    p.add_argument("--steps", type=int, default=20, help="DDIM steps")
    p.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance scale")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--random-init-seed", type=int, default=0)
    p.add_argument("--random-init-dir", default=None, help="an existing random-init tiny SD folder to use")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--no-score", action="store_true", help="skip the shipped scorer")
    p.add_argument("--no-shapes", action="store_true", help="skip the main-shape accuracy (its classifier trains "
                   "for ~45 s on one CPU core)")
    p.add_argument("--pairs", type=int, default=8, help="caption pairs in the sample grid")
    p.add_argument("--out", default=None, help="folder for bench_painter.json and the grid (default: the painter folder's "
                   "parent / bench_painter)")
    args = p.parse_args(argv)

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    painter = Path(args.painter)
    if not (painter / "model_index.json").is_file():
        p.error(f"{painter} is not a diffusers pipeline folder (no model_index.json)")
    result = run_bench(painter, n=args.n, seed=args.seed, steps=args.steps, guidance=args.guidance,
                       floor_seed=args.floor_seed, noise_seed=args.noise_seed, random_init_seed=args.random_init_seed,
                       random_init_dir=args.random_init_dir, batch_size=args.batch_size, device=device,
                       score=not args.no_score, keep_images=True, shapes=not args.no_shapes)
    out = Path(args.out) if args.out else painter.resolve().parent / "bench_painter"
    paths = write_outputs(result, out, args.pairs)
    print(format_table(result))
    print(f"wrote {paths['json']}" + (f" and {paths['grid']}" if "grid" in paths else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
