"""One command-line grammar for every ``artquant`` sub-command: help, flag spellings, exit status, inputs first.

Exit status rule (alignment/cli.py): 2 = usage error (the command line is wrong), 1 = runtime error
(the work failed: missing file, bad data, model failure), 0 = success.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from alignment.cli import COMMANDS
from alignment.cli import main as cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _in_a_scratch_folder(tmp_path, monkeypatch):
    """Commands run with their default output folders (eval_out, rerank_out) land here, not in the repo."""
    monkeypatch.chdir(tmp_path)


CONFIG_COMMANDS = {"demo": ("alignment.demo.config", "DemoConfig"),
                   "train-scorer": ("artquant_core.training.config", "ScorerTrainingConfig"),
                   "ddpo": ("alignment.ddpo_config", "DDPOConfig"),
                   "reward-grad": ("alignment.reward_grad_config", "RewardGradConfig"),
                   "dpo": ("alignment.dpo_config", "DiffusionDPOConfig"),
                   "flow-grpo": ("alignment.flow_grpo_config", "FlowGRPOConfig")}
ARGPARSE_PARSERS = {"eval": ("artquant_core.commands.evaluate", "build_parser"),
                    "score": ("artquant_core.commands.score", "_parser"),
                    "rerank": ("reward.commands.rerank", "_parser"),
                    "synthart": ("artquant_core.commands.synthart", "_parser"),
                    "serve-reward": ("reward.commands.serve_reward", "_parser")}
#: each command's required arguments, so that the unknown flag is the only thing wrong
VALID_ARGS = {"demo": ["--out", "{tmp}/o"], "synthart": ["--out", "{tmp}/o", "--n", "3"],
              "train-scorer": ["--output_dir", "{tmp}/o"], "eval": ["--gt", "{tmp}/r.json", "--pred", "{tmp}/p.json"],
              "score": ["--model", "tiny", "{tmp}/a.png"], "rerank": ["--reward", "brightness", "--images", "{tmp}"],
              "ddpo": ["--output_dir", "{tmp}/o"], "reward-grad": ["--output_dir", "{tmp}/o"],
              "flow-grpo": ["--output_dir", "{tmp}/o"], "dpo": ["--output_dir", "{tmp}/o"],
              "tiny-sd": ["--out", "{tmp}/o"], "tiny-sd3": ["--out", "{tmp}/o"],
              "serve-reward": ["--reward", "brightness", "--port", "8000"]}


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _config_cls(name: str) -> type:
    module, cls = CONFIG_COMMANDS[name]
    return getattr(__import__(module, fromlist=[cls]), cls)


def test_every_command_is_covered():
    assert set(VALID_ARGS) == set(COMMANDS)
    assert set(CONFIG_COMMANDS) | set(ARGPARSE_PARSERS) | {"tiny-sd", "tiny-sd3"} == set(COMMANDS)


@pytest.mark.parametrize("name", sorted(CONFIG_COMMANDS))
def test_config_command_help_lists_every_key_with_type_and_default(name, capsys):
    code, out, _ = _run(capsys, name, "--help")
    assert code == 0
    for f in dataclasses.fields(_config_cls(name)):
        if f.init:
            assert f"  --{f.name} (" in out, f.name
    assert "--config YAML" in out and "--verbose" in out
    assert out.count("default ") + out.count(", required)") >= sum(f.init for f in dataclasses.fields(_config_cls(name)))


@pytest.mark.parametrize("name", sorted(ARGPARSE_PARSERS))
def test_argparse_command_help_lists_every_flag_with_help_and_default(name, capsys):
    module, factory = ARGPARSE_PARSERS[name]
    parser = getattr(__import__(module, fromlist=[factory]), factory)()
    code, out, _ = _run(capsys, name, "--help")
    assert code == 0
    flat = " ".join(out.split())
    for action in parser._actions:
        if action.dest == "help":
            continue
        assert action.help, f"{name}: {action.dest} has no help string"
        assert (action.option_strings[0] if action.option_strings else action.dest) in out
        if action.option_strings:
            assert "default" in " ".join(parser.formatter_class("x")._get_help_string(action).split()) or \
                action.required, action.dest
    assert "(default:" in flat and "--image-root or --image_root" in flat


@pytest.mark.parametrize("name", ["tiny-sd", "tiny-sd3"])
def test_builder_command_help_shows_defaults(name, capsys):
    code, out, _ = _run(capsys, name, "--help")
    assert code == 0 and "--out" in out and "(required)" in out and "(default: 0)" in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_unknown_flag_exits_2_in_one_line(name, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path) for a in VALID_ARGS[name]]
    code, _, err = _run(capsys, name, *argv, "--no-such-flag", "1")
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith(f"artquant {name}: error:") and "no_such_flag" in \
        lines[0].replace("-", "_"), err


def test_bad_values_are_usage_errors(tmp_path, capsys):
    assert _run(capsys, "eval", "--gt", "x.json", "--batch-size", "0")[0] == 2
    assert _run(capsys, "eval", "--gt", "x.json", "--dtype", "float8")[0] == 2
    assert _run(capsys, "synthart", "--out", str(tmp_path), "--n", "2")[0] == 2
    assert _run(capsys, "demo", "--out", str(tmp_path / "o"), "--n_images", "10")[0] == 2
    assert _run(capsys, "demo", "--quick")[0] == 2  # --out missing
    code, _, err = _run(capsys, "ddpo", "--output_dir", str(tmp_path), "--resolution", "30")
    assert code == 2 and "resolution" in err


def test_unknown_command_and_version(capsys):
    assert _run(capsys, "evaluate")[0] == 2
    code, out, _ = _run(capsys, "--version")
    assert code == 0 and out.startswith("artquant ")


def test_version_from_the_shell():
    proc = subprocess.run([sys.executable, "-m", "alignment.cli", "--version"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("artquant ")


# ------------------------------------------------------------------ flag spellings
def test_argparse_commands_take_both_spellings():
    from artquant_core.commands.evaluate import build_parser
    from artquant_core.commands.score import _parser as score_parser

    dashed = build_parser().parse_args(["--gt", "g", "--image-root", "r", "--batch-size", "3"])
    underscored = build_parser().parse_args(["--gt", "g", "--image_root", "r", "--batch_size=3"])
    assert vars(dashed) == vars(underscored) and dashed.image_root == "r" and dashed.batch_size == 3
    args = score_parser().parse_args(["--model", "tiny", "a.png", "--max_new_tokens", "5"])
    assert args.max_new_tokens == 5


def test_config_commands_take_both_spellings():
    from artquant_core.config import parse_config
    from alignment.demo.config import DemoConfig

    a = parse_config(DemoConfig, ["--out", "d", "--n-images", "50", "--no-watch-judge", "--rerank_n=3"])
    b = parse_config(DemoConfig, ["--out", "d", "--n_images", "50", "--no_watch_judge", "--rerank-n", "3"])
    assert a == b and (a.n_images, a.watch_judge, a.rerank_n) == (50, False, 3)


# ------------------------------------------------------------------ inputs checked before any model loads
@pytest.fixture
def no_model(monkeypatch):
    """Every model loader the commands use fails the test if called."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the inputs were checked")

    import artquant_core.tiny
    import artquant_core.training
    import reward.spec

    monkeypatch.setattr(artquant_core.tiny, "load_scorer", refuse)
    monkeypatch.setattr(artquant_core.training, "train_scorer", refuse)
    monkeypatch.setattr(reward.spec, "load_reward", refuse)


