"""Ray Serve adapter: a :class:`~reward.serving.RewardService` behind replicas and ``@serve.batch``.

Imports Ray at the top: only ``artquant serve-reward`` (and tests that have Ray) import this
module. The Ray cluster it starts is local and quiet: no dashboard, no usage reporting,
internal addresses on the loopback interface; only the HTTP proxy listens on ``--host``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from reward.serving import BatchStats, Reply, RewardService
from reward.wire import ScoreRequest

APP_NAME = "artquant-reward"
NAMESPACE = "artquant-serve"
#: test-only route (env ARTQUANT_SERVE_CRASH_ROUTE=1): the replica that answers it exits right after.
CRASH_ROUTE = "/_crash"


@dataclass(frozen=True)
class ServeOptions:
    """What ``artquant serve-reward`` hands every replica (pickled by Ray, so plain values only)."""

    spec: str
    port: int
    host: str = "127.0.0.1"
    normalize: str = "none"
    device: str = "cpu"  # "cpu" or "cuda": Ray gives each GPU replica one device, seen as cuda:0
    autocast_dtype: str | None = None  # a torch dtype name below float32, for ArtQuant rewards
    replicas: int = 1
    max_batch_size: int = 8
    batch_wait_timeout_s: float = 0.01
    threads_per_replica: int = 1
    cwd: str = "."
    allow_crash_route: bool = False
    verbose: bool = False

    @property
    def gpus_per_replica(self) -> int:
        return 1 if self.device == "cuda" else 0


# One counter for all replicas, so /stats reports the batches of the whole server.
StatsActor = ray.remote(num_cpus=0)(BatchStats)


def _load(options: ServeOptions) -> Any:
    import torch

    from reward.spec import load_reward

    kwargs: dict[str, Any] = {"device": options.device}
    if options.autocast_dtype:
        kwargs["autocast_dtype"] = getattr(torch, options.autocast_dtype)
    return load_reward(options.spec, normalize=options.normalize, **kwargs)


@serve.deployment(name="reward", health_check_period_s=5, health_check_timeout_s=60,
                  graceful_shutdown_timeout_s=5, max_constructor_retry_count=2)
class RewardReplica:
    """One replica: the loaded reward, a request batcher, and the HTTP routes of :mod:`reward.serving`."""

    def __init__(self, options: ServeOptions, stats: Any) -> None:
        # Relative paths in the spec (a custom reward file, a scorer folder) mean what they meant
        # where the command ran, and 'mypkg.rewards:fn' imports from there too.
        os.chdir(options.cwd)
        if options.cwd not in sys.path:
            sys.path.insert(0, options.cwd)
        if options.device == "cpu":
            import torch

            torch.set_num_threads(options.threads_per_replica)  # replicas share the cores, not each all of them
        self._stats = stats
        self._allow_crash = options.allow_crash_route
        self.service = RewardService(_load(options), on_batch=self._record,
                                     info={"pid": os.getpid(), "device": options.device, "replicas": options.replicas,
                                           "max_batch_size": options.max_batch_size})
        self._score_batch.set_max_batch_size(options.max_batch_size)
        self._score_batch.set_batch_wait_timeout_s(options.batch_wait_timeout_s)

    def _record(self, n_requests: int, n_images: int) -> None:
        self._stats.record.remote(n_requests, n_images)  # fire and forget: never slows a reply

    async def _snapshot(self) -> dict[str, Any]:
        return await self._stats.snapshot.remote()

    async def __call__(self, request: Request) -> JSONResponse:
        if self._allow_crash and request.method == "POST" and request.url.path.rstrip("/") == CRASH_ROUTE:
            asyncio.get_running_loop().call_later(0.2, os._exit, 1)
            return JSONResponse({"status": "exiting", "pid": os.getpid()})
        reply = await self.service.handle(request.method, request.url.path, request.body,
                                          self._score_batch, self._snapshot)
        return JSONResponse(reply.body, status_code=reply.status)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)  # the real values are set in __init__
    async def _score_batch(self, requests: list[ScoreRequest]) -> list[Reply]:
        # The reward runs in a thread so that the event loop keeps accepting requests meanwhile:
        # they form the next batch instead of waiting to be read.
        return await asyncio.to_thread(self.service.score_many, requests)

    def check_health(self) -> None:
        self.service.check_health()


def start(options: ServeOptions) -> None:
    """Start a local Ray cluster and Serve, deploy the reward, return once every replica is ready."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report leaves the machine
    level = logging.INFO if options.verbose else logging.WARNING
    # Ray warns on every start that its (kept) token authentication is on: news only with --verbose.
    logging.getLogger("ray._private.authentication").setLevel(level if options.verbose else logging.ERROR)
    ray.init(address="local", namespace=NAMESPACE, num_cpus=options.replicas,
             num_gpus=options.replicas * options.gpus_per_replica, include_dashboard=False,
             log_to_driver=options.verbose, logging_level=level, _node_ip_address="127.0.0.1")
    logging.getLogger("ray.serve").setLevel(level)
    serve.start(http_options={"host": options.host, "port": options.port, "location": "HeadOnly"},
                logging_config={"log_level": logging.getLevelName(level), "enable_access_log": options.verbose})
    stats = StatsActor.remote()
    app = RewardReplica.options(
        num_replicas=options.replicas,
        # room for a full batch in the batcher while the previous one computes
        max_ongoing_requests=2 * options.max_batch_size,
        ray_actor_options={"num_cpus": 1, "num_gpus": options.gpus_per_replica},
    ).bind(options, stats)
    try:
        serve.run(app, name=APP_NAME, route_prefix="/")
    except RuntimeError as exc:
        cause = _replica_error()  # Serve's own message only says that the deployment failed
        raise RuntimeError(f"a replica failed to start: {cause}" if cause else str(exc)) from exc


def _replica_error() -> str:
    """The last line of a failed replica's traceback (what actually went wrong), from Serve's status."""
    try:
        deployments = serve.status().applications[APP_NAME].deployments
        message = " ".join(d.message for d in deployments.values() if d.message)
    except Exception:  # noqa: BLE001 - best effort: the deploy error itself is raised anyway
        return ""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    causes = [line for line in lines if line.split(":", 1)[0].endswith(("Error", "Exception"))]
    return causes[-1] if causes else (lines[-1] if lines else "")


#: how long ``stop`` lets the replicas drain before it ends the cluster anyway
DRAIN_TIMEOUT_S = 20.0


def stop() -> None:
    """Stop the replicas (they finish their requests first, for at most ``DRAIN_TIMEOUT_S``), then the
    local Ray cluster with Serve. Bounded, because a replica that died or is being replaced can keep
    Serve's blocking delete waiting for ever, and Ctrl-C must always end the server."""
    if not ray.is_initialized():
        return
    try:
        # Deleting the app drains the replicas; ray.shutdown then ends the controller and proxy.
        # (serve.shutdown() would race its own controller kill and print a retry warning.)
        serve.delete(APP_NAME, _blocking=False)
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while APP_NAME in serve.status().applications and time.monotonic() < deadline:
            time.sleep(0.2)
    except Exception:  # noqa: BLE001 - whatever Serve says now, the cluster goes down below
        pass
    finally:
        ray.shutdown()
