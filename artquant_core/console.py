"""A quiet, informative console for the ``artquant`` commands.

The commands' own output (step lines, their tqdm bars, the result) stays on the
terminal; library chatter — transformers / diffusers / accelerate / peft logging,
their "Loading weights" progress bars, Python warnings, the HF Trainer's raw log
dicts — goes to ``OUT/artquant.log`` in the run folder instead. ``--verbose`` shows
it live as well.

The run folder is known only once a command has parsed its arguments, so
:func:`quiet_libraries` buffers the chatter in memory until the command calls
:func:`log_to_folder`; outside :func:`quiet_libraries` that call does nothing, so
library code may call it freely.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import sys
from pathlib import Path
from typing import Iterator, TextIO

LOG_FILE_NAME = "artquant.log"
#: loggers of libraries that log through plain ``logging`` (transformers and diffusers have their own API);
#: ``py.warnings`` receives Python warnings once ``logging.captureWarnings`` is on
PLAIN_LOGGERS = ("accelerate", "peft", "huggingface_hub", "torch", "PIL", "py.warnings")
LIBRARY_LOGGER = "artquant.library"
_FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"

_active: list[_QuietConsole] = []


def library_logger() -> logging.Logger:
    """Where artquant code sends chatter it relays from a library (e.g. the HF Trainer's log dicts)."""
    return logging.getLogger(LIBRARY_LOGGER)


def is_quiet() -> bool:
    """Whether library chatter is being kept off the terminal right now (a quiet, non-verbose console)."""
    return bool(_active) and not _active[-1].verbose


def log_to_folder(folder: str | Path) -> Path | None:
    """Write the library chatter (buffered so far, and from now on) to ``folder/artquant.log``.

    The file, and ``folder``, are created with the first record (or when the :func:`quiet_libraries` block
    ends without an exception), so a command that fails on its input before anything was logged leaves no
    folder behind. Returns the log file's path, or ``None`` outside :func:`quiet_libraries`.
    """
    if not _active:
        return None
    return _active[-1].attach(Path(folder) / LOG_FILE_NAME)


class _FolderOnFirstRecord(logging.FileHandler):
    """A log file (and its folder) that appears only with its first record.

    Commands attach their log as soon as they know the run folder, before all of their input has been read:
    a command that then fails on bad input must not leave an empty ``eval_out/`` or ``rerank_out/`` behind.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path, mode="a", encoding="utf-8", delay=True)

    def _open(self) -> TextIO:
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()

    def create(self) -> None:
        """The file now, empty if nothing was logged: a run that finished keeps the log its folder promises."""
        self.acquire()
        try:
            if self.stream is None:
                self.stream = self._open()
        finally:
            self.release()


class _QuietConsole:
    """The handlers and library settings of one :func:`quiet_libraries` block, and how to undo them."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        # capacity 1: once a file is attached every record is written at once (a killed run keeps its log);
        # before that the buffer simply grows, because a MemoryHandler without a target never drops records
        self.sink = logging.handlers.MemoryHandler(capacity=1, flushLevel=logging.CRITICAL + 1, target=None)
        self.handlers: list[logging.Handler] = [self.sink]
        if verbose:
            live = logging.StreamHandler(sys.stderr)
            live.setFormatter(logging.Formatter("%(name)s %(levelname)s: %(message)s"))
            self.handlers.append(live)
        self.file_handler: _FolderOnFirstRecord | None = None
        self._undo: list = []

    def attach(self, path: Path) -> Path:
        if self.file_handler is None:
            self.file_handler = _FolderOnFirstRecord(path)
            self.file_handler.setFormatter(logging.Formatter(_FORMAT))
            self.sink.setTarget(self.file_handler)
            self.sink.flush()
        return Path(self.file_handler.baseFilename)

    def enter(self) -> None:
        self._quiet_hf_library("transformers")
        self._quiet_hf_library("diffusers")
        self._quiet_hub_progress_bars()
        for name in (*PLAIN_LOGGERS, LIBRARY_LOGGER):
            self._route_plain_logger(logging.getLogger(name), level=logging.INFO if name == LIBRARY_LOGGER else None)
        logging.captureWarnings(True)
        self._undo.append(lambda: logging.captureWarnings(False))

    def exit(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self.sink.close()
        if self.file_handler is not None:
            self.file_handler.close()

    def _quiet_hf_library(self, package: str) -> None:
        """transformers / diffusers: their handler off (unless verbose), ours on, their progress bars off."""
        try:
            lib_logging = __import__(f"{package}.utils.logging", fromlist=["logging"])
        except ImportError:
            return
        verbosity, bars = lib_logging.get_verbosity(), lib_logging.is_progress_bar_enabled()
        for handler in self.handlers:
            lib_logging.add_handler(handler)
        lib_logging.set_verbosity_warning()
        if not self.verbose:
            lib_logging.disable_default_handler()
            lib_logging.disable_progress_bar()

        def undo() -> None:
            for handler in self.handlers:
                lib_logging.remove_handler(handler)
            lib_logging.enable_default_handler()
            lib_logging.set_verbosity(verbosity)
            if bars:
                lib_logging.enable_progress_bar()
        self._undo.append(undo)

    def _quiet_hub_progress_bars(self) -> None:
        if self.verbose:
            return
        try:
            from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
        except ImportError:
            return
        if not are_progress_bars_disabled():
            disable_progress_bars()
            self._undo.append(enable_progress_bars)

    def _route_plain_logger(self, logger: logging.Logger, level: int | None) -> None:
        """Our handlers on ``logger``, and no propagation to the root logger (whose last-resort handler prints)."""
        old_propagate, old_level = logger.propagate, logger.level
        for handler in self.handlers:
            logger.addHandler(handler)
        logger.propagate = False
        if level is not None:
            logger.setLevel(level)

        def undo() -> None:
            for handler in self.handlers:
                logger.removeHandler(handler)
            logger.propagate, logger.level = old_propagate, old_level
        self._undo.append(undo)


@contextlib.contextmanager
def quiet_libraries(log_file: str | Path | None = None, verbose: bool = False) -> Iterator[None]:
    """Keep library chatter off the terminal (to ``log_file``, or to the folder given later to
    :func:`log_to_folder`); ``verbose=True`` also shows it live on stderr. Everything is restored on exit."""
    console = _QuietConsole(verbose)
    console.enter()
    _active.append(console)
    try:
        if log_file is not None:
            console.attach(Path(log_file))
        yield
        if console.file_handler is not None:  # finished without an exception: the log exists, even if empty
            console.file_handler.create()
    finally:
        _active.remove(console)
        console.exit()


def pop_verbose(argv: list[str]) -> tuple[list[str], bool]:
    """``argv`` without ``--verbose`` (before a bare ``--``), and whether one was there."""
    cut = argv.index("--") if "--" in argv else len(argv)
    head = [a for a in argv[:cut] if a != "--verbose"]
    return head + argv[cut:], len(head) != cut
