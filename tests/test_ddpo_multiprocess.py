"""`accelerate launch --multi_gpu --num_processes 2 -m alignment.cli ddpo ...` on CPU (gloo) completes and gathers rewards."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from artquant_core.tracking import read_metrics

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_two_process_cpu_run_completes(tmp_path):
    accelerate = shutil.which("accelerate") or str(Path(sys.executable).parent / "accelerate")
    config = tmp_path / "ddpo.yaml"
    config.write_text(yaml.safe_dump({
        "num_epochs": 2, "sample_num_steps": 3, "sample_batch_size": 2, "sample_num_batches_per_epoch": 2,
        "train_batch_size": 2, "eval_every": 1, "eval_num_per_prompt": 1, "checkpoint_every": 1,
        "reward": "brightness", "eval_rewards": ["jpeg_compressibility"], "per_prompt_min_count": 2}))
    out = tmp_path / "run"
    # on a CPU-only machine accelerate starts several processes only with --multi_gpu (they use gloo)
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "-m", "alignment.cli", "ddpo", "--config", str(config), "--output_dir", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [r for r in read_metrics(out) if "reward_mean" in r]
    assert [r["epoch"] for r in rows] == [0, 1]
    assert [r["num_samples"] for r in rows] == [8, 8], rows  # both processes' rewards gathered
    final = [r for r in read_metrics(out) if r.get("epoch") == 2][-1]
    assert "eval_brightness_mean" in final and "eval_jpeg_compressibility_mean" in final
    assert (out / "checkpoint-2" / "pytorch_lora_weights.safetensors").is_file()
    assert '"reward_mean"' in proc.stdout  # the final summary line
