"""Kill a training command with SIGKILL after a checkpoint, resume it, and compare with an uninterrupted run.

Both runs are subprocesses with the same environment: a different thread count changes the float reduction
order, so only like-for-like runs are bit-equal.
"""

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]


def subprocess_env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), WANDB_MODE="disabled")


def assert_kill_9_resume_is_exact(cli: Callable[..., list[str]], tmp_path: Path, epochs: int = 4,
                                  kill_after: int = 2) -> Path:
    """``cli(out_dir, *extra) -> argv`` of a run writing ``checkpoint-N`` each epoch.

    Runs it whole and, side by side (one thread each), again, killed once ``checkpoint-{kill_after}``
    exists, then resumed with ``--resume_from latest``; asserts the final LoRA tensors are bit-equal.
    Returns the resumed run's folder.
    """
    n = str(epochs)
    whole = subprocess.Popen(cli(tmp_path / "whole", "--num_epochs", n), env=subprocess_env(), cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        out = tmp_path / "killed"
        proc = subprocess.Popen(cli(out, "--num_epochs", n), env=subprocess_env(), cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while not (out / f"checkpoint-{kill_after}").is_dir() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (out / f"checkpoint-{epochs}").exists(), "the run finished before it was killed"
        _, whole_err = whole.communicate(timeout=600)
    finally:
        if whole.poll() is None:
            whole.kill()
            whole.wait()
    assert whole.returncode == 0, whole_err[-2000:]
    done = subprocess.run(cli(out, "--num_epochs", n, "--resume_from", "latest"), env=subprocess_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    a = load_file(str(tmp_path / "whole" / f"checkpoint-{epochs}" / "unet_lora_peft.safetensors"))
    b = load_file(str(out / f"checkpoint-{epochs}" / "unet_lora_peft.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    return out
