"""``remote:URL``: a reward computed by a server started with ``artquant serve-reward``.

:class:`RemoteReward` is a :class:`~reward.base.BaseReward`, so DDPO, reranking and
composite specs (``remote:http://127.0.0.1:8000+0.5*brightness``) use it unchanged. Images
travel as 8-bit (``float_to_uint8``, the rounding of every saved image; an 8-bit input
round-trips exactly), channels last, in an ``.npz`` body (:mod:`reward.wire`).

Failures: a connection error, a timeout or a 5xx answer is retried with exponential backoff
(``backoff * 2**k`` seconds, at most :data:`MAX_BACKOFF_S`); after the last retry a
:class:`RemoteRewardError` names the URL and the last failure — a reward is never made up.
A 4xx answer (the request is wrong) and a 5xx the server marks ``"retryable": false`` (the
reward itself gave NaN) fail at once with the server's message. Only the standard library
speaks HTTP here; environment proxies are used except for loopback addresses.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import torch

from artquant_core.images import ImageBatch, float_to_uint8
from reward.base import BaseReward
from reward.wire import CONTENT_TYPE, encode_request

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF_S = 0.5
MAX_BACKOFF_S = 10.0
_RETRYABLE_4XX = {408, 429}  # request timeout, too many requests: the request itself was fine
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}
_QUERY_OPTIONS = {"timeout": float, "retries": int, "backoff": float}


class RemoteRewardError(RuntimeError):
    """The served reward gave no rewards; ``status`` is the HTTP status when there was an answer."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def parse_url(url: str) -> tuple[str, dict[str, Any]]:
    """``http://HOST:PORT[/prefix][?timeout=..&retries=..&backoff=..]`` → (base URL, client options)."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"remote reward URL {url!r}: expected http://HOST:PORT (a server started with "
                         "`artquant serve-reward --reward SPEC --port PORT`)")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise ValueError(f"remote reward URL {url!r}: {exc}") from None
    options: dict[str, Any] = {}
    for key, values in urllib.parse.parse_qs(parts.query, keep_blank_values=True).items():
        if key not in _QUERY_OPTIONS:
            raise ValueError(f"remote reward URL {url!r}: unknown option {key!r}; known: "
                             f"{', '.join(_QUERY_OPTIONS)}")
        try:
            options[key] = _QUERY_OPTIONS[key](values[-1])
        except ValueError:
            raise ValueError(f"remote reward URL {url!r}: option {key}={values[-1]!r} is not a number") from None
    path = parts.path.rstrip("/")
    path = path[: -len("/score")] if path.endswith("/score") else path
    return f"{parts.scheme}://{parts.netloc}{path}", options


def _server_message(exc: urllib.error.HTTPError) -> tuple[str, bool | None]:
    """The ``error`` text of a JSON error answer (else the start of the body) and its ``retryable`` flag."""
    try:
        text = exc.read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):
        text = ""
    try:
        body = json.loads(text)
        if isinstance(body, dict) and "error" in body:
            return str(body["error"]), body.get("retryable")
    except ValueError:
        pass
    return (" ".join(text.split())[:300] or exc.reason or "no message"), None


class RemoteReward(BaseReward):
    """A reward served over HTTP: ``RemoteReward("http://127.0.0.1:8000")(images, prompts)``.

    ``timeout``: seconds a connection or a read may stall; ``retries``: further attempts after
    the first; ``backoff``: the first wait between attempts (doubling each time). Each defaults
    to the URL's query option, else :data:`DEFAULT_TIMEOUT_S`, :data:`DEFAULT_RETRIES`,
    :data:`DEFAULT_BACKOFF_S`. Nothing is contacted until the first call.
    """

    differentiable = False

    def __init__(self, url: str, timeout: float | None = None, retries: int | None = None,
                 backoff: float | None = None, name: str = "remote") -> None:
        self.url, options = parse_url(url)
        self.timeout = float(timeout if timeout is not None else options.get("timeout", DEFAULT_TIMEOUT_S))
        self.retries = int(retries if retries is not None else options.get("retries", DEFAULT_RETRIES))
        self.backoff = float(backoff if backoff is not None else options.get("backoff", DEFAULT_BACKOFF_S))
        if self.timeout <= 0 or self.retries < 0 or self.backoff < 0:
            raise ValueError(f"remote reward {self.url}: timeout must be > 0, retries and backoff >= 0 "
                             f"(got {self.timeout}, {self.retries}, {self.backoff})")
        self.name = name
        self.failed_attempts = 0  # attempts that were retried (or ran out), for monitoring a flaky server
        self._setup()

    def _setup(self) -> None:
        self._count_lock = threading.Lock()
        host = urllib.parse.urlsplit(self.url).hostname
        # A proxy from the environment must not intercept a server on this machine.
        handlers = [urllib.request.ProxyHandler({})] if host in _LOOPBACK else []
        self._opener = urllib.request.build_opener(*handlers)

    def __getstate__(self) -> dict[str, Any]:  # picklable (e.g. for a worker process): lock and opener rebuilt
        return {k: v for k, v in self.__dict__.items() if k not in ("_count_lock", "_opener")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._setup()

    def compute(self, images: torch.Tensor, prompts: list[str] | None) -> torch.Tensor:
        return self.compute_batch(ImageBatch(images), prompts)

    def compute_batch(self, batch: ImageBatch, prompts: list[str] | None) -> torch.Tensor:
        pixels = float_to_uint8(batch.pixels).cpu().permute(0, 2, 3, 1).numpy()
        reply = self.request("POST", "/score", encode_request(pixels, prompts))
        rewards = reply.get("rewards")
        if not isinstance(rewards, list) or len(rewards) != len(batch):
            got = f"{len(rewards)} values" if isinstance(rewards, list) else repr(reply)[:200]
            raise RemoteRewardError(f"remote reward {self.url}: expected {len(batch)} rewards, got {got}")
        return torch.tensor(rewards, dtype=torch.float32)

    def health(self) -> dict[str, Any]:
        """The server's ``GET /health`` answer (reward name, device, replicas)."""
        return self.request("GET", "/health")

    def stats(self) -> dict[str, Any]:
        """The server's ``GET /stats`` answer: the batch sizes it formed."""
        return self.request("GET", "/stats")

    def request(self, method: str, route: str, body: bytes | None = None) -> dict[str, Any]:
        """One JSON call to the server, with the retries described in the module docstring."""
        url = self.url + route
        headers = {"Content-Type": CONTENT_TYPE} if body is not None else {}
        attempts, last = self.retries + 1, "none"
        for attempt in range(attempts):
            if attempt:
                time.sleep(min(self.backoff * 2 ** (attempt - 1), MAX_BACKOFF_S))
            try:
                with self._opener.open(urllib.request.Request(url, data=body, headers=headers, method=method),
                                       timeout=self.timeout) as answer:
                    text = answer.read()
            except urllib.error.HTTPError as exc:
                message, retryable = _server_message(exc)
                if retryable is False or (400 <= exc.code < 500 and exc.code not in _RETRYABLE_4XX):
                    raise RemoteRewardError(f"remote reward {url} answered HTTP {exc.code}: {message}",
                                            exc.code) from None
                last = f"HTTP {exc.code}: {message}"
            except urllib.error.URLError as exc:
                last = f"{type(exc.reason).__name__}: {exc.reason}"
            except (OSError, http.client.HTTPException) as exc:  # timeouts, resets mid-answer
                last = f"{type(exc).__name__}: {exc}"
            else:
                try:
                    return json.loads(text)
                except ValueError:
                    raise RemoteRewardError(f"remote reward {url}: the answer is not JSON: {text[:200]!r}") from None
            with self._count_lock:
                self.failed_attempts += 1
        raise RemoteRewardError(f"remote reward {url}: no answer after {attempts} attempt(s) (timeout "
                                f"{self.timeout:g} s, backoff {self.backoff:g} s); last failure: {last}. "
                                "Is `artquant serve-reward` running there?")

    def __repr__(self) -> str:
        return f"RemoteReward(url={self.url!r}, name={self.name!r})"
