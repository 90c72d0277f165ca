"""scripts/bench_degradations.py: the degradations and a small run of the benchmark."""

import json
import math

import numpy as np
import pytest

from artquant_core.synthart.dataset import synth_item
from scripts.bench_degradations import ASPECTS, degrade, format_table, main, render_painting, run_bench


def _paintings(n: int = 3, size: int = 64) -> np.ndarray:
    return np.stack([render_painting(11, i, size, sharpness=1.0, clean=1.0) for i in range(n)])


def _gradient_energy(images: np.ndarray) -> float:
    x = images.astype(np.float64)
    return float((np.diff(x, axis=1) ** 2).mean() + (np.diff(x, axis=2) ** 2).mean())


def test_render_painting_without_overrides_is_synth_item():
    np.testing.assert_array_equal(render_painting(11, 2, 64), synth_item(11, 2, 64)["pixels"])


def test_strength_zero_is_identity():
    images = _paintings()
    for kind in ("noise", "blur", "jpeg"):
        np.testing.assert_array_equal(degrade(images, kind, 0), images)


def test_noise_has_the_given_sd():
    grey = np.full((4, 64, 64, 3), 128, dtype=np.uint8)  # mid-grey: no clipping
    noisy = degrade(grey, "noise", 0.05, np.random.default_rng(0))
    sd = (noisy.astype(np.float64) - 128).std() / 255.0
    assert sd == pytest.approx(0.05, rel=0.03)


def test_blur_lowers_gradient_energy():
    images = _paintings()
    blurred = degrade(images, "blur", 0.02)
    assert blurred.shape == images.shape and blurred.dtype == np.uint8
    assert _gradient_energy(blurred) < 0.8 * _gradient_energy(images)


def test_jpeg_changes_the_image_and_keeps_its_shape():
    images = _paintings()
    coded = degrade(images, "jpeg", 10)
    assert coded.shape == images.shape and coded.dtype == np.uint8
    assert np.abs(coded.astype(int) - images.astype(int)).mean() > 1.0


def test_bad_kind_names_it():
    with pytest.raises(ValueError, match="sharpen"):
        degrade(_paintings(1), "sharpen", 0.1)


def test_small_run_and_strong_noise_lowers_the_score(tmp_path):
    result = run_bench(n=4, sizes=(64,), seed=6000, strengths={"noise": (0.16,), "blur": (0.02,), "jpeg": (10,)})
    assert {"n", "seed", "sizes", "aspects", "clean", "rows", "synthart_range", "seconds"} <= set(result)
    assert len(result["rows"]) == 3 and set(result["synthart_range"]) == {"clean", "sharpness"}
    for row in result["rows"] + list(result["synthart_range"].values()):
        for aspect in ASPECTS:
            assert math.isfinite(row[aspect]["change"]) and math.isfinite(row[aspect]["se"])
    noise = next(r for r in result["rows"] if r["kind"] == "noise")
    # SynthArt's worst noise at the scorer's own size: every painting scores lower
    assert noise["overall"]["change"] < -1.0 and noise["technical_execution"]["change"] < -3.0
    assert noise["overall"]["perceived"]
    assert "| noise | sd 0.16 | 64 |" in format_table(result)
    json.dumps(result)  # JSON-ready as it is


def test_main_writes_json(tmp_path, capsys):
    assert main(["--n", "2", "--sizes", "64", "--out", str(tmp_path)]) == 0
    saved = json.loads((tmp_path / "bench_degradations.json").read_text())
    assert saved["n"] == 2 and len(saved["rows"]) == 12
    assert "SynthArt clean 1 → 0" in capsys.readouterr().out
