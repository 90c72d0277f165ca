"""What ``pip install`` puts into site-packages: the three packages, with the CLI, the demo and the shipped
weights inside them, and nothing named ``scripts`` (a top-level ``scripts`` package would collide with any
other project doing the same, and ``python -m scripts.cli`` would pick up whatever ``scripts/`` is in the cwd)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> list[str]:
    # built from a copy of the sources: setuptools writes build/ and *.egg-info beside pyproject.toml
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    for name in ["pyproject.toml", "README.md", "LICENSE"]:
        shutil.copy(ROOT / name, source / name)
    for package in ["artquant_core", "reward", "alignment", "scripts"]:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(source)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = out.glob("*.whl")
    return zipfile.ZipFile(wheel).namelist()


def test_wheel_holds_the_three_packages_and_no_scripts(wheel_names):
    top = {n.split("/")[0] for n in wheel_names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"artquant_core", "reward", "alignment"}
    for module in ["alignment/cli.py", "alignment/demo/run.py", "alignment/demo/config.py",
                   "alignment/demo/report.py", "alignment/demo/report_html.py"]:
        assert module in wheel_names, module
    # the shipped models travel as package data
    assert any(n.startswith("alignment/pretrained/tiny_painter/") and n.endswith(".safetensors") for n in wheel_names)
    assert any(n.startswith("artquant_core/pretrained/tiny_scorer/") and n.endswith(".safetensors")
               for n in wheel_names)


def test_console_script_points_into_a_package(wheel_names):
    entry = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["artquant"]
    module, func = entry.split(":")
    assert module.split(".")[0] in {"artquant_core", "reward", "alignment"}
    assert module.replace(".", "/") + ".py" in wheel_names
    import importlib

    assert callable(getattr(importlib.import_module(module), func))
