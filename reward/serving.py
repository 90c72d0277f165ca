"""What a reward server does, free of any web framework: routes, merged scoring, errors, stats.

:mod:`reward.serving_ray` wraps a :class:`RewardService` in a Ray Serve deployment (replicas,
``@serve.batch``); keeping the logic here means it is tested without Ray and the Ray layer
stays a thin adapter. Routes:

- ``POST /score`` (or ``POST /``): an ``.npz`` body (:mod:`reward.wire`) → ``{"rewards": [...]}``;
- ``GET /health``: ``{"status": "ok", "reward": name, ...}``;
- ``GET /stats``: the batch sizes the server formed (:class:`BatchStats`).

Errors are JSON ``{"error": message, "retryable": bool}``: 400 for a wrong request (bad body,
shape, dtype, NaN pixels, prompt count, or a reward refusing its input with ``ValueError``);
500 for a reward that fails (non-finite output: not retryable, the same images give the same
NaN) or crashes (retryable).
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import torch

from reward.wire import BadRequest, ScoreRequest, decode_request

ROUTES = ("POST /score", "GET /health", "GET /stats")


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status and JSON body."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)


class BatchStats:
    """The reward calls a server made and how many requests each merged (what batching achieved).

    Plain Python so the same class counts in-process (tests) and as a Ray actor shared by all
    replicas (:mod:`reward.serving_ray`).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls = 0
        self.requests = 0
        self.images = 0
        self.requests_per_call: collections.Counter[int] = collections.Counter()
        self.images_per_call: collections.Counter[int] = collections.Counter()

    def record(self, n_requests: int, n_images: int) -> None:
        with self._lock:
            self.calls += 1
            self.requests += n_requests
            self.images += n_images
            self.requests_per_call[n_requests] += 1
            self.images_per_call[n_images] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "reward_calls": self.calls, "requests": self.requests, "images": self.images,
                "max_batch_requests": max(self.requests_per_call, default=0),
                "max_batch_images": max(self.images_per_call, default=0),
                "mean_batch_requests": self.requests / self.calls if self.calls else 0.0,
                # JSON keys are strings: {"requests merged": number of reward calls}
                "batch_requests_histogram": {str(k): v for k, v in sorted(self.requests_per_call.items())},
                "batch_images_histogram": {str(k): v for k, v in sorted(self.images_per_call.items())},
            }


def error_reply(exc: BaseException) -> Reply:
    """The status and message of a failure while scoring (see the module docstring)."""
    message = str(exc).strip() or type(exc).__name__
    if isinstance(exc, ValueError):  # BadRequest, and a reward refusing its input (e.g. missing prompts)
        return Reply(400, {"error": message, "retryable": False})
    if isinstance(exc, FloatingPointError):
        return Reply(500, {"error": f"the reward failed: {message}", "retryable": False})
    return Reply(500, {"error": f"the reward failed: {type(exc).__name__}: {message}", "retryable": True})


class RewardService:
    """Scores decoded requests with one reward, merging several requests into one reward call.

    ``on_batch(n_requests, n_images)`` is called after every reward call (the stats).
    """

    def __init__(self, reward: Any, on_batch: Callable[[int, int], None] | None = None,
                 info: dict[str, Any] | None = None) -> None:
        self.reward = reward
        self.on_batch = on_batch
        self.info = dict(info or {})
        self.broken: str | None = None  # set after an error that leaves the device unusable

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "reward": self.reward.name,
                "differentiable": bool(getattr(self.reward, "differentiable", False)), **self.info}

    def check_health(self) -> None:
        """Raise once the replica cannot score any more, so that Ray Serve replaces it."""
        if self.broken:
            raise RuntimeError(f"reward replica unusable after: {self.broken}")

    def score_many(self, requests: list[ScoreRequest]) -> list[Reply]:
        """One reply per request. Requests whose images share size, dtype and prompt presence
        are scored by a single reward call on their concatenation."""
        groups: dict[tuple, list[int]] = collections.defaultdict(list)
        for index, request in enumerate(requests):
            key = (tuple(request.images.shape[1:]), request.images.dtype, request.prompts is None)
            groups[key].append(index)
        replies: list[Reply | None] = [None] * len(requests)
        for indices in groups.values():
            for index, reply in zip(indices, self._score_group([requests[i] for i in indices])):
                replies[index] = reply
        return replies  # type: ignore[return-value]

    def _score_group(self, group: list[ScoreRequest]) -> list[Reply]:
        try:
            values = self._call(group)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an HTTP answer, the server keeps serving
            if "CUDA error" in str(exc):
                self.broken = str(exc).splitlines()[0]
            if len(group) > 1:
                # One request can fail a merged call (NaN output, a reward refusing its input):
                # score each alone so that only that request gets the error.
                return [reply for request in group for reply in self._score_group([request])]
            return [error_reply(exc)]
        replies, start = [], 0
        n_images = sum(len(r) for r in group)
        for request in group:
            body = {"rewards": values[start:start + len(request)], "name": self.reward.name,
                    "batch_requests": len(group), "batch_images": n_images}
            replies.append(Reply(200, body))
            start += len(request)
        return replies

    def _call(self, group: list[ScoreRequest]) -> list[float]:
        images = torch.cat([r.images for r in group]) if len(group) > 1 else group[0].images
        prompts = None if group[0].prompts is None else [p for r in group for p in r.prompts]
        with torch.no_grad():
            values = self.reward(images, prompts)
        if tuple(values.shape) != (len(images),):
            raise RuntimeError(f"reward {self.reward.name!r} returned shape {tuple(values.shape)} for "
                               f"{len(images)} images")
        if not bool(torch.isfinite(values).all()):  # a custom reward may skip BaseReward's check
            index = int((~torch.isfinite(values)).nonzero()[0, 0])
            raise FloatingPointError(f"reward {self.reward.name!r} produced a non-finite value "
                                     f"({float(values[index])}) at batch index {index}")
        if self.on_batch is not None:
            self.on_batch(len(group), len(images))
        return values.detach().to(device="cpu", dtype=torch.float64).tolist()

    async def handle(self, method: str, path: str, read_body: Callable[[], Awaitable[bytes]],
                     score: Callable[[ScoreRequest], Awaitable[Reply]],
                     stats: Callable[[], Awaitable[dict[str, Any]]]) -> Reply:
        """Route one HTTP request. ``score`` scores one decoded request (through the batcher in a
        server); ``stats`` returns the :class:`BatchStats` snapshot."""
        path = path.rstrip("/") or "/"
        if path in ("/score", "/"):
            if method != "POST":
                return Reply(405, {"error": f"{method} {path}: use POST with an .npz body", "retryable": False})
            try:
                request = decode_request(await read_body())
            except BadRequest as exc:
                return Reply(400, {"error": str(exc), "retryable": False})
            return await score(request)
        if path in ("/health", "/stats"):
            if method != "GET":
                return Reply(405, {"error": f"{method} {path}: use GET", "retryable": False})
            return Reply(200, self.health() if path == "/health" else await stats())
        return Reply(404, {"error": f"no route {method} {path}; routes: {', '.join(ROUTES)}", "retryable": False})
