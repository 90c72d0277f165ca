"""A served reward (``artquant serve-reward`` + ``remote:URL``) against the same reward in-process.

N client threads each send M requests of ``--batch`` images to a ``RemoteReward`` on a
server this script starts (``--replicas``, ``--max-batch-size``, ``--batch-wait-timeout-s``)
or on ``--url``. The in-process baseline scores the same N x M batches one after another
with the reward loaded here (one caller, as a trainer calls its reward). Reported for both:
throughput (images/s) and p50/p99 latency of a request; for the server also the batch sizes
it formed (requests merged per reward call, from ``GET /stats``) and the largest difference
from the in-process rewards. Each side gets a warm-up first.

    python scripts/bench_serving.py --reward brightness --clients 4 --requests 25
    python scripts/bench_serving.py --reward artquant --clients 4 --requests 25 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a file from anywhere


def _jobs(clients: int, requests: int, batch: int, size: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=generator)
            for _ in range(clients * requests)]


def run_clients(score: Callable[[torch.Tensor], torch.Tensor], jobs: list[torch.Tensor],
                clients: int) -> tuple[dict, list[torch.Tensor]]:
    """``clients`` threads through ``jobs``: throughput and latency percentiles, and the rewards."""
    latencies = [0.0] * len(jobs)
    results: list[torch.Tensor | None] = [None] * len(jobs)

    def one(i: int) -> None:
        start = time.perf_counter()
        results[i] = score(jobs[i])
        latencies[i] = time.perf_counter() - start

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(len(jobs))))
    wall = time.perf_counter() - started
    images = sum(len(j) for j in jobs)
    ms = np.array(latencies) * 1000
    return ({"requests": len(jobs), "images": images, "wall_s": round(wall, 3),
             "images_per_s": round(images / wall, 1), "requests_per_s": round(len(jobs) / wall, 1),
             "p50_ms": round(float(np.percentile(ms, 50)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1)},
            results)  # type: ignore[return-value]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(args: argparse.Namespace, log: Path) -> tuple[subprocess.Popen, str]:
    """``artquant serve-reward`` in a subprocess; returns once ``/health`` answers."""
    port = _free_port()
    argv = [sys.executable, "-m", "alignment.cli", "serve-reward", "--reward", args.reward, "--port", str(port),
            "--replicas", str(args.replicas), "--max-batch-size", str(args.max_batch_size),
            "--batch-wait-timeout-s", str(args.batch_wait_timeout_s), "--device", args.device]
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + args.start_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"serve-reward exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url + "/health", timeout=5):
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"serve-reward not healthy after {args.start_timeout_s} s: {log.read_text()[-2000:]}")


def _formed(before: dict, after: dict) -> dict:
    """Batch sizes formed between two ``/stats`` snapshots: {requests merged: reward calls}."""
    old = before.get("batch_requests_histogram", {})
    hist = {k: v - old.get(k, 0) for k, v in after["batch_requests_histogram"].items() if v - old.get(k, 0)}
    calls = sum(hist.values())
    merged = sum(int(k) * v for k, v in hist.items())
    return {"reward_calls": calls, "mean_requests_per_call": round(merged / calls, 2) if calls else 0.0,
            "max_requests_per_call": max(map(int, hist), default=0),
            "requests_per_call_histogram": dict(sorted(hist.items(), key=lambda kv: int(kv[0])))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reward", default="brightness", help="reward spec served and run in-process")
    p.add_argument("--clients", type=int, default=4, help="concurrent client threads")
    p.add_argument("--requests", type=int, default=25, help="requests per client")
    p.add_argument("--batch", type=int, default=4, help="images per request")
    p.add_argument("--size", type=int, default=64, help="image side in pixels")
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--max-batch-size", type=int, default=8)
    p.add_argument("--batch-wait-timeout-s", type=float, default=0.01)
    p.add_argument("--device", default="auto")
    p.add_argument("--url", default=None, help="an already running server (default: start one)")
    p.add_argument("--start-timeout-s", type=float, default=300)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)

    from reward.remote import RemoteReward
    from reward.spec import load_reward

    jobs = _jobs(args.clients, args.requests, args.batch, args.size)
    local = load_reward(args.reward)

    def in_process(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return local(images)

    run_clients(in_process, jobs[: args.clients], 1)  # warm-up
    in_process_row, expected = run_clients(in_process, jobs, 1)

    proc, scratch = None, tempfile.TemporaryDirectory(prefix="bench_serving_")
    log = Path(scratch.name) / "server.log"  # its tail is in the error if the server fails to start
    try:
        started = time.perf_counter()
        if args.url:
            url = args.url
        else:
            proc, url = start_server(args, log)
        startup_s = round(time.perf_counter() - started, 1)
        remote = RemoteReward(url)
        run_clients(remote, jobs[: 2 * args.clients], args.clients)  # warm-up: every replica answers once
        before = remote.stats()
        served_row, got = run_clients(remote, jobs, args.clients)
        served_row.update(_formed(before, remote.stats()))
        served_row["startup_s"] = startup_s
        served_row["max_abs_diff_vs_in_process"] = float(max((g - e).abs().max() for g, e in zip(got, expected)))
        served_row["failed_attempts"] = remote.failed_attempts
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        scratch.cleanup()

    result = {"reward": args.reward, "clients": args.clients, "requests_per_client": args.requests,
              "images_per_request": args.batch, "size": args.size, "replicas": args.replicas,
              "max_batch_size": args.max_batch_size, "batch_wait_timeout_s": args.batch_wait_timeout_s,
              "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
              "in_process": in_process_row, "served": served_row}
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
