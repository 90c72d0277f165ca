"""Training/evaluation records: ArtQuant / RAD JSON (a list) or JSONL, read and written.

Score record::

    {"id": "x1", "image": "images/x1.png", "gt_score": 7.2, "level_probs": [0.3, 0.6, 0.1, 0, 0],
     "conversations": [{"from": "human", "value": "<image>How would you rate ...?"},
                       {"from": "gpt", "value": "The quality of the painting is good."}]}

Description record: the same without ``gt_score`` / ``level_probs`` and with
``"task_type": "description"`` (the gpt turn holds the description). Optional keys:
``std`` (rater spread, score units; it sets the spread of the soft label built for a record
without ``level_probs``), ``attributes`` (``{name: score}``); any other key (e.g. the released
records' ``gt_score_norm``, ``std_norm``, ``level_probs_org``) is kept in ``Record.extra`` and
written back. The human turn may hold ``<image>`` or ``<|image|>`` (the released records' spelling,
often after the question); records keep it as written, and every consumer strips both with
``prompts.strip_image_placeholders``. Every validation error is a ``ValueError`` naming the file,
the record's index and id, and the field.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from artquant_core.levels import APDD_SCALE, LevelScale

TASK_TYPES = ("score", "description")
_KNOWN_KEYS = {"id", "image", "gt_score", "level_probs", "conversations", "task_type", "std", "attributes"}
PROBS_SUM_TOLERANCE = 1e-3


@dataclass
class Record:
    """One record; ``image`` is the resolved image path (absolute unless given relative)."""

    id: str
    image: str
    gt_score: float | None = None
    level_probs: list[float] | None = None
    conversations: list[dict[str, str]] = field(default_factory=list)
    task_type: str = "score"
    std: float | None = None
    attributes: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def question(self) -> str:
        """The first human turn."""
        return self.conversations[0]["value"]

    @property
    def answer(self) -> str:
        """The first gpt turn (the level sentence, or the description)."""
        return self.conversations[1]["value"]

    def to_dict(self, relative_to: str | Path | None = None) -> dict[str, Any]:
        """The record as JSON-ready dict; ``image`` relative to ``relative_to`` when inside it."""
        image = self.image
        if relative_to is not None and os.path.isabs(image):
            base = os.path.abspath(relative_to)
            if os.path.commonpath([base, os.path.abspath(image)]) == base:
                image = Path(os.path.relpath(image, base)).as_posix()
        out: dict[str, Any] = {"id": self.id, "image": image}
        if self.gt_score is not None:
            out["gt_score"] = self.gt_score
        if self.level_probs is not None:
            out["level_probs"] = list(self.level_probs)
        if self.std is not None:
            out["std"] = self.std
        out["conversations"] = [dict(turn) for turn in self.conversations]
        if self.task_type != "score":
            out["task_type"] = self.task_type
        if self.attributes:
            out["attributes"] = dict(self.attributes)
        out.update(self.extra)
        return out


class _RecordError:
    """Builds 'file: record i (id ...): field 'f': problem' messages."""

    def __init__(self, path: Path, index: int, raw: Any):
        self.path, self.index = path, index
        self.id = raw.get("id") if isinstance(raw, dict) else None

    def __call__(self, field_name: str, problem: str) -> ValueError:
        return ValueError(f"{self.path}: record {self.index} (id {self.id!r}): field {field_name!r}: {problem}")


def write_json_atomic(path: str | Path, obj: Any, indent: int | None = None) -> Path:
    """Write ``obj`` as JSON through a temporary file renamed into place: a killed writer leaves the old file."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=indent))
    os.replace(tmp, path)
    return path


def read_json_or_jsonl(path: Path) -> list[Any]:
    """The rows of a JSON list (or one object) or of a JSON Lines file (``.jsonl``); bad JSON names the line."""
    text = path.read_text(encoding="utf-8-sig")
    if not text.strip():
        raise ValueError(f"{path}: empty records file")
    if path.suffix.lower() != ".jsonl":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            if not text.lstrip().startswith("{"):  # not JSONL either
                raise ValueError(f"{path}: not valid JSON: {exc}") from exc
        else:
            if isinstance(data, list):
                return data
            if not isinstance(data, dict):
                raise ValueError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
            return [data]  # a one-line JSONL file
    rows = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {line_number} is not valid JSON: {exc}") from exc
    return rows


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _check_conversations(conversations: Any, task_type: str, error: _RecordError) -> list[dict[str, str]]:
    if not isinstance(conversations, list) or not conversations:
        raise error("conversations", "must be a non-empty list of {from, value} turns")
    if len(conversations) % 2:
        raise error("conversations", f"must alternate human/gpt turns, got {len(conversations)} turns")
    turns = []
    for position, turn in enumerate(conversations):
        expected = "human" if position % 2 == 0 else "gpt"
        if not isinstance(turn, dict) or turn.get("from") != expected or not isinstance(turn.get("value"), str):
            raise error("conversations", f"turn {position} must be {{'from': '{expected}', 'value': str}}, "
                                         f"got {turn!r}"[:300])
        if expected == "gpt" and not turn["value"].strip():
            what = "description" if task_type == "description" else "answer"
            raise error("conversations", f"turn {position} has an empty {what} text")
        turns.append({"from": turn["from"], "value": turn["value"]})
    return turns


