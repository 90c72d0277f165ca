"""A DDPO run killed with SIGKILL and resumed from its latest checkpoint ends with the same weights."""

import sys

import pytest

from artquant_core.tracking import read_metrics
from tests.kill_resume import assert_kill_9_resume_is_exact

# argv: OUT SD [--num_epochs N] [--resume_from latest] (the flags tests.kill_resume passes)
SCRIPT = """
import argparse
from alignment import DDPOTrainer
from tests.ddpo_helpers import Brightness, tiny_config
parser = argparse.ArgumentParser()
parser.add_argument("out"); parser.add_argument("sd")
parser.add_argument("--num_epochs", type=int, default=3); parser.add_argument("--resume_from", default=None)
args = parser.parse_args()
cfg = tiny_config(args.out, pretrained_model=args.sd, num_epochs=args.num_epochs, eval_every=2, checkpoint_every=1,
                  train_num_inner_epochs=2, learning_rate=3e-3, clip_range=0.1, resume_from=args.resume_from)
DDPOTrainer(cfg, reward=Brightness()).train()
"""


@pytest.mark.slow
def test_kill_9_then_resume_matches_uninterrupted_run(tmp_path):
    from alignment import build_tiny_sd

    sd = build_tiny_sd(tmp_path / "sd", pretrained=False)
    script = tmp_path / "run_ddpo.py"
    script.write_text(SCRIPT)
    # the whole run and the killed one side by side; the final LoRA tensors must be bit-equal
    killed = assert_kill_9_resume_is_exact(lambda out, *extra: [sys.executable, str(script), str(out), sd, *extra],
                                           tmp_path, epochs=3, kill_after=1)
    # the resumed metrics log continues without duplicate epochs
    epochs = [r["epoch"] for r in read_metrics(killed) if "reward_mean" in r]
    assert epochs == [0, 1, 2]
    full = [r["reward_mean"] for r in read_metrics(tmp_path / "whole") if "reward_mean" in r]
    resumed = [r["reward_mean"] for r in read_metrics(killed) if "reward_mean" in r]
    assert full == pytest.approx(resumed, abs=1e-6)