def _records(folder: Path) -> Path:
    conv = [{"from": "human", "value": "<image>Rate it."}, {"from": "gpt", "value": "It is fair."}]
    rows = [{"id": f"r{i}", "image": f"{i}.png", "gt_score": float(i), "conversations": conv} for i in range(4)]
    (folder / "r.json").write_text(json.dumps(rows))
    return folder / "r.json"


@pytest.mark.parametrize("argv, culprit", [
    (["eval", "--model", "tiny", "--gt", "{tmp}/missing.json"], "missing.json"),
    (["eval", "--pred", "{tmp}/nopred.json", "--gt", "{tmp}/r.json"], "nopred.json"),
    (["eval", "--model", "tiny", "--gt", "{tmp}/r.json", "--image-root", "{tmp}/noroot"], "noroot"),
    (["eval", "--model", "tiny", "--gt", "{tmp}/r.json"], "0.png"),  # the records' images
    (["score", "--model", "tiny", "{tmp}/nope.png"], "nope.png"),
    (["rerank", "--reward", "artquant", "--images", "{tmp}/noimages"], "noimages"),
    (["rerank", "--reward", "artquant", "--pipeline", "{tmp}/nopipe", "--prompt", "a", "--n", "2"], "nopipe"),
    (["train-scorer", "--train_data", "{tmp}/notrain.json", "--output_dir", "{tmp}/o"], "notrain.json"),
    (["train-scorer", "--train_data", "{tmp}/r.json", "--eval_data", "{tmp}/noeval.json",
      "--output_dir", "{tmp}/o"], "noeval.json"),
])
def test_missing_input_exits_1_naming_it_before_any_model_loads(argv, culprit, tmp_path, capsys, no_model):
    _records(tmp_path)
    code, _, err = _run(capsys, *[a.format(tmp=tmp_path) for a in argv])
    lines = err.strip().splitlines()
    assert code == 1, err
    assert len(lines) == 1 and culprit in lines[0], err


# ------------------------------------------------------------------ --device / --dtype
def test_device_and_dtype_resolution():
    import torch

    from artquant_core.cli_args import UsageError, resolve_device, resolve_dtype

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == expected and resolve_device("cpu") == "cpu"
    assert resolve_dtype("auto", "cpu") == torch.float32 and resolve_dtype("bfloat16", "cpu") == torch.bfloat16
    with pytest.raises(UsageError, match="--device 'gpu0'"):
        resolve_device("gpu0")


def test_score_runs_on_cpu_with_the_defaults_and_with_bfloat16(tmp_path, capsys):
    Image.new("RGB", (32, 32), (120, 40, 200)).save(tmp_path / "a.png")
    code, out, err = _run(capsys, "score", "--model", "tiny", str(tmp_path / "a.png"), "--format", "json")
    assert code == 0, err
    default = json.loads(out)[0]["score"]
    code, out, err = _run(capsys, "score", "--model", "tiny", str(tmp_path / "a.png"), "--format", "json",
                          "--device", "cpu", "--dtype", "bfloat16")
    assert code == 0, err
    assert abs(json.loads(out)[0]["score"] - default) < 0.5  # the same scorer, in lower precision
