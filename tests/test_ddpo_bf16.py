"""``mixed_precision: bf16`` on a CPU: the UNet and VAE run under bf16 autocast, while the recorded
log-probabilities, the images handed to the reward and the loss stay float32 (docs/performance.md)."""

import math

import pytest
import torch
from accelerate.state import AcceleratorState

from alignment import DDPOTrainer
from artquant_core.tracking import read_metrics
from tests.ddpo_helpers import tiny_config


class DtypeRecordingBrightness:
    """Brightness that remembers the dtype of every batch it was given."""

    name = "brightness"
    differentiable = True

    def __init__(self):
        self.dtypes = []

    def __call__(self, images, prompts=None):
        self.dtypes.append(images.dtype)
        return images.float().mean(dim=(1, 2, 3))


@pytest.fixture
def fresh_accelerator_state():
    """accelerate keeps one AcceleratorState per process and refuses a second mixed-precision setting:
    reset it around each run so that this test and the ones after it start clean."""
    AcceleratorState._reset_state()
    yield
    AcceleratorState._reset_state()


def _train(out, mixed_precision):
    AcceleratorState._reset_state()
    reward = DtypeRecordingBrightness()
    trainer = DDPOTrainer(tiny_config(out, mixed_precision=mixed_precision, eval_every=0, checkpoint_every=0),
                          reward=reward)
    samples, _ = trainer.sample(0)
    trainer.train()
    return reward, samples, [r for r in read_metrics(out) if "reward_mean" in r]


def test_bf16_autocast_on_cpu_keeps_log_probs_rewards_and_loss_in_float32(tmp_path, fresh_accelerator_state):
    reward, samples, rows = _train(tmp_path / "bf16", "bf16")
    assert samples["log_probs"].dtype == torch.float32 and torch.isfinite(samples["log_probs"]).all()
    assert set(reward.dtypes) == {torch.float32}, reward.dtypes
    assert [r["epoch"] for r in rows] == [0, 1]
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["approx_kl"]) for r in rows)
    # same seeds and noise as a float32 run: bf16 rounding moves the images, not what they are
    _, samples32, rows32 = _train(tmp_path / "fp32", "no")
    assert abs(rows[0]["reward_mean"] - rows32[0]["reward_mean"]) < 0.02, (rows[0], rows32[0])
    assert (samples["log_probs"] - samples32["log_probs"]).abs().max() < 1.0
