"""scripts/bench_painter.py: image features, Fréchet distance and the painter benchmark."""

import json
from pathlib import Path

import numpy as np
import pytest

from scripts.bench_painter import (FEATURE_DIM, FEATURE_NAMES, fd_breakdown, frechet_distance, image_features,
                                   main, run_bench)

SMOKE_PAINTER = Path("/tmp/painter_smoke/painter")
SHIPPED_PAINTER = Path(__file__).resolve().parents[1] / "alignment" / "pretrained" / "tiny_painter"


def _gaussian_features(seed: int, n: int = 400, d: int = 6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d))
    return rng.normal(size=(n, d)) @ mix


def test_features_shape_and_range():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 64, 64, 3), dtype=np.uint8)
    feats = image_features(images)
    assert feats.shape == (5, FEATURE_DIM) == (5, 54) and len(FEATURE_NAMES) == 54
    assert np.isfinite(feats).all() and feats.min() >= 0 and feats.max() <= 1
    # channel-first input and float [0, 1] input give the same features
    np.testing.assert_allclose(image_features(images.transpose(0, 3, 1, 2)), feats)
    np.testing.assert_allclose(image_features(images / 255.0), feats)
    # a flat image: thumbnail = its colour, no contrast, no gradient
    flat = np.zeros((1, 64, 64, 3), dtype=np.uint8) + np.array([255, 0, 51], dtype=np.uint8)
    f = image_features(flat)[0]
    np.testing.assert_allclose(f[:48].reshape(16, 3), np.tile([1.0, 0.0, 0.2], (16, 1)))
    np.testing.assert_allclose(f[48:], 0.0, atol=1e-12)


def test_frechet_distance_self_zero_symmetric_and_grows_with_shift():
    a, b = _gaussian_features(0), _gaussian_features(1)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-6)
    shifts = [frechet_distance(a, a + s) for s in (0.5, 1.0, 2.0)]
    # pure mean shift: FD = |shift|^2 * d exactly
    np.testing.assert_allclose(shifts, [0.25 * 6, 1.0 * 6, 4.0 * 6], rtol=1e-6)
    assert frechet_distance(a, 2.0 * a) > frechet_distance(a, 1.1 * a) > 0  # a scale change counts too


def test_breakdown_separates_a_colour_bias_from_missing_texture():
    rng = np.random.default_rng(4)
    reference = rng.normal(0.5, 0.1, size=(500, FEATURE_DIM))
    biased = reference.copy()
    biased[:, :48] += 0.05  # every thumbnail cell 0.05 brighter: a pure mean shift of the colour layout
    parts = fd_breakdown(biased, reference)
    assert parts["mean_term"] == pytest.approx(48 * 0.05 ** 2, rel=1e-6)
    assert parts["covariance_term"] == pytest.approx(0.0, abs=1e-8)
    assert parts["groups"]["thumb"] == pytest.approx(48 * 0.05 ** 2, rel=1e-6)
    assert parts["groups"]["std"] == pytest.approx(0.0, abs=1e-8) and parts["groups"]["grad"] == pytest.approx(0.0, abs=1e-8)
    flat = reference.copy()
    flat[:, 51:] = 0.5  # no texture variety at all: only the grad group's covariance is off
    parts = fd_breakdown(flat, reference)
    assert parts["groups"]["grad"] > 0.01 and parts["groups"]["thumb"] == pytest.approx(0.0, abs=1e-8)
    assert parts["covariance_term"] > parts["mean_term"]


def test_grain_follows_synthart_pixel_noise_and_its_variety():
    from artquant_core.synthart.dataset import synth_item
    from scripts.bench_painter import grain, grain_summary

    clean = np.stack([synth_item(4100, i, 64, {"clean": 1.0})["pixels"] for i in range(6)])
    noisy = np.stack([synth_item(4100, i, 64, {"clean": 0.0})["pixels"] for i in range(6)])
    assert grain(clean).max() < 0.05 < 0.1 < grain(noisy).min()  # MAX_NOISE 0.16: rms residual ~0.15
    assert np.all(grain(noisy) > grain(clean))
    flat = np.full((4, 64, 64, 3), 128, dtype=np.uint8)
    assert grain(flat).tolist() == [0.0] * 4
    mixed = grain_summary(np.concatenate([clean, noisy]))
    assert mixed["p10"] < 0.05 and mixed["p90"] > 0.1 and mixed["p10"] <= mixed["mean"] <= mixed["p90"]


