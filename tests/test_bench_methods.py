"""scripts.bench_methods' bookkeeping: the net gain against the control, per sample and per CPU-minute."""

import pytest

from scripts.bench_methods import METHODS, summarize


def _row(method, reward, seed, change, samples=400, cpu=2.0, judge=None):
    row = {"method": method, "reward": reward, "seed": seed, "change": change, "samples": samples, "cpu_min": cpu}
    if judge is not None:
        row["judge_change"] = judge
    return row


def test_net_gain_subtracts_the_controls_mean_and_normalises_by_cost():
    rows = [_row("ddpo", "artquant", 0, 0.03, judge=0.01), _row("ddpo", "artquant", 1, 0.05, judge=0.02),
            _row("ddpo", "random (control)", 0, 0.01), _row("ddpo", "random (control)", 1, -0.01),
            _row("reward_grad", "artquant", 0, 0.14, samples=160, cpu=2.2)]
    ddpo, grad = summarize(rows)
    assert ddpo["gain"] == pytest.approx(0.04) and ddpo["control_gain"] == pytest.approx(0.0)
    assert ddpo["net_gain"] == pytest.approx(0.04) and ddpo["gain_spread"] == pytest.approx(0.01)
    assert ddpo["net_gain_per_1k_samples"] == pytest.approx(0.1) and ddpo["net_gain_per_cpu_min"] == pytest.approx(0.02)
    assert ddpo["judge_change"] == pytest.approx(0.015) and ddpo["seeds"] == 2
    assert grad["control_gain"] is None and grad["net_gain"] == pytest.approx(0.14)  # no control run: gain as is


def test_every_method_has_a_preset_its_config_accepts():
    from pathlib import Path

    import alignment
    from artquant_core.config import parse_config

    root = Path(__file__).resolve().parents[1]
    for method in METHODS.values():
        cfg = parse_config(getattr(alignment, method.config_cls), ["--config", str(root / method.preset)])
        assert method.samples_per_epoch(cfg) > 0, method.name


def test_resumed_runs_count_for_the_gain_but_not_for_the_time():
    # a resumed run's CPU time covers only the epochs that invocation trained
    rows = [_row("dpo", "artquant", 0, 0.02, cpu=4.0), {**_row("dpo", "artquant", 1, 0.04, cpu=0.5), "resumed": True}]
    (dpo,) = summarize(rows)
    assert dpo["gain"] == pytest.approx(0.03) and dpo["cpu_min"] == pytest.approx(4.0)
    assert dpo["net_gain_per_cpu_min"] == pytest.approx(0.03 / 4.0)
    (only_resumed,) = summarize([{**_row("dpo", "artquant", 0, 0.02), "resumed": True}])
    assert only_resumed["net_gain_per_cpu_min"] is None and only_resumed["net_gain"] == pytest.approx(0.02)


def test_results_file_is_written_after_each_run(tmp_path):
    import json

    from scripts.bench_methods import write_results

    write_results(tmp_path, [_row("ddpo", "artquant", 0, 0.03)])
    write_results(tmp_path, [_row("ddpo", "artquant", 0, 0.03), _row("ddpo", "random (control)", 0, 0.01)])
    saved = json.loads((tmp_path / "bench_methods.json").read_text())
    assert len(saved["runs"]) == 2 and saved["summary"][0]["net_gain"] == pytest.approx(0.02)
    assert not list(tmp_path.glob("*.tmp"))
