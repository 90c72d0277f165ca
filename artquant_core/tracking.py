"""One run tracker for every trainer: ``metrics.jsonl`` always, wandb when asked, plots.

wandb never blocks a run: it is imported lazily, runs in offline mode unless
the user configured it (``WANDB_API_KEY`` / ``WANDB_MODE`` / a wandb login),
and any failure to start it becomes a warning, not an error. Only the main
process writes.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

METRICS_FILE = "metrics.jsonl"


def wandb_is_configured() -> bool:
    """True when the user set wandb up for online logging on this machine."""
    if os.environ.get("WANDB_MODE") in ("online", "run"):
        return True
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


def read_metrics(output_dir: str | Path) -> list[dict[str, Any]]:
    """All rows of ``output_dir/metrics.jsonl`` (empty list if none)."""
    path = Path(output_dir) / METRICS_FILE
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            rows.append(json.loads(line))
    return rows


class RunTracker:
    """Append-only metrics log of a run, mirrored to wandb.

    Args:
        output_dir: the run folder; ``metrics.jsonl`` lives there.
        log_with: ``"wandb"`` to mirror to wandb (offline unless configured), ``None`` for local only.
        config: the run's config, stored as the first row (``{"config": ...}``) and sent to wandb.
        project / run_name: wandb project and run names.
        resume_step: when resuming, rows with ``step`` greater than this are
            dropped first, so a resumed run's curve has no duplicate points.
        is_main_process: non-main processes of a distributed run do nothing.
    """

    def __init__(self, output_dir: str | Path, log_with: str | None = None, config: dict[str, Any] | None = None,
                 project: str = "artquant", run_name: str | None = None, resume_step: int | None = None,
                 is_main_process: bool = True) -> None:
        self.output_dir = Path(output_dir)
        self.active = is_main_process
        self.path = self.output_dir / METRICS_FILE
        self._wandb_run = None
        if not self.active:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.is_file():
            kept = [r for r in read_metrics(self.output_dir) if r.get("step", -1) <= resume_step]
            self._rewrite(kept)
        elif resume_step is None and config is not None:
            self._rewrite([{"config": _jsonable(config)}])
        if log_with == "wandb":
            self._start_wandb(project, run_name, config)
        elif log_with not in (None, "none", ""):
            raise ValueError(f"log_with must be 'wandb' or None, got {log_with!r}")

    def _rewrite(self, rows: Iterable[dict[str, Any]]) -> None:
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        os.replace(tmp, self.path)

    def _start_wandb(self, project: str, run_name: str | None, config: dict[str, Any] | None) -> None:
        if not wandb_is_configured():
            os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_SILENT", "true")
        try:
            import wandb

            self._wandb_run = wandb.init(project=project, name=run_name, dir=str(self.output_dir),
                                         config=_jsonable(config or {}), reinit="finish_previous",
                                         settings=wandb.Settings(init_timeout=30, silent=True))
        except Exception as exc:  # never let tracking stop training
            warnings.warn(f"wandb could not start ({exc}); logging to {self.path} only")
            self._wandb_run = None

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Append one row (``step`` added) to metrics.jsonl and to wandb."""
        if not self.active:
            return
        row = {"step": int(step), **{k: _jsonable(v) for k, v in metrics.items()}}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        if self._wandb_run is not None:
            try:
                self._wandb_run.log({k: v for k, v in row.items() if isinstance(v, (int, float))}, step=int(step))
            except Exception as exc:
                warnings.warn(f"wandb.log failed ({exc}); continuing with metrics.jsonl only")

    def log_images(self, key: str, path: str | Path, step: int) -> None:
        """Send an image file (a grid, a plot) to wandb; metrics.jsonl gets its path."""
        if not self.active:
            return
        if self._wandb_run is not None:
            try:
                import wandb

                self._wandb_run.log({key: wandb.Image(str(path))}, step=int(step))
            except Exception as exc:
                warnings.warn(f"wandb image log failed ({exc})")

    def rows(self) -> list[dict[str, Any]]:
        return [r for r in read_metrics(self.output_dir) if "step" in r]

    def plot(self, filename: str, x_key: str, y_keys: Sequence[str], title: str = "",
             std_suffix: str | None = None, ylabel: str = "") -> Path | None:
        """Redraw a curve PNG from everything logged so far."""
        if not self.active:
            return None
        from artquant_core.plots import plot_curves

        return plot_curves(self.rows(), x_key, y_keys, self.output_dir / filename, title=title,
                           std_suffix=std_suffix, ylabel=ylabel)

    def close(self) -> None:
        if self._wandb_run is not None:
            try:
                self._wandb_run.finish()
            except Exception as exc:
                warnings.warn(f"wandb.finish failed ({exc})")
            self._wandb_run = None
