"""Per-prompt reward normalisation: DDPO's running statistics, GRPO's stateless group statistics."""

from __future__ import annotations

from collections import deque
from typing import Any, Hashable, Sequence

import numpy as np


def group_advantages(rewards: np.ndarray, group_ids: Sequence[Hashable], eps: float = 1e-6) -> np.ndarray:
    """``(r - mean) / (std + eps)`` with mean and (population) std over each reward's own group (float64).

    GRPO's advantage: a sample is judged only against the other samples of its group (the same prompt,
    this epoch), so nothing carries across epochs and there is no state to checkpoint. A group of
    identical rewards gets advantages of 0 up to the rounding of its mean, never NaN (``eps``).
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    if len(group_ids) != len(rewards):
        raise ValueError(f"{len(group_ids)} group ids for {len(rewards)} rewards")
    ids = np.asarray(list(group_ids), dtype=object)
    advantages = np.empty_like(rewards)
    for group in dict.fromkeys(ids.tolist()):
        mask = ids == group
        members = rewards[mask]
        advantages[mask] = (members - members.mean()) / (members.std() + eps)
    return advantages


class PerPromptStatTracker:
    """Advantages ``(r - mean) / std`` with statistics kept per prompt.

    Each prompt keeps a buffer of its last ``buffer_size`` rewards; until a
    prompt has ``min_count`` rewards its advantages use the statistics of the
    whole current batch instead (a new prompt's few samples give no reliable std).

    The state is plain JSON (``state_dict`` / ``load_state_dict``) so it checkpoints.
    """

    def __init__(self, buffer_size: int = 16, min_count: int = 16) -> None:
        if buffer_size < 1 or min_count < 1:
            raise ValueError(f"buffer_size and min_count must be >= 1, got {buffer_size}, {min_count}")
        self.buffer_size, self.min_count = int(buffer_size), int(min_count)
        self.buffers: dict[str, deque] = {}

    def update(self, prompts: Sequence[str], rewards: np.ndarray) -> np.ndarray:
        """Add ``rewards`` (one per prompt in ``prompts``) and return their advantages."""
        rewards = np.asarray(rewards, dtype=np.float64)
        if len(prompts) != len(rewards):
            raise ValueError(f"{len(prompts)} prompts for {len(rewards)} rewards")
        prompts = np.asarray(list(prompts), dtype=object)
        advantages = np.empty_like(rewards)
        batch_mean, batch_std = rewards.mean(), rewards.std() + 1e-6
        for prompt in dict.fromkeys(prompts.tolist()):
            mask = prompts == prompt
            buf = self.buffers.setdefault(prompt, deque(maxlen=self.buffer_size))
            buf.extend(rewards[mask].tolist())
            if len(buf) < self.min_count:
                mean, std = batch_mean, batch_std
            else:
                mean, std = float(np.mean(buf)), float(np.std(buf)) + 1e-6
            advantages[mask] = (rewards[mask] - mean) / std
        return advantages

    def stats(self) -> dict[str, Any]:
        return {"num_prompts": len(self.buffers),
                "mean_buffer_len": float(np.mean([len(b) for b in self.buffers.values()])) if self.buffers else 0.0}

    def clear(self) -> None:
        self.buffers = {}

    def state_dict(self) -> dict[str, Any]:
        return {"buffer_size": self.buffer_size, "min_count": self.min_count,
                "buffers": {p: list(b) for p, b in self.buffers.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer_size, self.min_count = int(state["buffer_size"]), int(state["min_count"])
        self.buffers = {p: deque((float(v) for v in vals), maxlen=self.buffer_size)
                        for p, vals in state["buffers"].items()}
