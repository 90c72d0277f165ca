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
