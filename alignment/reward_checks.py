"""Checks of the reward a reward-gradient trainer is given: loadable, and differentiable in every part."""

from __future__ import annotations

from typing import Any


def non_differentiable_parts(reward: Any) -> list[str]:
    """Names of the parts of ``reward`` (itself, or a composite's components) that give no gradient."""
    parts = getattr(reward, "components_", None)
    if isinstance(parts, dict):
        found = []
        for key, value in parts.items():
            inner = value[0] if isinstance(value, tuple) else value
            found += [key if n == getattr(inner, "name", n) else f"{key}.{n}" for n in non_differentiable_parts(inner)]
        if found or getattr(reward, "differentiable", False):
            return found
    if not getattr(reward, "differentiable", False):
        return [str(getattr(reward, "name", type(reward).__name__))]
    return []


def check_differentiable(reward: Any) -> None:
    """Refuse a reward that gives no gradient (or a composite with such a part), naming it."""
    bad = non_differentiable_parts(reward)
    if bad:
        raise ValueError(f"reward {getattr(reward, 'name', reward)!r} is not differentiable (non-differentiable: "
                         f"{', '.join(bad)}); reward-gradient training backpropagates through the reward — "
                         "use a differentiable reward, or DDPO for this one")

