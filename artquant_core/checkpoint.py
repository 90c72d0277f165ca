"""Atomic checkpoint folders and exact-resume state, shared by every trainer.

A checkpoint is first written into a hidden temporary folder beside its final
place and then renamed into place in one ``os.replace``: a run killed mid-write
leaves only a ``.tmp-*`` folder, which ``latest_checkpoint`` never picks.
Nothing here unpickles arbitrary objects: tensors go through safetensors or
``torch.load(weights_only=True)``, Python/NumPy RNG state through JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")


def fsync_tree(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb") as fh:
                os.fsync(fh.fileno())


@contextlib.contextmanager
def atomic_directory(final_dir: str | Path) -> Iterator[Path]:
    """Yield a temporary folder; on clean exit it replaces ``final_dir`` atomically."""
    final_dir = Path(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = final_dir.parent / f".tmp-{final_dir.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        fsync_tree(tmp)
        if final_dir.exists():
            old = final_dir.parent / f".old-{final_dir.name}-{os.getpid()}"
            os.replace(final_dir, old)
            os.replace(tmp, final_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def list_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete ``checkpoint-N`` folders in ``output_dir``, sorted by ``N``."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = []
    for child in output_dir.iterdir():
        m = CHECKPOINT_PATTERN.match(child.name)
        if m and child.is_dir():
            found.append((int(m.group(1)), child))
    return sorted(found)


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The highest-numbered complete checkpoint folder, or ``None``."""
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


def prune_checkpoints(output_dir: str | Path, keep: int | None) -> None:
    """Delete all but the newest ``keep`` checkpoints (``None`` keeps all)."""
    if keep is None or keep <= 0:
        return
    for _, path in list_checkpoints(output_dir)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


def capture_rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU + CUDA) generator states."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def save_rng_state(path: str | Path, state: dict[str, Any] | None = None) -> None:
    """Write RNG state: JSON for Python/NumPy, a tensor file for torch."""
    state = state or capture_rng_state()
    path = Path(path)
    py = state["python"]
    json_state = {"python": [py[0], list(py[1]), py[2]], "numpy": state["numpy"]}
    path.with_suffix(".json").write_text(json.dumps(json_state))
    tensors = {"torch": state["torch"]}
    for i, s in enumerate(state.get("cuda", [])):
        tensors[f"cuda_{i}"] = s
    torch.save(tensors, path.with_suffix(".pt"))


def load_rng_state(path: str | Path) -> None:
    """Restore what ``save_rng_state`` wrote."""
    path = Path(path)
    js = json.loads(path.with_suffix(".json").read_text())
    py = js["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = js["numpy"]
    np.random.set_state((npst[0], np.asarray(npst[1], dtype=np.uint32), npst[2], npst[3], npst[4]))
    tensors = torch.load(path.with_suffix(".pt"), weights_only=True)
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda_"))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def save_torch_state(path: str | Path, state: dict[str, Any]) -> None:
    """Optimizer / scheduler / scaler state dicts (tensors and plain values only)."""
    torch.save(state, Path(path))


def load_torch_state(path: str | Path) -> dict[str, Any]:
    """Load with the restricted unpickler: tensors and plain containers only."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file missing: {path}")
    return torch.load(path, weights_only=True, map_location="cpu")
