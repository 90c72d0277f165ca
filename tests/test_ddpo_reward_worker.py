"""The asynchronous reward worker: order, errors, and its own small OpenMP team."""

from __future__ import annotations

import threading

import pytest
import torch

from alignment.reward_worker import AsyncRewarder


class ThreadsSeen:
    name = "threads_seen"
    differentiable = False

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def __call__(self, images, prompts):
        self.seen.append((threading.current_thread().name, torch.get_num_threads()))
        return images.mean(dim=(1, 2, 3))


def test_worker_scores_in_order_with_one_intra_op_thread_and_leaves_the_caller_alone():
    main_threads = torch.get_num_threads()
    reward = ThreadsSeen()
    worker = AsyncRewarder(reward)
    try:
        batches = [torch.full((2, 3, 4, 4), v) for v in (0.1, 0.5, 0.9)]
        futures = [worker.submit(b, ["a", "b"]) for b in batches]
        totals = [f.result()[0] for f in futures]
    finally:
        worker.close()
    assert [t.tolist() for t in totals] == [pytest.approx([v, v]) for v in (0.1, 0.5, 0.9)]
    assert all(name.startswith("reward") and n == 1 for name, n in reward.seen), reward.seen
    assert torch.get_num_threads() == main_threads  # OpenMP team size is per thread


def test_worker_reports_a_non_finite_reward_naming_the_prompt():
    worker = AsyncRewarder(lambda images, prompts: torch.tensor([0.0, float("nan")]))
    try:
        future = worker.submit(torch.zeros(2, 3, 4, 4), ["a cat", "a dog"])
        with pytest.raises(FloatingPointError, match="a dog"):
            future.result()
    finally:
        worker.close()
