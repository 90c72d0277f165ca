"""Learning signal: DDPO with the brightness reward raises it on the tiny default within 10 epochs."""

import pytest

from alignment import DDPOTrainer
from artquant_core.config import parse_config
from alignment import DDPOConfig
from artquant_core.tracking import read_metrics


@pytest.mark.slow
def test_brightness_rises_within_ten_epochs(tmp_path):
    cfg = parse_config(DDPOConfig, ["--config", "configs/ddpo_tiny.yaml", "--output_dir", str(tmp_path / "run"),
                                    "--eval_rewards", "brightness", "--checkpoint_every", "0"])
    assert cfg.reward == "brightness" and cfg.num_epochs == 10
    DDPOTrainer(cfg).train()
    rows = read_metrics(tmp_path / "run")
    train = [r for r in rows if "reward_mean" in r]
    evals = [r["eval_brightness_mean"] for r in rows if "eval_brightness_mean" in r]
    first, last3 = train[0], sum(r["reward_mean"] for r in train[-3:]) / 3
    # the last epochs' mean reward sits well above the first epoch's spread
    assert last3 - first["reward_mean"] > 1.5 * first["reward_std"], [r["reward_mean"] for r in train]
    # and the held-out prompts (fixed seeds) agree
    assert evals[-1] - evals[0] > 0.01, evals
