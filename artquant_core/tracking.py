"""One run tracker for every trainer: ``metrics.jsonl`` always, the user's trackers when asked, plots.

Trackers go through accelerate's tracker API (``accelerate.tracking``): ``log_with``
names any of them (``wandb``, ``tensorboard``, ``trackio``, ``mlflow``, ``comet_ml``,
``aim``, ``clearml``, ``dvclive``, ``swanlab``), several as a comma list, each
used when its library is installed. A tracker never blocks a run: one that cannot
start (library missing, no network) becomes a warning and the run logs to
``metrics.jsonl`` alone. wandb runs offline unless the user configured it
(``WANDB_API_KEY`` / ``WANDB_MODE`` / a wandb login). Only the main process writes.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

METRICS_FILE = "metrics.jsonl"
TRACKER_DIR = "trackers"  # where trackers that write files (tensorboard, aim, mlflow, dvclive) put them


def tracker_names(log_with: str | Sequence[str] | None) -> list[str]:
    """``log_with`` as a list of accelerate tracker names; an unknown name is a ``ValueError`` listing the known.

    Accepts ``None`` / ``"none"`` / ``""`` (no tracker), one name, a comma list or a list.
    """
    if log_with is None:
        return []
    items = log_with.split(",") if isinstance(log_with, str) else list(log_with)
    names = [str(n).strip().lower() for n in items if str(n).strip() and str(n).strip().lower() != "none"]
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    unknown = [n for n in names if n not in LOGGER_TYPE_TO_CLASS]
    if unknown:
        raise ValueError(f"log_with: unknown tracker {', '.join(map(repr, unknown))}; accelerate knows "
                         f"{', '.join(sorted(LOGGER_TYPE_TO_CLASS))} (or None for metrics.jsonl only)")
    return names


def _scalar_config(config: dict[str, Any]) -> dict[str, Any]:
    """The config as the trackers' hyper-parameter tables take it: numbers, strings and booleans only."""
    out = {}
    for key, value in (config or {}).items():
        value = _jsonable(value)
        out[key] = value if isinstance(value, (int, float, str, bool)) else json.dumps(value)
    return out


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
    """Append-only metrics log of a run, mirrored to the user's trackers.

    Args:
        output_dir: the run folder; ``metrics.jsonl`` lives there (tracker files under ``trackers/``).
        log_with: accelerate tracker name(s) (``"wandb"``, ``"tensorboard"``, ``"wandb,tensorboard"``, ...),
            ``None`` for metrics.jsonl only.
        config: the run's config, stored as the first row (``{"config": ...}``) and sent to the trackers.
        project / run_name: the tracker's project (experiment) and run names.
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
        self._trackers: list[Any] = []
        names = tracker_names(log_with)  # an unknown name is refused on every process
        if not self.active:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.is_file():
            kept = [r for r in read_metrics(self.output_dir) if r.get("step", -1) <= resume_step]
            self._rewrite(kept)
        elif resume_step is None and config is not None:
            self._rewrite([{"config": _jsonable(config)}])
        for name in names:
            self._start_tracker(name, project, run_name, config)

    def _rewrite(self, rows: Iterable[dict[str, Any]]) -> None:
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        os.replace(tmp, self.path)

    def _start_tracker(self, name: str, project: str, run_name: str | None, config: dict[str, Any] | None) -> None:
        """Start accelerate's ``name`` tracker; any failure is a warning (the run goes on without it)."""
        import inspect

        from accelerate.tracking import LOGGER_TYPE_TO_CLASS

        cls = LOGGER_TYPE_TO_CLASS[name]
        kwargs: dict[str, Any] = {}
        if "logging_dir" in inspect.signature(cls.__init__).parameters:
            kwargs["logging_dir"] = str(self.output_dir / TRACKER_DIR)
        if name == "wandb":
            if not wandb_is_configured():
                os.environ.setdefault("WANDB_MODE", "offline")
            os.environ.setdefault("WANDB_SILENT", "true")
            kwargs.update(name=run_name, dir=str(self.output_dir), reinit="finish_previous")
        try:
            if name == "wandb":
                import wandb

                kwargs["settings"] = wandb.Settings(init_timeout=30, silent=True)
            tracker = cls(project, **kwargs) if name != "mlflow" else cls(project, run_name=run_name, **kwargs)
            if hasattr(tracker, "start"):  # accelerate >= 1.5 starts trackers lazily
                tracker.start()
            tracker.store_init_configuration(_scalar_config(config or {}))
        except Exception as exc:  # never let tracking stop training
            warnings.warn(f"tracker {name!r} could not start ({type(exc).__name__}: {exc}); "
                          f"logging to {self.path} only")
            return
        self._trackers.append(tracker)

    @property
    def tracker_names(self) -> list[str]:
        """The accelerate trackers this run mirrors to (those that started)."""
        return [getattr(t, "name", type(t).__name__) for t in self._trackers]

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Append one row (``step`` added) to metrics.jsonl and send its numbers to the trackers."""
        if not self.active:
            return
        row = {"step": int(step), **{k: _jsonable(v) for k, v in metrics.items()}}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        numbers = {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        for tracker in self._trackers:
            try:
                tracker.log(numbers, step=int(step))
            except Exception as exc:
                warnings.warn(f"{getattr(tracker, 'name', 'tracker')}.log failed ({exc}); continuing")

    def log_images(self, key: str, path: str | Path, step: int) -> None:
        """Send an image file (a grid, a plot) to the trackers that take images (wandb, tensorboard)."""
        if not self.active or not self._trackers:
            return
        import numpy as np
        from PIL import Image

        with Image.open(path) as img:
            pixels = np.asarray(img.convert("RGB"))
        for tracker in self._trackers:
            if not hasattr(tracker, "log_images"):
                continue
            try:
                if getattr(tracker, "name", "") == "tensorboard":
                    tracker.log_images({key: pixels[None]}, step=int(step), dataformats="NHWC")
                else:
                    tracker.log_images({key: [pixels]}, step=int(step))
            except Exception as exc:
                warnings.warn(f"{getattr(tracker, 'name', 'tracker')} image log failed ({exc})")

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
        for tracker in self._trackers:
            try:
                tracker.finish()
            except Exception as exc:
                warnings.warn(f"{getattr(tracker, 'name', 'tracker')}.finish failed ({exc})")
        self._trackers = []
