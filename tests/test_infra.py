"""Shared machinery: config parser, run tracker, atomic checkpoints, RNG state, CLI dispatcher."""

import dataclasses
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from artquant_core.checkpoint import (atomic_directory, latest_checkpoint, load_rng_state,
                                      prune_checkpoints, save_rng_state)
from artquant_core.config import parse_config
from artquant_core.tracking import RunTracker, read_metrics


@dataclasses.dataclass
class _Cfg:
    name: str = "x"
    lr: float = 1e-3
    steps: int = 10
    prompts: list[str] = dataclasses.field(default_factory=lambda: ["a"])
    flag: bool = False


def test_yaml_then_cli_then_overrides(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("lr: 0.5\nsteps: 3\nprompts: [p, q]\n")
    cfg = parse_config(_Cfg, ["--config", str(y), "--steps", "7", "--flag", "true"])
    assert (cfg.lr, cfg.steps, cfg.prompts, cfg.flag) == (0.5, 7, ["p", "q"], True)
    cfg = parse_config(_Cfg, ["--steps", "7"], config_path=y, name="z")
    assert (cfg.name, cfg.steps) == ("z", 7)


def test_unknown_keys_name_close_matches(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("stepz: 3\n")
    with pytest.raises(ValueError, match=r"stepz.*c\.yaml.*steps"):
        parse_config(_Cfg, ["--config", str(y)])
    with pytest.raises(ValueError, match=r"'lrr'.*command line.*lr"):
        parse_config(_Cfg, ["--lrr", "1"])
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        parse_config(_Cfg, ["--config", str(tmp_path / "nope.yaml")])


def test_tracker_writes_jsonl_and_truncates_on_resume(tmp_path):
    t = RunTracker(tmp_path, config={"a": 1})
    for s in range(5):
        t.log({"reward_mean": float(s), "reward_std": 0.1, "t": torch.tensor(2.0)}, step=s)
    png = t.plot("reward_curve.png", "step", ["reward_mean"], std_suffix="_std")
    assert png.is_file() and png.stat().st_size > 1000
    rows = read_metrics(tmp_path)
    assert rows[0] == {"config": {"a": 1}} and rows[-1]["reward_mean"] == 4.0 and rows[-1]["t"] == 2.0
    t2 = RunTracker(tmp_path, resume_step=2)
    t2.log({"reward_mean": 9.0}, step=3)
    assert [r["step"] for r in t2.rows()] == [0, 1, 2, 3]


def test_tracker_wandb_offline_never_blocks(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    t = RunTracker(tmp_path, log_with="wandb", config={"a": 1})
    t.log({"x": 1.0}, step=0)
    t.close()
    assert read_metrics(tmp_path)[-1]["x"] == 1.0


def test_atomic_directory_and_latest(tmp_path):
    with atomic_directory(tmp_path / "checkpoint-1") as d:
        (d / "w.txt").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_directory(tmp_path / "checkpoint-2") as d:
            (d / "w.txt").write_text("partial")
            raise RuntimeError("killed")
    (tmp_path / ".tmp-checkpoint-3-999").mkdir()  # what a SIGKILL mid-write leaves
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint-1"
    with atomic_directory(tmp_path / "checkpoint-1") as d:
        (d / "w.txt").write_text("again")
    assert (tmp_path / "checkpoint-1" / "w.txt").read_text() == "again"
    with atomic_directory(tmp_path / "checkpoint-10") as d:
        pass
    assert latest_checkpoint(tmp_path).name == "checkpoint-10"
    prune_checkpoints(tmp_path, keep=1)
    assert not (tmp_path / "checkpoint-1").exists()


def test_rng_state_round_trip(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    save_rng_state(tmp_path / "rng")
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    load_rng_state(tmp_path / "rng")
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_cli_unknown_command_is_one_line():
    out = subprocess.run([sys.executable, "-m", "alignment.cli", "trian-scorer"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "train-scorer" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    out = subprocess.run([sys.executable, "-m", "alignment.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "ddpo" in out.stdout


def test_parse_config_defaults_rank_below_yaml_and_command_line(tmp_path):
    """A preset given as ``defaults=`` fills what YAML and the command line leave; unknown preset keys are named."""
    from artquant_core.config import parse_config
    from artquant_core.training.config import ScorerTrainingConfig

    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("learning_rate: 0.5\nmax_steps: 7\n")
    preset = {"learning_rate": 0.1, "max_steps": 3, "seed": 11}
    cfg = parse_config(ScorerTrainingConfig, ["--max_steps", "9"], config_path=yaml_file, defaults=preset)
    assert (cfg.seed, cfg.learning_rate, cfg.max_steps) == (11, 0.5, 9)
    with pytest.raises(ValueError, match="no_such_key"):
        parse_config(ScorerTrainingConfig, [], defaults={"no_such_key": 1})


class _FakeTracker:
    """An accelerate-style tracker recording what it is sent (stands in for tensorboard, which is not installed)."""

    name = "tensorboard"
    requires_logging_directory = True
    sent: list = []

    def __init__(self, run_name, logging_dir, **kwargs):
        self.run_name, self.logging_dir = run_name, logging_dir

    @property
    def tracker(self):
        return self

    def start(self):
        _FakeTracker.sent.append(("start", self.run_name, self.logging_dir))

    def store_init_configuration(self, values):
        _FakeTracker.sent.append(("config", values))

    def log(self, values, step=None, **kwargs):
        _FakeTracker.sent.append(("log", step, values))

    def log_images(self, values, step=None, **kwargs):
        _FakeTracker.sent.append(("images", step, {k: v.shape for k, v in values.items()}, kwargs))

    def finish(self):
        _FakeTracker.sent.append(("finish",))


def test_trackers_go_through_accelerates_registry(tmp_path, monkeypatch):
    import accelerate.tracking
    from PIL import Image

    monkeypatch.setitem(accelerate.tracking.LOGGER_TYPE_TO_CLASS, "tensorboard", _FakeTracker)
    _FakeTracker.sent = []
    t = RunTracker(tmp_path, log_with="tensorboard", config={"lr": 0.1, "prompts": ["a", "b"]}, project="proj")
    t.log({"reward_mean": 0.5, "note": "text"}, step=3)
    Image.new("RGB", (8, 6), (255, 0, 0)).save(tmp_path / "grid.png")
    t.log_images("eval/grid", tmp_path / "grid.png", step=3)
    t.close()
    kinds = [e[0] for e in _FakeTracker.sent]
    assert kinds == ["start", "config", "log", "images", "finish"]
    assert _FakeTracker.sent[0][2] == str(tmp_path / "trackers")
    assert _FakeTracker.sent[1][1] == {"lr": 0.1, "prompts": '["a", "b"]'}  # tables take scalars
    assert _FakeTracker.sent[2] == ("log", 3, {"step": 3, "reward_mean": 0.5})
    assert _FakeTracker.sent[3][2] == {"eval/grid": (1, 6, 8, 3)} and _FakeTracker.sent[3][3] == {"dataformats": "NHWC"}
    assert read_metrics(tmp_path)[-1]["reward_mean"] == 0.5


def test_unknown_tracker_is_named_and_a_failing_one_never_blocks(tmp_path, monkeypatch):
    import accelerate.tracking

    with pytest.raises(ValueError, match="unknown tracker 'tensorbord'.*tensorboard"):
        RunTracker(tmp_path, log_with="tensorbord")

    class Broken(_FakeTracker):
        def start(self):
            raise ImportError("tensorboard is not installed")

    monkeypatch.setitem(accelerate.tracking.LOGGER_TYPE_TO_CLASS, "tensorboard", Broken)
    with pytest.warns(UserWarning, match="tracker 'tensorboard' could not start.*not installed"):
        t = RunTracker(tmp_path, log_with="tensorboard")
    t.log({"x": 1.0}, step=0)
    t.close()
    assert t.tracker_names == [] and read_metrics(tmp_path)[-1]["x"] == 1.0
