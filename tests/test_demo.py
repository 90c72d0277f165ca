"""`artquant demo`: the quick preset end to end, resume / refuse behaviour, and the default preset (slow)."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = ("scorer_test_srcc", "baseline_test_srcc", "ddpo_reward_first", "ddpo_reward_last", "total_s",
            "ceiling_srcc", "ddpo_judge_first", "ddpo_judge_last", "reward_grad_judge_first", "reward_grad_judge_last")
STEP_NAMES = ("data", "pretrained_eval", "finetune", "evaluate", "tiny_sd", "ddpo", "reward_grad", "rerank")


def _demo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alignment.cli", "demo", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    proc = _demo("--out", str(out), "--quick")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_quick_summary_has_the_contract_keys_and_sane_values(quick_run):
    out, proc = quick_run
    summary = json.loads((out / "summary.json").read_text())
    for key in REQUIRED:
        assert isinstance(summary[key], (int, float)) and math.isfinite(summary[key]), key
    for key in ("scorer_test_srcc", "baseline_test_srcc", "baseline_spatial_test_srcc", "scorer_pretrained_test_srcc"):
        assert -1.0 <= summary[key] <= 1.0, key
    assert 0.5 < summary["ceiling_srcc"] <= 1.0
    for key in ("ddpo_reward_first", "ddpo_reward_last", "reward_grad_reward_first", "reward_grad_reward_last",
                "reward_grad_eval_reward_last", "rerank_mean_before", "rerank_best_after",
                "rerank_best_after_reward_grad", "reward_grad_eval_improved_fraction", "ddpo_judge_first",
                "reward_grad_judge_last"):
        assert 0.0 <= summary[key] <= 1.0, key  # ArtQuantReward is normalised to [0, 1]
    # the paired change is the difference of the two held-out means (same images)
    for run in ("ddpo", "reward_grad"):
        assert summary[f"{run}_eval_change"] == pytest.approx(
            summary[f"{run}_eval_reward_last"] - summary[f"{run}_eval_reward_first"], abs=1e-6)
    # best-of-N never picks below the mean of its candidates
    for phase in ("before", "after", "after_reward_grad"):
        assert summary[f"rerank_best_{phase}"] >= summary[f"rerank_mean_{phase}"] - 1e-9, phase
    assert summary["settings"]["diffusion_model"] == "painter"  # the shipped painter by default
    assert summary["ddpo_reward_hacking"] in (True, False)
    assert set(summary["timings_s"]) == set(STEP_NAMES)
    assert summary["total_s"] == pytest.approx(sum(summary["timings_s"].values()), abs=0.1)
    # every step printed its one-line summary, then the final line
    for k in range(1, 9):
        assert re.search(rf"^\[{k}/8\] .+: .+\(\d+\.\d s\)$", proc.stdout, flags=re.M), k
    assert "open " in proc.stdout.strip().splitlines()[-1]


def test_quick_console_shows_steps_and_keeps_library_chatter_in_the_log(quick_run):
    out, proc = quick_run
    console = proc.stdout + proc.stderr
    assert "{'loss'" not in console and "Loading weights" not in console  # the Trainer's dicts, load bars
    assert "Loading pipeline components" not in console
    assert re.search(r"^\[3/8\] fine-tune the scorer: ", proc.stdout, flags=re.M)
    log = (out / "artquant.log").read_text()
    assert "trainer step" in log and "'loss'" in log


def test_quick_report_is_self_contained(quick_run):
    out, _ = quick_run
    html = (out / "report.html").read_text()
    embedded = html.count('src="data:image/png;base64,')
    assert embedded >= 15  # scatters, loss curve, described images, 2 x (2 curves + 2 grids), 3 contact sheets
    assert not re.search(r'src="(?!data:)', html)  # nothing refers to a file next to it
    for text in ("Attribute scores", "DDPO", "DRaFT-K", "Best-of-2", "Timings", "noise ceiling", "Paired change"):
        assert text in html, text


def test_quick_scorer_folder_loads_and_scores(quick_run):
    import torch

    from artquant_core.scorer import ArtQuantScorer

    out, _ = quick_run
    scorer = ArtQuantScorer.from_pretrained(out / "scorer")
    result = scorer.score(torch.rand(2, 3, 64, 64))
    assert result.score.shape == (2,) and torch.isfinite(result.score).all()
    assert ((result.score >= 1.0) & (result.score <= 10.0)).all()
    assert (out / "ddpo" / "reward_curve.png").is_file()
    assert (out / "rerank" / "after" / "contact_sheet.png").is_file()
    assert (out / "reward_grad" / "reward_curve.png").is_file()
    assert (out / "rerank" / "after_reward_grad" / "contact_sheet.png").is_file()


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    """The same command in-process (no second interpreter start-up)."""
    from alignment.cli import main

    code = main(["demo", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_rerun_same_settings_resumes_without_redoing(quick_run, capsys):
    out, _ = quick_run
    before = json.loads((out / "summary.json").read_text())
    code, stdout, _ = _cli(capsys, "--out", str(out), "--quick")
    assert code == 0
    assert stdout.count("done earlier") == len(STEP_NAMES)
    after = json.loads((out / "summary.json").read_text())
    assert {k: after[k] for k in REQUIRED} == {k: before[k] for k in REQUIRED}


def test_rerun_other_settings_is_refused_in_one_line(quick_run, capsys):
    out, _ = quick_run
    state = (out / "demo_state.json").read_text()
    code, _, err = _cli(capsys, "--out", str(out), "--quick", "--seed", "1")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "other settings" in lines[0] and "seed: 0 -> 1" in lines[0]
    assert (out / "demo_state.json").read_text() == state  # the old run is untouched


def test_non_empty_folder_without_state_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    code, _, err = _cli(capsys, "--out", str(tmp_path), "--quick")
    assert code == 1
    assert "not empty" in err and "demo_state.json" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing written


def test_missing_out_and_unknown_key_are_clear_errors(capsys):
    code, _, err = _cli(capsys, "--quick")
    assert code == 2 and "--out" in err  # usage errors exit 2
    code, _, err = _cli(capsys, "--out", "x", "--ddpo_epoch", "3")
    assert code == 2 and "ddpo_epochs" in err


def test_interrupted_run_resumes_at_the_failed_step(tmp_path, monkeypatch):
    """The state machinery alone, with stand-in steps: finished steps are never run twice."""
    from alignment.demo import report as demo_report, run as demo
    from alignment.demo.config import DemoConfig

    calls: list[str] = []
    fail = {"at": "c"}

    def make(name):
        def step(cfg, out, done):
            calls.append(name)
            if fail["at"] == name:
                raise RuntimeError(f"killed in {name}")
            return {"summary": name, "value": len(done)}
        return step

    monkeypatch.setattr(demo, "STEPS", [(n, n, make(n)) for n in "abcd"])
    monkeypatch.setattr(demo_report, "build_summary", lambda cfg, done, run_s: {
        "total_s": 0.0, "scorer_test_srcc": 0.0, "baseline_test_srcc": 0.0, "ceiling_srcc": 1.0,
        "ddpo_eval_reward_first": 0.0, "ddpo_eval_reward_last": 0.0, "reward_grad_eval_reward_first": 0.0,
        "reward_grad_eval_reward_last": 0.0, "steps": sorted(done)})
    monkeypatch.setattr(demo_report, "write_report", lambda cfg, out, done, summary: out / "report.html")
    cfg = DemoConfig(out=str(tmp_path / "run"))
    with pytest.raises(RuntimeError, match="killed in c"):
        demo.run_demo(cfg)
    assert calls == ["a", "b", "c"]
    state = json.loads((tmp_path / "run" / "demo_state.json").read_text())
    assert sorted(state["steps"]) == ["a", "b"]
    fail["at"] = None
    summary = demo.run_demo(cfg)
    assert calls == ["a", "b", "c", "c", "d"] and summary["steps"] == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="other settings.*n_images"):
        demo.run_demo(DemoConfig(out=str(tmp_path / "run"), n_images=50))


def test_presets_and_overrides(tmp_path):
    from alignment.demo.config import QUICK_PRESET, DemoConfig, parse_demo_args

    assert parse_demo_args(["--out", "d"]) == DemoConfig(out="d")
    quick = parse_demo_args(["--out", "d", "--quick", "--ddpo_epochs", "3"])
    assert quick.n_images == QUICK_PRESET["n_images"] and quick.ddpo_epochs == 3
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("n_images: 120\nseed: 5\n")
    cfg = parse_demo_args(["--quick", "--config", str(yaml_file), "--out", "d", "--seed", "7"])
    assert (cfg.n_images, cfg.seed, cfg.scorer_steps) == (120, 7, QUICK_PRESET["scorer_steps"])
    with pytest.raises(ValueError, match="n_images"):
        parse_demo_args(["--out", "d", "--n_images", "10"])


@pytest.mark.slow
def test_default_demo_end_to_end(tmp_path):
    """The default preset, as the README's first command runs it (at most 10 minutes on 2 CPU cores)."""
    out = tmp_path / "demo_out"
    proc = _demo("--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    for key in REQUIRED:
        assert math.isfinite(summary[key]), key
    assert summary["ceiling_srcc"] > 0.9
    # this install ships the pretrained tiny scorer: the demo must start from it, not the fallback
    assert "FALLBACK" not in summary["scorer_source"], summary["scorer_source"]
    for key in ("scorer_test_srcc", "scorer_pretrained_test_srcc", "baseline_test_srcc"):
        assert -1.0 <= summary[key] <= 1.0, key
    # the fine-tuned scorer ranks unseen paintings far better than the pixel-statistics baseline
    assert summary["scorer_test_srcc"] > summary["baseline_test_srcc"] + 0.3
    # DDPO trained and was evaluated (on this random-init tiny SD its held-out reward drifts; docs/fine_tuning.md)
    assert summary["ddpo_eval_reward_first"] != summary["ddpo_eval_reward_last"]
    # the reward's gradient raises the held-out reward: a paired rise of several standard errors
    assert summary["reward_grad_eval_change"] > 3 * summary["reward_grad_eval_change_se"] > 0
    assert summary["rerank_mean_after_reward_grad"] > summary["rerank_mean_before"]
    assert (out / "report.html").stat().st_size > 50_000