def _check_score(raw: dict, scale: LevelScale, error: _RecordError, required: bool) -> float | None:
    if "gt_score" not in raw or raw["gt_score"] is None:
        if required:
            raise error("gt_score", "missing (score records need a gt_score)")
        return None
    score = _number(raw["gt_score"])
    if score is None:
        raise error("gt_score", f"must be a number, got {raw['gt_score']!r}")
    if not (scale.min <= score <= scale.max):  # NaN fails too
        raise error("gt_score", f"{score!r} is outside the scale's range [{scale.min:g}, {scale.max:g}]")
    return score


def _check_level_probs(value: Any, scale: LevelScale, error: _RecordError) -> list[float] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != len(scale):
        length = len(value) if isinstance(value, list) else type(value).__name__
        raise error("level_probs", f"must be a list of {len(scale)} probabilities (one per level "
                                   f"{', '.join(scale.words)}), got {length}")
    probs = [_number(p) for p in value]
    for position, p in enumerate(probs):
        if p is None or math.isnan(p):
            raise error("level_probs", f"entry {position} is {value[position]!r}, not a number")
        if p < 0:
            raise error("level_probs", f"entry {position} is negative ({p!r})")
    total = sum(probs)
    if abs(total - 1.0) > PROBS_SUM_TOLERANCE:
        raise error("level_probs", f"sums to {total:.6g}, not 1 (tolerance {PROBS_SUM_TOLERANCE:g})")
    return probs


def _parse_record(raw: Any, index: int, path: Path, base: Path, check_images: bool,
                  scale: LevelScale) -> Record:
    error = _RecordError(path, index, raw)
    if not isinstance(raw, dict):
        raise error("record", f"must be a JSON object, got {type(raw).__name__}")
    for key in ("id", "image", "conversations"):
        if key not in raw:
            raise error(key, "missing")
    if not isinstance(raw["id"], (str, int)) or isinstance(raw["id"], bool) or str(raw["id"]) == "":
        raise error("id", f"must be a non-empty string or integer, got {raw['id']!r}")
    task_type = raw.get("task_type", "score")
    if task_type not in TASK_TYPES:
        raise error("task_type", f"must be one of {TASK_TYPES}, got {task_type!r}")
    if not isinstance(raw["image"], str) or not raw["image"].strip():
        raise error("image", f"must be a non-empty path string, got {raw['image']!r}")
    image = raw["image"] if os.path.isabs(raw["image"]) else str(base / raw["image"])
    if check_images and not os.path.isfile(image):
        raise error("image", f"file not found: {image}")
    conversations = _check_conversations(raw["conversations"], task_type, error)
    gt_score = _check_score(raw, scale, error, required=task_type == "score")
    level_probs = _check_level_probs(raw.get("level_probs"), scale, error)
    std = raw.get("std")
    if std is not None:
        std = _number(std)
        if std is None or not (math.isfinite(std) and std > 0):
            raise error("std", f"must be a positive finite number, got {raw['std']!r}")
    attributes = raw.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise error("attributes", f"must be an object {{name: score}}, got {type(attributes).__name__}")
    for name, value in attributes.items():
        number = _number(value)
        if number is None or not math.isfinite(number):
            raise error("attributes", f"attribute {name!r} must be a finite number, got {value!r}")
    return Record(id=str(raw["id"]), image=image, gt_score=gt_score, level_probs=level_probs,
                  conversations=conversations, task_type=task_type, std=std,
                  attributes={k: float(v) for k, v in attributes.items()},
                  extra={k: v for k, v in raw.items() if k not in _KNOWN_KEYS})


def load_records(path: str | Path, image_root: str | Path | None = None, check_images: bool = True,
                 scale: LevelScale = APDD_SCALE) -> list[Record]:
    """Read and validate the records in ``path`` (a JSON list, or JSONL: by extension or content).

    Relative image paths resolve against ``image_root`` if given, else the records file's
    folder; with ``check_images`` every image file must exist. ``scale`` bounds ``gt_score``
    and fixes the length of ``level_probs``. Raises ``FileNotFoundError`` for a missing file and
    ``ValueError`` naming the file, record index, id and field for a bad record.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"records file not found: {path}")
    base = Path(image_root) if image_root is not None else path.resolve().parent
    if image_root is not None and not base.is_dir():
        raise FileNotFoundError(f"image_root is not a directory: {base}")
    return [_parse_record(raw, index, path, base, check_images, scale)
            for index, raw in enumerate(read_json_or_jsonl(path))]


def write_records(records: Iterable[Record], path: str | Path) -> Path:
    """Write ``records`` to ``path``: JSONL if it ends in ``.jsonl``, else a JSON list.

    Image paths inside the file's folder are written relative to it (so the folder can move).
    The file is written to a temporary name first and renamed, so readers never see half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.resolve().parent
    rows = [r.to_dict(relative_to=base) for r in records]
    if path.suffix.lower() == ".jsonl":
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    else:
        text = json.dumps(rows, ensure_ascii=False, indent=1) + "\n"
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
    return path
