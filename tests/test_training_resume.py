"""Resume after a real SIGKILL — mid-run and mid-checkpoint-write — ends on the uninterrupted run's weights."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import torch

from tests._training_fixtures import make_setup, run_child, run_training, train_args

pytestmark = pytest.mark.slow

CHILD = """
import os, signal, sys, time
from transformers import TrainerCallback
from artquant_core.config import parse_config
from artquant_core.training import ScorerTrainingConfig, train_scorer
from artquant_core.training.trainer import ScorerTrainer

argv = {argv!r}
mode, at_step = {mode!r}, {at_step!r}

class Slow(TrainerCallback):  # gives the parent time to kill between steps; no effect on the numbers
    def on_step_end(self, args, state, control, **kw):
        if state.global_step >= at_step:
            time.sleep(0.5)

if mode == "die_mid_write":
    original = ScorerTrainer._save_rng_state
    def dying(self, output_dir):
        if self.state.global_step == at_step:
            os.kill(os.getpid(), signal.SIGKILL)  # model + optimizer written, RNG state not yet
        return original(self, output_dir)
    ScorerTrainer._save_rng_state = dying
train_scorer(parse_config(ScorerTrainingConfig, argv), callbacks=[Slow()] if mode == "slow" else None)
"""


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from artquant_core.scorer import ArtQuantScorer

    return ArtQuantScorer.from_pretrained(folder).model.state_dict()


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst <= 1e-6, worst


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return make_setup(tmp_path_factory.mktemp("resume"))


@pytest.fixture(scope="module")
def reference(setup, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "out"
    run_training(setup, out, max_steps=8, eval_steps=4)
    return _weights(out)


def _resume(setup, out: Path) -> None:
    run_training(setup, out, resume=True, max_steps=8, eval_steps=4)


def test_sigkill_mid_run_then_resume_matches_uninterrupted(setup, reference, tmp_path):
    out = tmp_path / "out"
    argv = train_args(setup, out, max_steps=8, eval_steps=4)
    child = run_child(CHILD.format(argv=argv, mode="slow", at_step=3), wait=False)
    deadline = time.time() + 600
    while not (out / "checkpoint-4").is_dir():
        assert child.poll() is None, child.stdout.read()[-3000:]
        assert time.time() < deadline
        time.sleep(0.1)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    assert not (out / "checkpoint-8").exists()
    _resume(setup, out)
    _assert_same(_weights(out), reference)


def test_sigkill_while_writing_a_checkpoint_never_picks_it(setup, reference, tmp_path):
    from artquant_core.checkpoint import latest_checkpoint

    out = tmp_path / "out"
    argv = train_args(setup, out, max_steps=8, eval_steps=4)
    result = run_child(CHILD.format(argv=argv, mode="die_mid_write", at_step=6))
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    assert (out / ".staging" / "checkpoint-6").is_dir()  # the half-written one
    assert not (out / "checkpoint-6").exists()
    assert latest_checkpoint(out) == out / "checkpoint-4"
    _resume(setup, out)
    assert not (out / ".staging").exists()
    _assert_same(_weights(out), reference)
