"""The shared learning-rate warm-up: linear over the first lr_warmup_steps updates, continued after a resume."""

import pytest

from alignment import DDPOConfig, DDPOTrainer
from alignment.run_setup import optimizer_updates_done
from tests.ddpo_helpers import Brightness, tiny_config


def test_negative_warmup_is_refused_naming_the_field(tmp_path):
    with pytest.raises(ValueError, match="lr_warmup_steps must be >= 0, got -1"):
        DDPOConfig(output_dir=str(tmp_path), lr_warmup_steps=-1)


def _train(out, sd, epochs, **kw) -> DDPOTrainer:
    trainer = DDPOTrainer(tiny_config(out, pretrained_model=sd, num_epochs=epochs, eval_every=0, eval_prompts=[],
                                      learning_rate=1e-3, lr_warmup_steps=8, **kw), reward=Brightness())
    trainer.train()
    return trainer


def test_warmup_rises_linearly_and_resumes_where_it_stopped(tmp_path):
    from alignment import build_tiny_sd

    sd = build_tiny_sd(tmp_path / "sd", pretrained=False)
    first = _train(tmp_path / "run", sd, epochs=1)
    done = optimizer_updates_done(first.setup.optimizer)
    assert 1 <= done < 8  # two micro-batches per epoch, one update each
    # the last update used rate * done / warmup (the n-th update gets n / warmup of the rate)
    assert first.setup.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * done / 8)
    resumed = _train(tmp_path / "run", sd, epochs=2, resume_from="latest")
    assert optimizer_updates_done(resumed.setup.optimizer) == 2 * done  # the count came back with the checkpoint
    assert resumed.setup.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 2 * done / 8)
    # without warm-up every update uses the full rate
    plain = DDPOTrainer(tiny_config(tmp_path / "plain", pretrained_model=sd, num_epochs=1, eval_every=0,
                                    eval_prompts=[], learning_rate=1e-3), reward=Brightness())
    plain.train()
    assert plain.setup.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)


def test_schedule_values():
    from alignment.lr_schedule import linear_warmup_factor, warmup_cosine_rate

    assert [linear_warmup_factor(n, 4) for n in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert linear_warmup_factor(0, 0) == 1.0
    # the painter's stages: warm-up 2 of 10 steps to 1e-3, then a half cosine to 5% of it, held after
    rates = [warmup_cosine_rate(step, 1e-3, 2, 10) for step in range(12)]
    assert rates[:3] == pytest.approx([5e-4, 1e-3, 1e-3])
    assert rates[6] == pytest.approx(1e-3 * (0.05 + 0.95 * 0.5))  # half-way down the cosine
    assert rates[10] == rates[11] == pytest.approx(5e-5)
    assert all(a >= b for a, b in zip(rates[1:], rates[2:]))
