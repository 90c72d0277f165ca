"""One config parser for every trainer: YAML file + ``--key value`` overrides.

Works for plain dataclasses (``DDPOConfig``) and for subclasses of
``transformers.TrainingArguments`` (``ScorerTrainingConfig``) alike, through
``transformers.HfArgumentParser``: the YAML values become argparse defaults,
so the command line wins and every value goes through the same type
conversion. Keys may be spelt with dashes or underscores (``--image-root`` or
``--image_root``). Unknown keys — in the file or on the command line — and values
the config refuses are :class:`~artquant_core.cli_args.UsageError` (exit status 2),
raised before any work starts; a missing config file is ``FileNotFoundError`` (1).
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml

from artquant_core.cli_args import UsageError

T = TypeVar("T")

#: options every config-driven command takes besides its keys: (flag, help)
COMMON_OPTIONS = (("--config YAML", "YAML file of keys; the command line wins over it"),
                  ("--verbose", ("show library logging and progress bars live (they always go to "
                                 "OUTPUT_FOLDER/artquant.log)")),
                  ("-h, --help", "this list"))


def _field_names(config_cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(config_cls) if f.init]


def _unknown_key_error(key: str, known: Sequence[str], where: str) -> UsageError:
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return UsageError(f"unknown config key {key!r} in {where}{hint}")


def _underscored(token: str) -> str:
    """``--image-root=x`` → ``--image_root=x``: the field's own spelling (values are left alone)."""
    if not token.startswith("--"):
        return token
    name, eq, value = token.partition("=")
    return "--" + name[2:].replace("-", "_") + eq + value


def _raise_usage_error(message: str):
    """Replaces argparse's print-usage-and-exit with one :class:`UsageError` line."""
    raise UsageError(message)


def load_yaml_config(path: str | Path, config_cls: type) -> dict[str, Any]:
    """Read a YAML mapping and check its keys against ``config_cls``'s fields."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML ({exc})".splitlines()[0]) from None
    if not isinstance(values, dict):
        raise UsageError(f"{path}: expected a mapping of config keys, got {type(values).__name__}")
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

    argv = [_underscored(token) for token in argv or []]
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise UsageError("--config needs a path to a YAML file")
        config_path = argv[i + 1]
        del argv[i:i + 2]
    known = _field_names(config_cls)
    for token in argv:
        if token.startswith("--"):
            key = token[2:].split("=", 1)[0]
            if key not in known and not (key.startswith("no_") and key[3:] in known):
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
    parser.error = _raise_usage_error  # one line, not argparse's usage block and sys.exit(2)
    try:
        (config,) = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=False)
    except UsageError:
        raise
    except ValueError as exc:  # the config's own checks (__post_init__) refused a value
        raise UsageError(str(exc)) from exc
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


def config_help(config_cls: type, command: str, extra_usage: str = "",
                extra_options: Sequence[tuple[str, str]] = ()) -> str:
    """``--help`` text of a config-driven command: its options, then every field with its type, default
    and documented help."""
    lines = [f"usage: artquant {command} {extra_usage}[--config YAML] [--key value ...] [--verbose]", "",
             "options:"]
    lines += [f"  {flag:<16}{help_}" for flag, help_ in (*extra_options, *COMMON_OPTIONS)]
    lines += ["", "keys (--key value or --key=value; --image-root and --image_root alike):"]
    for f in dataclasses.fields(config_cls):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default = f"default {f.default!r}"
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f"default {f.default_factory()!r}"  # type: ignore[misc]
        else:
            default = "required"
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        lines.append(f"  --{f.name} ({kind}, {default})")
        lines.append(f"      {f.metadata.get('help', '')}")
    return "\n".join(lines)