def test_frechet_distance_singular_covariances():
    """n < d (as in a 16-image run with 54 features): finite, non-negative, ~0 against itself."""
    rng = np.random.default_rng(3)
    a, b = rng.random((16, 54)), rng.random((16, 54))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    fd = frechet_distance(a, b)
    assert np.isfinite(fd) and fd > 0
    assert fd == pytest.approx(frechet_distance(b, a), rel=1e-6)


def test_bench_runs_and_writes_outputs(tmp_path, monkeypatch):
    import scripts.shape_classifier as sc

    real_training = sc.train_shape_classifier  # the wiring is tested here, the classifier in its own tests
    monkeypatch.setattr(sc, "train_shape_classifier", lambda: real_training(n=64, steps=2))
    if (SMOKE_PAINTER / "model_index.json").is_file():
        painter = SMOKE_PAINTER
    else:
        from alignment.tiny_sd import build_tiny_sd

        painter = Path(build_tiny_sd(tmp_path / "painter", seed=1, pretrained=False))
    out = tmp_path / "bench"
    assert main(["--painter", str(painter), "--n", "16", "--steps", "2", "--out", str(out), "--device", "cpu"]) == 0
    result = json.loads((out / "bench_painter.json").read_text())
    for key in ("painter", "n", "seed", "floor_seed", "steps", "guidance", "features", "fd", "fd_ratio_to_floor",
                "scorer_mean", "contrast_rgb", "contrast_mean", "seconds"):
        assert key in result, key
    assert result["n"] == 16 and result["steps"] == 2 and result["features"]["dim"] == 54
    assert set(result["fd"]) == {"floor", "vae_reconstruction", "painter", "random_init"}
    assert set(result["contrast_rgb"]) == {"reference", "floor", "vae_reconstruction", "painter", "random_init"}
    assert all(len(v) == 3 for v in result["contrast_rgb"].values())
    assert set(result["grain"]) == set(result["contrast_rgb"])
    assert all(0 <= g["p10"] <= g["mean"] <= g["p90"] for g in result["grain"].values())
    if result["scorer_mean"] is not None:
        assert set(result["scorer_mean"]) == {"reference", "floor", "vae_reconstruction", "painter", "random_init"}
        assert all(np.isfinite(v) for v in result["scorer_mean"].values())
    fd = result["fd"]
    assert all(np.isfinite(v) and v >= 0 for v in fd.values())
    assert fd["random_init"] > fd["floor"]
    assert result["fd_ratio_to_floor"]["painter"] == pytest.approx(fd["painter"] / fd["floor"])
    for name, parts in result["fd_breakdown"].items():  # the two terms make up the whole distance
        assert parts["mean_term"] + parts["covariance_term"] == pytest.approx(fd[name], rel=1e-6, abs=1e-9)
        assert set(parts["groups"]) == {"thumb", "std", "grad"}
    assert (out / "bench_painter_grid.png").is_file() and len(result["grid_captions"]) == 8
    sets = {"reference", "floor", "vae_reconstruction", "painter", "random_init"}
    assert set(result["shape_accuracy"]) == sets and all(0 <= v <= 1 for v in result["shape_accuracy"].values())
    detail = result["shape_accuracy_detail"]
    assert detail["chance"] == 0.25 and detail["classifier"]["train_seed"] == sc.TRAIN_SEED
    for name in sets:  # 16 images per set, each counted once against its caption's shape
        assert sum(sum(row.values()) for row in detail["sets"][name]["confusion"].values()) == 16


def test_painter_fd_on_unseen_seed():
    """The shipped painter's samples, for captions of an unseen seed, are far closer to SynthArt
    (by the feature Fréchet distance) than the random-init pipeline's."""
    if not (SHIPPED_PAINTER / "model_index.json").is_file():
        pytest.skip(f"no shipped painter at {SHIPPED_PAINTER}")
    result = run_bench(SHIPPED_PAINTER, n=64, seed=5000, steps=10, guidance=3.0, score=False, shapes=False)
    assert not result["seed_seen_in_training"]
    fd = result["fd"]
    assert fd["painter"] < 0.5 * fd["random_init"], fd
    # the painter's own autoencoder loses less than its sampler: a reconstruction is nearer SynthArt
    assert fd["vae_reconstruction"] < fd["painter"], fd
    assert result["fd_breakdown"]["painter"]["groups"]["thumb"] > result["fd_breakdown"]["floor"]["groups"]["thumb"]
