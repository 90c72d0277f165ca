"""Custom rewards from a spec: ``dotted.module:name`` or ``path/to/file.py:Name``.

``name`` is a function ``(images, prompts) -> scores`` or a class, instantiated
with no arguments, whose instances are such callables. It gets the validated
float pixels ``(B, 3, H, W)`` in ``[0, 1]`` (one image size per call) and the
prompts (a list of strings, or ``None``) and returns ``B`` scores (a tensor, or
anything ``torch.as_tensor`` takes). It is wrapped in a
:class:`~reward.base.BaseReward`, so it gets the same validation, empty-batch
handling, mixed-size splitting, shape check, NaN guard and composition as the
built-in rewards. A class that already subclasses ``BaseReward`` is used as it is.

``differentiable`` comes from a ``differentiable`` attribute of the function (or of
the class / instance) when there is one, else it is ``False``: a custom reward
must say that its scores are a differentiable function of the pixels before
reward-gradient training may use it. The reward's ``name`` is the spec.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any, Callable

import torch

from reward.base import BaseReward, Reward

_IDENTIFIER = r"[A-Za-z_]\w*"
#: ``package.module:name`` — a dotted identifier path, a colon, an identifier.
MODULE_SPEC = re.compile(rf"^(?P<module>{_IDENTIFIER}(?:\.{_IDENTIFIER})*):(?P<attr>{_IDENTIFIER})$")
#: ``path/to/file.py:Name`` — anything ending in ``.py``, a colon, an identifier.
FILE_SPEC = re.compile(rf"^(?P<file>.+\.py):(?P<attr>{_IDENTIFIER})$", re.S)


def is_custom_spec(body: str) -> bool:
    """Is ``body`` (a term without weight) one of the two custom forms?"""
    body = body.strip()
    return bool(MODULE_SPEC.match(body) or FILE_SPEC.match(body))


class FunctionReward(BaseReward):
    """A plain ``(images, prompts) -> scores`` callable behind the :class:`BaseReward` call path."""

    def __init__(self, function: Callable[..., Any], name: str, differentiable: bool = False) -> None:
        self.function = function
        self.name = name
        self.differentiable = bool(differentiable)

    def compute(self, images: torch.Tensor, prompts: list[str] | None) -> torch.Tensor:
        values = self.function(images, prompts)
        # Lists and arrays are accepted; a tensor keeps its graph (and the shape check follows in BaseReward).
        return values if isinstance(values, torch.Tensor) else torch.as_tensor(values, dtype=torch.float64)

    def __repr__(self) -> str:
        return f"FunctionReward({self.name!r}, differentiable={self.differentiable})"


def _import_module(module_name: str, spec: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ValueError(f"reward spec {spec!r}: no module named {exc.name!r} (is the package installed, "
                             "or its folder on PYTHONPATH? For a file, write path/to/file.py:Name)") from exc
        raise ValueError(f"reward spec {spec!r}: importing {module_name!r} failed: {exc}") from exc
    except Exception as exc:  # the module itself raised: name it, keep the cause chained
        raise ValueError(f"reward spec {spec!r}: importing {module_name!r} raised "
                         f"{type(exc).__name__}: {exc}") from exc


def _import_file(file: str, spec: str) -> Any:
    path = Path(file).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"reward spec {spec!r}: no file {file!r} (relative paths start at the "
                                f"working directory, {Path.cwd()})")
    path = path.resolve()
    # A name unique to the file, registered in sys.modules so dataclasses and pickling inside it work.
    module_name = f"_artquant_custom_reward_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise ValueError(f"reward spec {spec!r}: cannot load {file!r} as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise ValueError(f"reward spec {spec!r}: running {file!r} raised {type(exc).__name__}: {exc}") from exc
    return module


def _wrap(target: Any, spec: str) -> Reward:
    if isinstance(target, type):
        try:
            instance = target()
        except Exception as exc:
            raise ValueError(f"reward spec {spec!r}: {target.__name__}() failed ({type(exc).__name__}: {exc}); "
                             "a custom reward class is built with no arguments") from exc
        if isinstance(instance, BaseReward):
            return instance  # already has the shared call path, its own name and flag
        if not callable(instance):
            raise ValueError(f"reward spec {spec!r}: {target.__name__} instances are not callable; define "
                             "__call__(self, images, prompts) returning one score per image")
        return FunctionReward(instance, spec, getattr(instance, "differentiable", False))
    if not callable(target):
        raise ValueError(f"reward spec {spec!r}: {type(target).__name__} object is not callable; point at a "
                         "function (images, prompts) -> scores or a class")
    return FunctionReward(target, spec, getattr(target, "differentiable", False))


def load_custom_reward(spec: str) -> Reward:
    """The reward named by ``module:name`` or ``file.py:Name`` (see the module docstring)."""
    spec = spec.strip()
    file_match, module_match = FILE_SPEC.match(spec), MODULE_SPEC.match(spec)
    if file_match:
        module, attr, where = _import_file(file_match["file"], spec), file_match["attr"], file_match["file"]
    elif module_match:
        module, attr, where = _import_module(module_match["module"], spec), module_match["attr"], module_match["module"]
    else:
        raise ValueError(f"reward spec {spec!r} is neither 'dotted.module:name' nor 'path/to/file.py:Name'")
    if not hasattr(module, attr):
        public = sorted(n for n in vars(module) if not n.startswith("_") and callable(getattr(module, n)))
        raise ValueError(f"reward spec {spec!r}: {where!r} has no attribute {attr!r} "
                         f"(callables there: {', '.join(public[:12]) or 'none'})")
    return _wrap(getattr(module, attr), spec)
