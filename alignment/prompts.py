"""Prompt lists given inline or as a text file (one prompt a line)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def load_prompts(value: str | Sequence[str] | None, field_name: str, allow_empty: bool = False) -> list[str]:
    """Prompts from a list, or from a file when ``value`` is one path (a string or a one-item list).

    A one-item value that names an existing file, or ends in ``.txt``, is read
    as a file; a missing file or an empty list raises, naming ``field_name``.
    """
    if value is None:
        value = []
    if isinstance(value, (str, Path)):
        value = [str(value)]
    value = [str(v) for v in value]
    if len(value) == 1 and (Path(value[0]).is_file() or value[0].endswith(".txt")):
        path = Path(value[0])
        if not path.is_file():
            raise FileNotFoundError(f"{field_name}: prompts file not found: {path}")
        prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not prompts and not allow_empty:
            raise ValueError(f"{field_name}: prompts file {path} is empty")
        return prompts
    prompts = [p.strip() for p in value if p.strip()]
    if not prompts and not allow_empty:
        raise ValueError(f"{field_name}: no prompts given")
    return prompts
