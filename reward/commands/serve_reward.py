"""``artquant serve-reward``: serve any reward spec over HTTP with Ray Serve.

    artquant serve-reward --reward SPEC --port P [--host 127.0.0.1] [--replicas N]
                          [--max-batch-size B] [--batch-wait-timeout-s T]
                          [--device auto] [--dtype auto] [--normalize none] [--verbose]

Clients use the spec ``remote:http://HOST:P`` (e.g. ``artquant ddpo ... --reward
remote:http://127.0.0.1:P``). Each replica loads the reward once (one GPU per replica when
there are GPUs); requests arriving within ``T`` seconds of each other, up to ``B`` of them,
are scored by one reward call. Routes: ``POST /score``, ``GET /health``, ``GET /stats``
(the batch sizes formed). Ctrl-C (or SIGTERM) stops the replicas and the local Ray cluster.
Needs the ``serve`` extra: ``pip install -c constraints.txt -e ".[serve]"``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import socket
import sys
import time

from artquant_core.cli_args import (UsageError, add_device_flags, command_parser, positive_int, resolve_dtype)

INSTALL_HINT = 'pip install -c constraints.txt -e ".[serve]"'
#: tests only: set to 1 to let ``POST /_crash`` kill the replica that answers it (replica-loss tests)
CRASH_ROUTE_ENV = "ARTQUANT_SERVE_CRASH_ROUTE"


def _parser() -> argparse.ArgumentParser:
    p = command_parser("artquant serve-reward", description=__doc__)
    p.add_argument("--reward", required=True, help="reward spec for load_reward, e.g. 'artquant' or 'brightness'")
    p.add_argument("--port", required=True, type=int, help="HTTP port (1-65535)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; 0.0.0.0 serves other machines (the server has no authentication)")
    p.add_argument("--replicas", type=positive_int, default=1,
                   help="copies of the reward, each in its own process (and on its own GPU where there are GPUs)")
    p.add_argument("--max-batch-size", type=positive_int, default=8,
                   help="most requests merged into one reward call per replica")
    p.add_argument("--batch-wait-timeout-s", type=float, default=0.01,
                   help="how long a replica waits for more requests to fill a batch")
    p.add_argument("--normalize", default="none",
                   help="CompositeReward normalisation for a '+' spec (batch_zscore turns batching off: its "
                        "statistics must be those of one client's batch)")
    add_device_flags(p)
    p.add_argument("--verbose", action="store_true", help="show Ray's and the replicas' logs")
    return p


def _device(name: str, replicas: int) -> str:
    """``cpu`` or ``cuda``: Ray assigns the GPUs, one per replica, so no index is taken."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda"):
        raise UsageError(f"--device {name!r}: use auto, cpu or cuda (Ray gives each replica its own GPU; "
                         "choose GPUs with CUDA_VISIBLE_DEVICES)")
    if name == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            raise RuntimeError("--device cuda: CUDA is not available on this machine; use --device cpu (or auto)")
        if replicas > count:
            raise UsageError(f"--replicas {replicas} needs {replicas} GPUs (one per replica) but {count} "
                             "are visible; lower --replicas or use --device cpu")
    return name


def check_port(host: str, port: int) -> None:
    """Fail now, with the address, if the port is taken (Ray's proxy would fail later and less clearly)."""
    if not 1 <= port <= 65535:
        raise UsageError(f"--port {port}: must be in 1-65535")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _options(args: argparse.Namespace):
    import torch

    from reward.serving_ray import ServeOptions

    device = _device(args.device, args.replicas)
    dtype = resolve_dtype(args.dtype, device)
    # batch_zscore normalises over the batch it is given: merging clients' requests would change
    # every client's rewards, so each request stays its own batch.
    max_batch = 1 if args.normalize == "batch_zscore" else args.max_batch_size
    return ServeOptions(
        spec=args.reward, port=args.port, host=args.host, normalize=args.normalize, device=device,
        autocast_dtype=None if dtype == torch.float32 else str(dtype).removeprefix("torch."),
        replicas=args.replicas, max_batch_size=max_batch, batch_wait_timeout_s=args.batch_wait_timeout_s,
        threads_per_replica=max(1, (os.cpu_count() or 1) // args.replicas), cwd=os.getcwd(),
        allow_crash_route=os.environ.get(CRASH_ROUTE_ENV) == "1", verbose=args.verbose)


def _import_ray():
    try:
        return importlib.import_module("reward.serving_ray")
    except ImportError as exc:
        raise RuntimeError(f"serve-reward needs Ray Serve ({exc}); install it with: {INSTALL_HINT}") from None


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGINT and SIGTERM: replicas and Ray shut down


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.batch_wait_timeout_s < 0:
        raise UsageError(f"--batch-wait-timeout-s {args.batch_wait_timeout_s}: must be >= 0")
    if args.normalize not in ("none", "batch_zscore", "running_zscore"):
        raise UsageError(f"--normalize {args.normalize!r}: use none, batch_zscore or running_zscore")
    from reward.spec import check_spec

    check_spec(args.reward)  # a typo fails here, not in every replica
    check_port(args.host, args.port)
    serving_ray = _import_ray()
    options = _options(args)
    # Both signals stop the server the same way. SIGINT explicitly too: a process started from a
    # background job of a non-interactive shell inherits SIGINT ignored, and Python then installs no
    # KeyboardInterrupt for it, so Ctrl-C / kill -INT would leave the server running.
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        started = time.perf_counter()
        try:
            serving_ray.start(options)
        except Exception as exc:  # noqa: BLE001 - Ray's deploy errors carry the replica's traceback
            raise RuntimeError(f"could not start reward {args.reward!r}: {_first_error_line(exc)}") from exc
        url = f"http://{options.host}:{options.port}"
        print(f"serving reward {args.reward!r} at {url} ({options.replicas} replica(s) on {options.device}, "
              f"batches of up to {options.max_batch_size} requests, {options.batch_wait_timeout_s:g} s wait; "
              f"ready in {time.perf_counter() - started:.1f} s)", flush=True)
        print(f"clients: --reward remote:{url}    Ctrl-C stops", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping the reward server ...", file=sys.stderr, flush=True)
    finally:
        serving_ray.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _first_error_line(exc: BaseException) -> str:
    """The replica's own error out of Ray's deploy message (which wraps a whole traceback)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error:" in line or "Exception:" in line:
            return line
    return lines[0] if lines else type(exc).__name__
