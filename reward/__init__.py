"""Rewards for diffusion fine-tuning and reranking: one protocol, many rewards."""

from __future__ import annotations

from artquant_core.lazy_exports import lazy_exports

_EXPORTS = {
    "Reward": "base",
    "ArtQuantReward": "artquant_reward",
    "CompositeReward": "composite",
    "ClipScore": "clip_rewards",
    "PickScore": "clip_rewards",
    "LaionAesthetic": "clip_rewards",
    "load_custom_reward": "custom",
    "RemoteReward": "remote",
    "RemoteRewardError": "remote",
    "load_reward": "spec",
    "best_of_n": "rerank",
    "RerankResult": "rerank",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
