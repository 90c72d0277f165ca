"""scripts/gpu_figures.sh: the GPU session's one prepared call, run here at tiny sizes through the same code
(the figures themselves are taken on a GPU machine; docs/performance.md)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def test_small_run_takes_every_figure_through_the_real_code_paths(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "OMP_NUM_THREADS": "1"}
    out = tmp_path / "figures"
    done = subprocess.run(["bash", "scripts/gpu_figures.sh", "small", str(out), "--epochs", "2", "--repeats", "1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads((out / "gpu_figures.json").read_text())
    assert figures["small"] is True and figures["device"] == "cpu"
    reward = figures["reward_sdpa"]
    assert reward["images_per_s"] > 0 and reward["peak_memory_mib"] > 0 and reward["gradient_checkpointing"]
    assert reward["batch"] == 8 and reward["image_size"] == 64
    ddpo = figures["ddpo_ours"]
    assert ddpo["trajectories_per_s"] > 0 and len(ddpo["epoch_s"]) == 2
    assert ddpo["settings"]["sample_eta"] == 1.0 and ddpo["settings"]["guidance_scale"] == 5.0
    # no trl in the toolkit's environment: the peer row is skipped, not failed
    assert figures["ddpo_trl"] is None or figures["ddpo_trl"]["trajectories_per_s"] > 0


def test_real_sizes_need_a_gpu_and_usage_is_named(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    done = subprocess.run([sys.executable, "-m", "scripts.gpu_figures", "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 2 and "--small" in done.stderr
    done = subprocess.run(["bash", "scripts/gpu_figures.sh", "nonsense"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "usage" in done.stderr


def test_the_architectures_have_the_real_models_sizes():
    """Built on the meta device: parameter counts without allocating them."""
    from alignment.tiny_sd import sd15_architecture, unet_from_architecture
    from artquant_core.tiny import build_tiny_scorer
    from scripts.gpu_figures import qwen2_5_vl_7b_sizes

    arch = sd15_architecture()
    assert arch.latent_size == 64 and arch.resolution == 512
    with torch.device("meta"):
        unet = unet_from_architecture(arch)
        scorer = build_tiny_scorer(seed=0, pretrained=False, config=qwen2_5_vl_7b_sizes())
    assert sum(p.numel() for p in unet.parameters()) == 859_520_964  # SD 1.5's UNet
    # Qwen2.5-VL-7B is 8.29 B with its 152k-token vocabulary; the local tokenizer's embeddings are smaller
    assert 7.1e9 < sum(p.numel() for p in scorer.model.parameters()) < 7.3e9


def test_painter_mode_trains_to_its_time_limit_then_measures_caption_use_and_quality(tmp_path):
    """The GPU painter experiment's one call, at tiny sizes: the UNet stops at its time limit with a checkpoint,
    and its EMA is measured by caption_use and bench_painter into OUT (files the device tool brings back)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "OMP_NUM_THREADS": "1", "PAINTER_RUN": str(tmp_path / "run"), "PAINTER_N_IMAGES": "16",
           "CAPTION_N": "4", "BENCH_N": "4", "BENCH_ARGS": "--no-score --no-shapes"}
    out = tmp_path / "out"
    # 0.001 minutes: over before the first UNet step ends, so the stage stops after it; 6 steps were asked for
    done = subprocess.run(["bash", "scripts/gpu_figures.sh", "painter", str(out), "0.001", "6", "2"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "stopped in the UNet stage at step 1" in (out / "pretrain.log").read_text()
    assert (tmp_path / "run" / "unet_stage" / "checkpoint-1").is_dir()
    assert not (tmp_path / "run" / "painter").exists()
    rows = [json.loads(line) for line in (out / "painter_metrics.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["step"]) for r in rows] == [("unet", 1)]
    use = json.loads((out / "caption_use.json").read_text())
    assert use["n"] == 4 and {"main_shape", "main_colour", "empty"} <= use["increase"].keys()
    bench = json.loads((out / "bench" / "bench_painter.json").read_text())
    assert bench["n"] == 4 and bench["fd"]["painter"] > 0
    assert (out / "bench" / "bench_painter_grid.png").is_file()
    assert len([p for p in out.rglob("*") if p.is_file()]) <= 8  # the device tool brings back at most 8 files
