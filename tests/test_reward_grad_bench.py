"""The DDPO peer benchmark's bookkeeping (no timing assertions; the benchmark itself is scripts/bench_ddpo.py)."""

import ast
from pathlib import Path

import pytest

from scripts.bench_ddpo import OUR_SETTINGS, summarize

ROOT = Path(__file__).resolve().parents[1]


def _run(name, epoch_s, rss):
    return {"name": name, "peak_rss_mib": rss, "setup_rss_mib": rss - 50,
            "epochs": [{"epoch": i, "epoch_s": s, "samples_per_s": 8 / s, "sample_s": s / 3, "train_s": 2 * s / 3}
                       for i, s in enumerate(epoch_s)]}


def test_summary_drops_warm_up_epochs_and_takes_median_and_peak():
    s = summarize([_run("x", [100.0, 4.0, 2.0], 500.0), _run("x", [50.0, 8.0, 4.0], 520.0)])
    assert s["steady_epochs"] == 4
    assert s["samples_per_s"] == pytest.approx(2.0)  # median of 2, 4, 1, 2 samples/s
    assert s["epoch_s"] == pytest.approx(4.0)
    assert s["peak_rss_mib"] == 520.0 and s["setup_rss_mib"] == 470.0
    with pytest.raises(ValueError, match="2 epochs"):
        summarize([_run("x", [3.0], 1.0)])


def test_comparison_settings_are_the_documented_ones():
    expected = dict(sample_num_steps=10, sample_eta=1.0, guidance_scale=5.0, sample_batch_size=4,
                    sample_num_batches_per_epoch=2, train_batch_size=2, train_num_inner_epochs=1,
                    train_timestep_fraction=1.0, learning_rate=3e-4, lora_rank=4, use_lora=True,
                    mixed_precision="no", reward="brightness", per_prompt_stat_tracking=False)
    assert {k: OUR_SETTINGS[k] for k in expected} == expected
    from alignment import DDPOConfig

    DDPOConfig(**OUR_SETTINGS).validate()  # every key is a real field and the batch sizes divide


def test_peer_runner_imports_nothing_from_the_toolkit():
    tree = ast.parse((ROOT / "scripts" / "peer_ddpo_runner.py").read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not modules & {"alignment", "reward", "artquant_core", "scripts"}
    assert "trl" in modules
