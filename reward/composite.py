"""Weighted sums of rewards, with optional per-component z-score normalisation.

Mixing an aesthetic reward with a hacking monitor (JPEG size, saturation) is the
usual mitigation for reward hacking. Components live on different scales, so
each can be z-scored first: per batch, or with running statistics that persist
across steps (and checkpoints, via ``state_dict``) and that are merged across
processes when ``torch.distributed`` is initialised, so every rank normalises
identically.

The images are validated once, into an :class:`~artquant_core.images.ImageBatch`
that every component built on :class:`~reward.base.BaseReward` takes as it is;
other callables get the images as the caller passed them.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from artquant_core.images import ImageBatch, image_batch
from reward.base import Reward, check_finite, check_prompts, output_dtype

NORMALIZE_MODES = ("none", "batch_zscore", "running_zscore")


class RunningMoments:
    """Count, mean and sum of squared deviations (Welford / Chan), in float64."""

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0

    @property
    def std(self) -> float:
        return (self.m2 / self.count) ** 0.5 if self.count else 0.0

    def update(self, values: torch.Tensor) -> None:
        values = values.detach().to(torch.float64).reshape(-1)
        stats = torch.stack([torch.tensor(float(values.numel()), dtype=torch.float64),
                             values.mean() if values.numel() else torch.tensor(0.0, dtype=torch.float64),
                             ((values - values.mean()) ** 2).sum() if values.numel()
                             else torch.tensor(0.0, dtype=torch.float64)])
        for count, mean, m2 in _gather_across_ranks(stats):
            self._merge(int(count), float(mean), float(m2))

    def _merge(self, count: int, mean: float, m2: float) -> None:
        if count == 0:
            return
        total = self.count + count
        delta = mean - self.mean
        self.mean += delta * count / total
        self.m2 += m2 + delta * delta * self.count * count / total
        self.count = total

    def state_dict(self) -> dict[str, float]:
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        self.count, self.mean, self.m2 = int(state["count"]), float(state["mean"]), float(state["m2"])


def _gather_across_ranks(stats: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's ``(count, mean, m2)`` — just this one outside ``torch.distributed``."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [stats]
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    local = stats.to(device)
    gathered = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, local)
    return [g.cpu() for g in gathered]


class CompositeReward:
    """``sum_i weight_i * normalise_i(reward_i(images, prompts))``.

    ``normalize``: ``"none"`` (raw values), ``"batch_zscore"`` (each component
    standardised over the batch) or ``"running_zscore"`` (standardised with
    running statistics updated by every call in training mode, first updated
    with the current batch; :meth:`eval` freezes them). Statistics are detached:
    gradients see them as constants. A standard deviation below ``eps`` counts
    as ``eps``.
    """

    accepts_image_batch = True  # a composite inside a composite takes the validated batch too

    def __init__(self, components: Mapping[str, tuple[Reward, float]], normalize: str = "none",
                 eps: float = 1e-6, name: str | None = None) -> None:
        if not components:
            raise ValueError("CompositeReward needs at least one component")
        if normalize not in NORMALIZE_MODES:
            raise ValueError(f"unknown normalize mode {normalize!r}; known: {', '.join(NORMALIZE_MODES)}")
        self.components_: dict[str, tuple[Reward, float]] = {}
        for key, entry in components.items():
            if key == "total":
                raise ValueError("component name 'total' is reserved for the weighted sum")
            try:
                reward, weight = entry
                weight = float(weight)
            except (TypeError, ValueError):
                raise ValueError(f"component {key!r} must be a (reward, weight) pair, got {entry!r}") from None
            if not callable(reward):
                raise ValueError(f"component {key!r}: {reward!r} is not callable")
            if weight != weight or weight in (float("inf"), float("-inf")):
                raise ValueError(f"component {key!r} has a non-finite weight {weight}")
            self.components_[str(key)] = (reward, weight)
        self.normalize = normalize
        self.eps = float(eps)
        self.training = True
        self.stats = {key: RunningMoments() for key in self.components_}
        self.name = name or "+".join(f"{key}*{w:g}" for key, (_, w) in self.components_.items())
        self.differentiable = all(getattr(r, "differentiable", False) for r, _ in self.components_.values())

    # -- mode and state ------------------------------------------------------------
    def train(self, mode: bool = True) -> "CompositeReward":
        self.training = bool(mode)
        return self

    def eval(self) -> "CompositeReward":
        return self.train(False)

    def state_dict(self) -> dict[str, Any]:
        return {"normalize": self.normalize, "stats": {k: s.state_dict() for k, s in self.stats.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        missing = set(self.stats) - set(state.get("stats", {}))
        if missing:
            raise ValueError(f"CompositeReward state lacks statistics for components {sorted(missing)}")
        for key, stats in self.stats.items():
            stats.load_state_dict(state["stats"][key])

    # -- evaluation ----------------------------------------------------------------
    def _normalise(self, key: str, values: torch.Tensor) -> torch.Tensor:
        if self.normalize == "none":
            return values
        if self.normalize == "batch_zscore":
            detached = values.detach().to(torch.float64)
            mean, std = detached.mean(), detached.std(unbiased=False)
        else:
            if self.training:
                self.stats[key].update(values)
            mean, std = self.stats[key].mean, self.stats[key].std
            if self.stats[key].count == 0:
                raise RuntimeError(f"CompositeReward: running statistics of {key!r} are empty in eval mode; "
                                   "call it in training mode first or load_state_dict")
        std = max(float(std), self.eps)
        return (values - float(mean)) / std

    def components(self, images: Any, prompts: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Every component's raw values plus the weighted, normalised sum under ``"total"``."""
        batch = image_batch(images, name="images")  # once, for every component
        # Callables that do not take an ImageBatch see what they would see when called alone.
        as_given = batch.pixels if isinstance(images, ImageBatch) else images
        size = len(batch)
        prompts = check_prompts(prompts, size, self.name)
        wants_grad = batch.requires_grad and torch.is_grad_enabled()
        if wants_grad and not self.differentiable:
            frozen = [k for k, (r, _) in self.components_.items() if not getattr(r, "differentiable", False)]
            raise ValueError(f"composite reward {self.name!r} mixes non-differentiable components {frozen} "
                             "and the images require grad; use only differentiable components for "
                             "reward-gradient training, or pass images.detach()")
        dtype, device = output_dtype(batch), batch.device
        out: dict[str, torch.Tensor] = {}
        total = torch.zeros(size, dtype=dtype, device=device)
        for key, (reward, weight) in self.components_.items():
            values = reward(batch if getattr(reward, "accepts_image_batch", False) else as_given, prompts)
            if not isinstance(values, torch.Tensor) or values.shape != (size,):
                shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
                raise RuntimeError(f"component {key!r} returned {shape}, expected a ({size},) tensor")
            values = check_finite(values.to(device=device, dtype=dtype), key)
            out[key] = values
            if size:
                total = total + weight * self._normalise(key, values)
        out["total"] = check_finite(total, self.name)
        return out

    def __call__(self, images: Any, prompts: Sequence[str] | None = None) -> torch.Tensor:
        return self.components(images, prompts)["total"]

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}: ({r!r}, {w:g})" for k, (r, w) in self.components_.items())
        return f"CompositeReward({{{parts}}}, normalize={self.normalize!r})"
