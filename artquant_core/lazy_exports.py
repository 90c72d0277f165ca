"""Lazy attribute exports for package ``__init__`` modules.

Importing ``artquant_core`` must stay cheap (the CLI imports it before it
knows which sub-command runs) and must not pull transformers or diffusers
unless a name that needs them is used.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """Return a module ``__getattr__`` that imports ``exports[name]`` on first use."""

    def __getattr__(name: str) -> Any:
        module_name = exports.get(name)
        if module_name is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(f"{package}.{module_name}"), name)

    return __getattr__
