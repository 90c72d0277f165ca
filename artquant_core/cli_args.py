"""The command-line grammar every ``artquant`` sub-command shares.

- :class:`UsageError`: the command line itself is wrong (unknown flag or key, missing
  required flag, a value of the wrong type or out of range). The dispatcher
  (``alignment/cli.py``) turns it into one line and exit status 2; every other error
  (missing input file, bad data, a model that fails) exits 1.
- :func:`command_parser`: an ``argparse`` parser that raises :class:`UsageError`
  instead of printing a usage block and exiting, shows every flag's default in
  ``--help``, and accepts both spellings of a multi-word flag (``--image-root`` and
  ``--image_root``).
- :func:`add_device_flags` / :func:`resolve_device` / :func:`resolve_dtype` /
  :func:`autocast`: the ``--device`` and ``--dtype`` of the commands that load a scorer.
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Any, Sequence


class UsageError(ValueError):
    """The command line is wrong (exit status 2). A ``ValueError``, so library callers catching
    ``ValueError`` for bad settings keep working."""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after each help string, ``(required)`` for required flags; descriptions kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_ = action.help or ""
        if "(default" in help_:  # the help already says what the default means
            return help_
        if action.required and action.option_strings:
            return f"{help_} (required)"
        if action.default is None and action.option_strings and action.nargs != 0:
            return f"{help_} (default: none)"
        return super()._get_help_string(action)


def normalize_flag_spelling(token: str, known: Sequence[str], separator: str = "-") -> str:
    """``--image_root=x`` → ``--image-root=x`` (``separator="-"``) when that spelling is a known flag.

    Only the flag name before ``=`` changes; values, short flags and unknown flags are left alone
    (so an unknown flag's error names it as the user typed it).
    """
    if not token.startswith("--") or len(token) <= 2:
        return token
    name, eq, value = token.partition("=")
    other = "_" if separator == "-" else "-"
    candidate = "--" + name[2:].replace(other, separator)
    return candidate + eq + value if candidate in known else token


class CommandParser(argparse.ArgumentParser):
    """``argparse`` with the shared grammar: :class:`UsageError` on bad input, both flag spellings."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} --help)")

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        if args is not None:
            args = self._normalized(list(args))
        return super().parse_known_args(args, namespace)

    def _normalized(self, args: list[str]) -> list[str]:
        known = list(self._option_string_actions)
        if "--" in args:  # after a bare "--" every token is a value
            cut = args.index("--")
            return [normalize_flag_spelling(a, known) for a in args[:cut]] + args[cut:]
        return [normalize_flag_spelling(a, known) for a in args]


def command_parser(prog: str, description: str | None = None, epilog: str | None = None) -> CommandParser:
    """The parser of one ``artquant`` sub-command (``prog`` e.g. ``"artquant eval"``)."""
    note = "Multi-word flags take dashes or underscores alike (--image-root or --image_root)."
    return CommandParser(prog=prog, description=description, epilog=f"{epilog}\n\n{note}" if epilog else note,
                         formatter_class=_HelpFormatter)


def wants_help(argv: Sequence[str]) -> bool:
    """``-h`` / ``--help`` anywhere before a bare ``--``."""
    for token in argv:
        if token == "--":
            return False
        if token in ("-h", "--help"):
            return True
    return False


def positive_int(text: str) -> int:
    """``type=`` for flags that must be >= 1 (argparse turns the ``ValueError`` into a usage error)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


# ----------------------------------------------------------------- device and dtype
DTYPES = ("auto", "float32", "bfloat16", "float16")


def add_device_flags(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--dtype`` for a command that loads a scorer or a reward."""
    parser.add_argument("--device", default="auto",
                        help="where the model runs: 'auto' (cuda if available, else cpu), 'cpu', 'cuda', 'cuda:1', ...")
    parser.add_argument("--dtype", default="auto", choices=DTYPES,
                        help="compute precision: 'auto' (bfloat16 on a GPU that supports it, else float32); "
                             "bfloat16/float16 run the model under autocast")


def resolve_device(name: str) -> str:
    """``"auto"`` → ``"cuda"`` when a GPU is visible, else ``"cpu"``; other names are checked."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--device {name}: CUDA is not available on this machine; use --device cpu (or auto)")
    return name


def resolve_dtype(name: str, device: str) -> Any:
    """The ``torch.dtype`` of ``--dtype`` on ``device`` (``"auto"``: bfloat16 on a capable GPU, else float32)."""
    import torch

    if name not in DTYPES:
        raise UsageError(f"--dtype {name!r}: use one of {', '.join(DTYPES)}")
    if name == "auto":
        gpu = torch.device(device).type == "cuda"
        return torch.bfloat16 if gpu and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, name)


def autocast(device: str, dtype: Any) -> contextlib.AbstractContextManager:
    """Mixed precision for ``dtype`` below float32 (the scorer's weights stay float32), else nothing."""
    import torch

    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)
