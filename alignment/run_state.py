"""Checkpoint save / resume of an alignment run (DDPO, reward-gradient).

A checkpoint ``checkpoint-N/`` (N = epochs done) holds the trained weights
(LoRA in diffusers format + exact peft tensors, or the full UNet), the
optimizer, the RNG state, ``trainer_state.json`` (epoch and any JSON-able
trainer state, e.g. the per-prompt stat tracker). It is written atomically:
a run killed mid-write keeps its previous checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from artquant_core.checkpoint import (atomic_directory, latest_checkpoint, load_rng_state, load_torch_state,
                                      prune_checkpoints, save_rng_state, save_torch_state)
from alignment.lora import load_lora, save_lora

TRAINER_STATE = "trainer_state.json"


def save_run_state(output_dir: str | Path, epoch: int, unet, optimizer: torch.optim.Optimizer, use_lora: bool,
                   state: dict[str, Any], keep: int | None = None) -> Path:
    """Write ``output_dir/checkpoint-{epoch}`` atomically and prune old ones. Main process only."""
    final = Path(output_dir) / f"checkpoint-{epoch}"
    with atomic_directory(final) as tmp:
        if use_lora:
            save_lora(unet, tmp)
        else:
            unet.save_pretrained(tmp / "unet", safe_serialization=True)
        save_torch_state(tmp / "optimizer.pt", optimizer.state_dict())
        save_rng_state(tmp / "rng_state")
        (tmp / TRAINER_STATE).write_text(json.dumps({"epoch": epoch, **state}))
    prune_checkpoints(output_dir, keep)
    return final


def resolve_resume(output_dir: str | Path, resume_from: str | None) -> Path | None:
    """``"latest"`` → newest complete checkpoint (None if there is none); a path → checked."""
    if not resume_from:
        return None
    if resume_from == "latest":
        return latest_checkpoint(output_dir)
    path = Path(resume_from)
    if not (path / TRAINER_STATE).is_file():
        raise FileNotFoundError(f"resume_from {resume_from!r} is not a checkpoint folder (no {TRAINER_STATE})")
    return path


def load_run_state(checkpoint: str | Path, unet, optimizer: torch.optim.Optimizer, use_lora: bool) -> dict[str, Any]:
    """Restore weights, optimizer and RNG from ``checkpoint``; return its trainer state (with ``epoch``)."""
    checkpoint = Path(checkpoint)
    if use_lora:
        load_lora(unet, checkpoint)
    else:
        from safetensors.torch import load_file

        files = sorted((checkpoint / "unet").glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"{checkpoint}/unet: no UNet weights")
        weights = {}
        for f in files:
            weights.update(load_file(str(f)))
        unet.load_state_dict(weights)
    optimizer.load_state_dict(load_torch_state(checkpoint / "optimizer.pt"))
    load_rng_state(checkpoint / "rng_state")
    return json.loads((checkpoint / TRAINER_STATE).read_text())
