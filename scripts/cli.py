"""The ``artquant`` command: a thin dispatcher over the packages' sub-command modules.

Each sub-command lives beside the code it drives, as a module with
``main(argv: list[str]) -> int``; this file only routes to it and turns
user errors into one clear line (set ``ARTQUANT_DEBUG=1`` for the traceback).

Also runnable as ``python -m scripts.cli`` — the form ``accelerate launch -m``
needs for multi-process training.
"""

from __future__ import annotations

import os
import sys
from importlib import import_module

COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("scripts.demo", "end-to-end run on the embedded defaults, writes report.html"),
    "synthart": ("artquant_core.commands.synthart", "write the procedural SynthArt data set"),
    "train-scorer": ("artquant_core.commands.train_scorer", "train an ArtQuant scorer (YAML + --key value)"),
    "eval": ("artquant_core.commands.evaluate", "metrics + scatter plot of a model or predictions file"),
    "score": ("artquant_core.commands.score", "score (and describe) images with a scorer"),
    "rerank": ("reward.commands.rerank", "best-of-N reranking with a contact sheet"),
    "ddpo": ("alignment.commands.ddpo", "DDPO fine-tuning of a diffusion model"),
    "reward-grad": ("alignment.commands.reward_grad", "DRaFT-K / AlignProp reward-gradient fine-tuning"),
    "flow-grpo": ("alignment.commands.flow_grpo", "Flow-GRPO fine-tuning of a flow-matching model (SD3)"),
    "dpo": ("alignment.commands.dpo", "Diffusion-DPO on preference pairs (a file, or sampled and ranked)"),
    "tiny-sd": ("alignment.commands.tiny_sd", "write the shipped painter (tiny SD trained on SynthArt), or --random-init"),
    "tiny-sd3": ("alignment.commands.tiny_sd3", "write a tiny random-init Stable Diffusion 3 (flow matching, no T5)"),
}

# Errors that mean "the user gave something wrong": shown as one line.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
               PermissionError, KeyError, FloatingPointError, RuntimeError, OSError)


def _usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items())
    return (f"usage: artquant <command> [options]    (artquant --version; artquant <command> --help)\n\n"
            f"commands:\n{rows}\n")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage(), end="")
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"artquant {version('artquant-toolkit')}")
        except PackageNotFoundError:
            print("artquant (not installed as a package)")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(name, COMMANDS, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        print(f"artquant: error: unknown command {name!r}{hint}; known: {', '.join(COMMANDS)}",
              file=sys.stderr)
        return 2
    module = import_module(COMMANDS[name][0])
    try:
        return int(module.main(rest) or 0)
    except KeyboardInterrupt:
        print("artquant: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        if os.environ.get("ARTQUANT_DEBUG"):
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"artquant {name}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
