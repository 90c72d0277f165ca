"""A DDPO run killed with SIGKILL and resumed from its latest checkpoint ends with the same weights."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from artquant_core.tracking import read_metrics

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys
from alignment import DDPOTrainer
from tests.ddpo_helpers import Brightness, tiny_config
out, sd, resume = sys.argv[1], sys.argv[2], sys.argv[3]
cfg = tiny_config(out, pretrained_model=sd, num_epochs=3, eval_every=2, checkpoint_every=1,
                  train_num_inner_epochs=2, learning_rate=3e-3, clip_range=0.1,
                  resume_from=None if resume == "none" else resume)
DDPOTrainer(cfg, reward=Brightness()).train()
"""


def _run(script, *args, wait=True):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(script), *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if wait:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()[-3000:]
    return proc


@pytest.mark.slow
def test_kill_9_then_resume_matches_uninterrupted_run(tmp_path):
    from alignment import build_tiny_sd

    sd = build_tiny_sd(tmp_path / "sd", pretrained=False)
    script = tmp_path / "run_ddpo.py"
    script.write_text(SCRIPT)
    full = _run(script, tmp_path / "full", sd, "none", wait=False)  # side by side with the killed run
    try:
        killed = tmp_path / "killed"
        proc = _run(script, killed, sd, "none", wait=False)
        deadline = time.time() + 600
        while not (killed / "checkpoint-1").is_dir():
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.time() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (killed / "checkpoint-3").exists()
        _, err = full.communicate(timeout=600)
        assert full.returncode == 0, err.decode()[-3000:]
    finally:
        if full.poll() is None:
            full.kill()
            full.wait()
    _run(script, killed, sd, "latest")

    a = load_file(str(tmp_path / "full" / "checkpoint-3" / "unet_lora_peft.safetensors"))
    b = load_file(str(killed / "checkpoint-3" / "unet_lora_peft.safetensors"))
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    # the resumed metrics log continues without duplicate epochs
    epochs = [r["epoch"] for r in read_metrics(killed) if "reward_mean" in r]
    assert epochs == [0, 1, 2]
    full = [r["reward_mean"] for r in read_metrics(tmp_path / "full") if "reward_mean" in r]
    resumed = [r["reward_mean"] for r in read_metrics(killed) if "reward_mean" in r]
    assert full == pytest.approx(resumed, abs=1e-6)
