"""One config parser for every trainer: YAML file + ``--key value`` overrides.

Works for plain dataclasses (``DDPOConfig``) and for subclasses of
``transformers.TrainingArguments`` (``ScorerTrainingConfig``) alike, through
``transformers.HfArgumentParser``: the YAML values become argparse defaults,
so the command line wins and every value goes through the same type
conversion. Unknown keys — in the file or on the command line — are refused
with the closest field names, before any work starts.
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml

T = TypeVar("T")


def _field_names(config_cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(config_cls) if f.init]


def _unknown_key_error(key: str, known: Sequence[str], where: str) -> ValueError:
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ValueError(f"unknown config key {key!r} in {where}{hint}")


def load_yaml_config(path: str | Path, config_cls: type) -> dict[str, Any]:
    """Read a YAML mapping and check its keys against ``config_cls``'s fields."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of config keys, got {type(values).__name__}")
    known = _field_names(config_cls)
    for key in values:
        if key not in known:
            raise _unknown_key_error(str(key), known, str(path))
    return values


def parse_config(config_cls: type[T], argv: Sequence[str] | None = None,
                 config_path: str | Path | None = None, defaults: dict[str, Any] | None = None,
                 **overrides: Any) -> T:
    """Build ``config_cls`` from an optional YAML file, ``--key value`` args and keyword overrides.

    Precedence: keyword ``overrides`` > command line > YAML > ``defaults`` (a preset, e.g. the
    demo's ``--quick``) > dataclass defaults. ``argv`` may itself contain ``--config PATH``.
    """
    from transformers import HfArgumentParser

    argv = list(argv or [])
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise ValueError("--config needs a path")
        config_path = argv[i + 1]
        del argv[i:i + 2]
    known = _field_names(config_cls)
    for token in argv:
        if token.startswith("--"):
            key = token[2:].split("=", 1)[0].replace("-", "_")
            if key not in known and not key.startswith("no_"):
                raise _unknown_key_error(key, known, "command line")
    for key in overrides:
        if key not in known:
            raise _unknown_key_error(key, known, "keyword overrides")
    for key in defaults or {}:
        if key not in known:
            raise _unknown_key_error(key, known, "preset defaults")

    defaults = {**(defaults or {}), **(load_yaml_config(config_path, config_cls) if config_path else {}),
                **overrides}
    parser = HfArgumentParser(config_cls)
    # YAML values become defaults so the command line still wins; a required
    # field given in the file must not be demanded again on the command line.
    for action in parser._actions:
        if action.dest in defaults:
            action.required = False
    parser.set_defaults(**defaults)
    try:
        (config,) = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=False)
    except SystemExit as exc:  # argparse already printed the reason
        raise ValueError(f"invalid arguments for {config_cls.__name__}: {' '.join(argv)}") from exc
    for key, value in overrides.items():  # exact objects (lists, dicts) win over argparse parsing
        setattr(config, key, value)
    return config


def config_to_dict(config: Any) -> dict[str, Any]:
    """JSON-friendly view of a config dataclass (for metrics headers and wandb)."""
    if hasattr(config, "to_dict"):
        return config.to_dict()
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[f.name] = value if isinstance(value, (int, float, str, bool, type(None), list, dict)) else str(value)
    return out


def config_help(config_cls: type, command: str, extra_usage: str = "") -> str:
    """``--help`` text of a config-driven command: every field with its type, default and documented help."""
    lines = [f"usage: artquant {command} {extra_usage}[--config YAML] [--key value ...]", "", "keys:"]
    for f in dataclasses.fields(config_cls):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = "(required)"
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        lines.append(f"  --{f.name} ({kind}, default {default!r})")
        lines.append(f"      {f.metadata.get('help', '')}")
    return "\n".join(lines)
