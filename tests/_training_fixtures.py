"""Shared set-up for the training tests: a small SynthArt draw and a saved tiny random scorer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TINY = dict(image_size=32, vision_hidden=32, vision_layers=1, vision_heads=2, vision_intermediate=64,
            text_hidden=32, text_layers=1, text_heads=2, text_kv_heads=1, text_intermediate=64)


def make_setup(root: Path) -> dict[str, str]:
    """SynthArt (24 paintings, 32 px) and a random tiny scorer saved as a folder (fast to load)."""
    from artquant_core import make_synthart
    from artquant_core.tiny import TinyScorerConfig, build_tiny_scorer

    data = root / "synthart"
    make_synthart(data, 24, seed=5, size=32)
    base = root / "base_scorer"
    build_tiny_scorer(seed=0, pretrained=False, config=TinyScorerConfig(**TINY)).save_pretrained(base)
    return {"data": str(data), "base": str(base), "train": str(data / "train.json"), "val": str(data / "val.json")}


def train_args(setup: dict[str, str], out: Path, **extra) -> list[str]:
    values = dict(output_dir=str(out), model_name_or_path=setup["base"], train_data=setup["train"],
                  eval_data=setup["train"], max_steps=6, per_device_train_batch_size=4, learning_rate=3e-3,
                  warmup_ratio=0.2, save_steps=2, logging_steps=1, eval_strategy="steps", eval_steps=3,
                  score_weight=1.0, tasks="score,description,attributes,pair", attributes_per_record=1,
                  max_eval_samples=12, disable_tqdm="true", seed=3, dataloader_num_workers=0)
    values.update(extra)
    argv: list[str] = []
    for key, value in values.items():
        argv += [f"--{key}", str(value)]
    return argv


def run_training(setup: dict[str, str], out: Path, resume: bool = False, **extra) -> dict:
    """``train_scorer`` on the shared set-up with ``train_args`` (+ ``extra``); returns its metrics."""
    from artquant_core.config import parse_config
    from artquant_core.training import ScorerTrainingConfig, train_scorer

    config = parse_config(ScorerTrainingConfig, train_args(setup, out, **extra))
    return train_scorer(config, resume_from_checkpoint=True if resume else None)


def run_child(code: str, timeout: float = 600, wait: bool = True, **popen) -> subprocess.Popen | subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), TOKENIZERS_PARALLELISM="false")
    cmd = [sys.executable, "-c", code]
    if wait:
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)
