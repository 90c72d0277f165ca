"""The ``artquant`` command: a thin dispatcher over the packages' sub-command modules.

Each sub-command lives beside the code it drives, as a module with
``main(argv: list[str]) -> int``; this file only routes to it, keeps library
chatter off the console of the commands that write a run folder (to
``OUT/artquant.log``; ``--verbose`` shows it live, see :mod:`artquant_core.console`)
and turns errors into one clear line (set ``ARTQUANT_DEBUG=1`` for the traceback).

Exit status: 0 success; 2 usage error — the command line is wrong (unknown command,
flag or config key, a missing required flag, a bad value: ``UsageError``, or argparse's
own exit 2); 1 runtime error — the command line was understood but the work failed
(a missing or unreadable input file, bad data, a model that fails); 130 interrupted.

It lives in ``alignment``, the top package, because it reaches all three
(``alignment`` → ``reward`` → ``artquant_core``). Also runnable as
``python -m alignment.cli`` — the form ``accelerate launch -m`` needs for
multi-process training.
"""

from __future__ import annotations

import contextlib
import os
import sys
from importlib import import_module

from artquant_core.cli_args import UsageError, wants_help

COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("alignment.demo.run", "end-to-end run on the embedded defaults, writes report.html"),
    "synthart": ("artquant_core.commands.synthart", "write the procedural SynthArt data set"),
    "train-scorer": ("artquant_core.commands.train_scorer", "train an ArtQuant scorer (YAML + --key value)"),
    "eval": ("artquant_core.commands.evaluate", "metrics + scatter plot of a model or predictions file"),
    "score": ("artquant_core.commands.score", "score (and describe) images with a scorer"),
    "rerank": ("reward.commands.rerank", "best-of-N reranking with a contact sheet"),
    "serve-reward": ("reward.commands.serve_reward", "serve a reward over HTTP (Ray Serve) for remote:URL specs"),
    "ddpo": ("alignment.commands.ddpo", "DDPO fine-tuning of a diffusion model"),
    "reward-grad": ("alignment.commands.reward_grad", "DRaFT-K / AlignProp reward-gradient fine-tuning"),
    "flow-grpo": ("alignment.commands.flow_grpo", "Flow-GRPO fine-tuning of a flow-matching model (SD3)"),
    "dpo": ("alignment.commands.dpo", "Diffusion-DPO on preference pairs (a file, or sampled and ranked)"),
    "tiny-sd": ("alignment.commands.tiny_sd", "write the shipped painter (tiny SD trained on SynthArt), or --random-init"),
    "tiny-sd3": ("alignment.commands.tiny_sd3", "write a tiny random-init Stable Diffusion 3 (flow matching, no T5)"),
}

#: commands that write a run folder: their library chatter goes to OUT/artquant.log (--verbose: live too)
QUIET_COMMANDS = frozenset({"demo", "train-scorer", "eval", "rerank", "ddpo", "reward-grad", "flow-grpo", "dpo"})

#: fine-tuning commands whose processes keep scipy unloaded (see alignment.pipeline.import_model_libraries)
SCIPY_FREE_COMMANDS = frozenset({"ddpo", "reward-grad", "flow-grpo", "dpo"})

# Runtime errors shown as one line (exit 1); anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
               PermissionError, KeyError, FloatingPointError, RuntimeError, OSError)


def _usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items())
    return (f"usage: artquant <command> [options]    (artquant --version; artquant <command> --help)\n\n"
            f"commands:\n{rows}\n\n"
            f"{', '.join(sorted(QUIET_COMMANDS))} write library chatter (transformers, diffusers, warnings)\n"
            f"to OUT/artquant.log; add --verbose to see it live. ARTQUANT_DEBUG=1 shows tracebacks.\n"
            f"exit status: 0 ok, 1 runtime error (missing file, bad data, model failure), 2 usage error.\n")


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
    return run_command(name, rest)


def _console(name: str, argv: list[str]) -> tuple[list[str], contextlib.AbstractContextManager]:
    """The quiet console of a run-folder command (``--verbose`` taken out of ``argv``), else nothing."""
    if name not in QUIET_COMMANDS or wants_help(argv):
        return argv, contextlib.nullcontext()
    from artquant_core.console import pop_verbose, quiet_libraries

    if name in SCIPY_FREE_COMMANDS:  # before the console imports transformers' and diffusers' logging
        from alignment.pipeline import import_model_libraries

        import_model_libraries()
    argv, verbose = pop_verbose(argv)
    return argv, quiet_libraries(verbose=verbose)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run_command(name: str, argv: list[str]) -> int:
    """Run one sub-command; map its outcome to the exit status rule in the module docstring."""
    module = import_module(COMMANDS[name][0])
    argv, console = _console(name, argv)
    try:
        with console:
            return int(module.main(argv) or 0)
    except SystemExit as exc:  # argparse's --help (0) or a parser outside the shared grammar (2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except KeyboardInterrupt:
        print("artquant: interrupted", file=sys.stderr)
        return 130
    except UsageError as exc:  # before USER_ERRORS: a UsageError is a ValueError too
        if os.environ.get("ARTQUANT_DEBUG"):
            raise
        print(f"artquant {name}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except USER_ERRORS as exc:
        if os.environ.get("ARTQUANT_DEBUG"):
            raise
        print(f"artquant {name}: error: {_one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
