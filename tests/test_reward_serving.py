"""Reward serving: the ``remote:URL`` client, the wire format, the server logic, and
``artquant serve-reward`` end to end (Ray Serve in a subprocess, two replicas).

The first part needs no server (fast); the second starts one server for the whole module.
"""

from __future__ import annotations

import asyncio
import http.server
import importlib.util
import io
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reward import load_reward
from reward.base import BaseReward
from reward.remote import RemoteReward, RemoteRewardError, parse_url
from reward.serving import BatchStats, RewardService
from reward.spec import check_spec
from reward.wire import BadRequest, decode_request, encode_request

ROOT = Path(__file__).resolve().parents[1]
HAS_RAY = importlib.util.find_spec("ray") is not None and importlib.util.find_spec("ray.serve") is not None
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="Ray Serve is not installed (CI installs it with .[dev]; "
                                                   "locally: pip install -c constraints.txt -e '.[serve]')")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def uint8_images(n: int, seed: int, size: int = 8) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def hwc(images: torch.Tensor) -> np.ndarray:
    return images.permute(0, 2, 3, 1).numpy()


# ------------------------------------------------------------------------------- wire format
def test_wire_round_trip_keeps_pixels_and_prompts():
    images = uint8_images(3, seed=0)
    request = decode_request(encode_request(hwc(images), ["a", "b é", ""]))
    assert torch.equal(request.images, images) and request.prompts == ["a", "b é", ""]
    assert decode_request(encode_request(hwc(images))).prompts is None


GOOD = hwc(uint8_images(2, seed=1))
NAN = GOOD.astype(np.float32) / 255
NAN[1, 0, 0, 0] = np.nan


@pytest.mark.parametrize("body, words", [
    (b"", "empty"),
    (b"not an archive", "not an .npz"),
    (npz(images=np.array([{"x": 1}, None], dtype=object)), "pickle"),  # never unpickled
    (npz(pixels=GOOD), "unknown field(s) pixels"),
    (npz(prompts=np.array(["a", "b"])), "'images' is missing"),
    (npz(images=GOOD[..., 0]), "shape (B, H, W, 3)"),
    (npz(images=GOOD.transpose(0, 3, 1, 2)), "shape (B, H, W, 3)"),
    (npz(images=GOOD.astype(np.int32)), "dtype int32"),
    (npz(images=NAN), "image 1 contains NaN"),
    (npz(images=GOOD.astype(np.float32)), "outside [0, 1]"),
    (npz(images=GOOD, prompts=np.array(["only one"])), "'prompts' has 1 entries but 'images' has 2"),
    (npz(images=GOOD, prompts=np.array([1, 2])), "'prompts' must be a 1-D unicode"),
])
def test_wire_rejects_bad_bodies_naming_the_problem(body, words):
    with pytest.raises(BadRequest, match=None) as info:
        decode_request(body)
    assert words.lower() in str(info.value).lower(), str(info.value)


# ------------------------------------------------------------------------------- server logic
class NanOnBlack(BaseReward):
    """Brightness, but NaN for an all-black image (a reward that fails on some inputs)."""

    name = "nan_on_black"

    def compute(self, images, prompts):
        mean = images.mean(dim=(1, 2, 3))
        return torch.where(mean == 0, torch.full_like(mean, float("nan")), mean)


def _request(images: torch.Tensor, prompts=None):
    return decode_request(encode_request(hwc(images), prompts))


def test_service_merges_requests_into_one_reward_call_and_isolates_a_failing_one():
    stats = BatchStats()
    service = RewardService(NanOnBlack(), on_batch=stats.record)
    a, b = uint8_images(2, seed=2), uint8_images(3, seed=3)
    black = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    replies = service.score_many([_request(a), _request(b)])
    assert [r.status for r in replies] == [200, 200]
    assert replies[0].body["batch_requests"] == 2 and replies[0].body["batch_images"] == 5
    expected = NanOnBlack()(torch.cat([a, b])).tolist()
    assert replies[0].body["rewards"] + replies[1].body["rewards"] == pytest.approx(expected, abs=0)
    replies = service.score_many([_request(a), _request(black), _request(uint8_images(2, 4, size=6))])
    assert [r.status for r in replies] == [200, 500, 200]  # the NaN request alone fails
    assert "non-finite" in replies[1].body["error"] and replies[1].body["retryable"] is False
    snap = stats.snapshot()
    assert snap["max_batch_requests"] == 2 and snap["images"] == 5 + 2 + 2


def test_service_routes():
    service = RewardService(load_reward("brightness"))

    async def score(request):
        return service.score_many([request])[0]

    async def stats():
        return {"reward_calls": 0}

    def call(method, path, body=b""):
        async def read():
            return body
        return asyncio.run(service.handle(method, path, read, score, stats))

    assert call("GET", "/health").body["reward"] == "brightness"
    assert call("GET", "/stats/").body == {"reward_calls": 0}
    ok = call("POST", "/score", encode_request(hwc(uint8_images(2, 5))))
    assert ok.status == 200 and len(ok.body["rewards"]) == 2
    assert call("POST", "/score", b"junk").status == 400
    assert call("GET", "/score").status == 405 and call("POST", "/health").status == 405
    missing = call("GET", "/nope")
    assert missing.status == 404 and "/score" in missing.body["error"]


# ------------------------------------------------------------------------------- spec and client
def test_remote_spec_in_the_grammar():
    reward = load_reward("remote:http://127.0.0.1:9?timeout=2&retries=1&backoff=0")
    assert isinstance(reward, RemoteReward) and reward.name == "remote" and not reward.differentiable
    assert (reward.url, reward.timeout, reward.retries, reward.backoff) == ("http://127.0.0.1:9", 2.0, 1, 0.0)
    composite = load_reward("remote:http://127.0.0.1:9/score+0.5*brightness")
    assert set(composite.components_) == {"remote", "brightness"}
    assert load_reward("brightness + remote:http://localhost:9 * 2").components_["remote"][1] == 2.0
    assert parse_url("https://host.example:443/rewards/a/")[0] == "https://host.example:443/rewards/a"
    for bad, words in [("remote", "needs ':URL'"), ("remote:", "needs ':URL'"), ("remote:ftp://x", "http://HOST"),
                       ("remote:http://h:9?retry=3", "unknown option 'retry'"), ("remote:http://h:port", "port")]:
        with pytest.raises(ValueError, match=None) as info:
            load_reward(bad)
        assert words in str(info.value), (bad, str(info.value))
    check_spec("remote:http://h:9+0.5*brightness")
    with pytest.raises(ValueError, match="did you mean brightness"):
        check_spec("brightnes")


def test_server_down_fails_after_retries_naming_the_address():
    url = f"http://127.0.0.1:{free_port()}"
    reward = RemoteReward(url, retries=2, backoff=0.01, timeout=2)
    started = time.perf_counter()
    with pytest.raises(RemoteRewardError) as info:
        reward(torch.rand(2, 3, 8, 8))
    message = str(info.value)
    assert url in message and "3 attempt(s)" in message and "Connection" in message, message
    assert time.perf_counter() - started < 5


class _Canned(http.server.BaseHTTPRequestHandler):
    """Answers every POST with the server's next canned (status, body); counts the hits."""

    answers: list[tuple[int, dict]] = []
    hits = 0

    def do_POST(self):  # noqa: N802 - http.server's naming
        type(self).hits += 1
        self.rfile.read(int(self.headers["Content-Length"]))
        status, body = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def canned():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Canned.hits = 0
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_client_does_not_retry_a_4xx_and_shows_its_message(canned):
    _, url = canned
    _Canned.answers = [(400, {"error": "field 'images' has dtype int32", "retryable": False})]
    with pytest.raises(RemoteRewardError, match="HTTP 400: field 'images' has dtype int32") as info:
        RemoteReward(url, retries=3, backoff=0.01)(uint8_images(1, 6))
    assert info.value.status == 400 and _Canned.hits == 1


def test_client_retries_5xx_then_succeeds_or_names_the_last_failure(canned):
    _, url = canned
    _Canned.answers = [(503, {"error": "busy"}), (500, {"error": "replica died"}), (200, {"rewards": [0.25]})]
    assert RemoteReward(url, retries=3, backoff=0.01)(uint8_images(1, 7)).tolist() == [0.25]
    assert _Canned.hits == 3
    _Canned.answers, _Canned.hits = [(503, {"error": "still busy"})], 0
    with pytest.raises(RemoteRewardError, match=r"3 attempt\(s\).*HTTP 503: still busy"):
        RemoteReward(url, retries=2, backoff=0.01)(uint8_images(1, 7))
    _Canned.answers, _Canned.hits = [(500, {"error": "reward 'x' produced a non-finite value", "retryable": False})], 0
    with pytest.raises(RemoteRewardError, match="non-finite"):
        RemoteReward(url, retries=2, backoff=0.01)(uint8_images(1, 7))
    assert _Canned.hits == 1  # a NaN reward is not retried: the same images give the same NaN
    _Canned.answers = [(200, {"rewards": [0.1, 0.2]})]
    with pytest.raises(RemoteRewardError, match="expected 1 rewards, got 2 values"):
        RemoteReward(url, retries=0)(uint8_images(1, 7))


def test_serve_reward_without_ray_says_how_to_install(monkeypatch, capsys):
    from alignment.cli import main as cli

    monkeypatch.setitem(sys.modules, "reward.serving_ray", None)  # as if ray were not installed
    code = cli(["serve-reward", "--reward", "brightness", "--port", str(free_port())])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and 'pip install -c constraints.txt -e ".[serve]"' in err, err
    assert cli(["serve-reward", "--reward", "brightnes", "--port", "8000"]) == 1
    assert "did you mean brightness" in capsys.readouterr().err


# ------------------------------------------------------------------------------- the served reward
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no environment proxy for 127.0.0.1


def _get(url: str) -> dict:
    with _LOCAL.open(url, timeout=10) as answer:
        return json.loads(answer.read())


def _post(url: str, body: bytes) -> tuple[int, dict]:
    try:
        with _LOCAL.open(urllib.request.Request(url, data=body, method="POST"), timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _start_server(log: Path) -> tuple[subprocess.Popen, str, str]:
    """Start ``serve-reward`` and wait for ``/health``; ``(process, url, "")`` or ``(process, url, why it failed)``."""
    port = free_port()
    env = {**os.environ, "ARTQUANT_SERVE_CRASH_ROUTE": "1"}
    argv = [sys.executable, "-m", "alignment.cli", "serve-reward", "--reward", "brightness", "--port", str(port),
            "--replicas", "2", "--max-batch-size", "16", "--batch-wait-timeout-s", "0.05"]
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 150
    while True:
        if proc.poll() is not None:
            return proc, url, f"serve-reward exited with {proc.returncode}:\n{log.read_text()}"
        try:
            if _get(url + "/health")["status"] == "ok":
                return proc, url, ""
        except (OSError, ValueError, KeyError):
            pass
        if time.monotonic() > deadline:
            return proc, url, f"serve-reward not healthy after 150 s:\n{log.read_text()}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``artquant serve-reward --reward brightness --replicas 2`` in a subprocess; its URL."""
    if not HAS_RAY:
        pytest.skip("Ray Serve is not installed")
    log = tmp_path_factory.mktemp("serve") / "server.log"
    proc, url, failure = _start_server(log)
    if failure:  # one more try: a local Ray cluster now and then loses a worker while it starts on a busy machine
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        proc, url, failure = _start_server(log)
    try:
        if failure:
            pytest.fail(failure)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)  # the graceful path: replicas and Ray shut down
        try:
            code = proc.wait(timeout=120)  # stop() drains for at most 20 s; Ray is slow on a busy machine
        except subprocess.TimeoutExpired:
            pytest.fail(f"serve-reward still running 120 s after Ctrl-C:\n{log.read_text()[-3000:]}")
        else:
            assert code == 0 or failure, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    assert failure or "stopping the reward server" in log.read_text()


@needs_ray
@pytest.mark.slow
def test_remote_rewards_equal_in_process_rewards(server):
    remote, local = load_reward(f"remote:{server}"), load_reward("brightness")
    as_uint8 = uint8_images(5, seed=8, size=12)
    as_float = as_uint8.float() / 255  # on the 8-bit grid: the wire's rounding changes nothing
    as_pil = [Image.fromarray(a) for a in hwc(as_uint8)]
    for images in (as_uint8, as_float, as_pil):
        assert torch.allclose(remote(images, ["p"] * 5), local(images), atol=1e-6, rtol=0)
    mixed = [Image.fromarray(a) for a in hwc(uint8_images(1, 9, size=6))] + as_pil[:1]  # two sizes
    assert torch.allclose(remote(mixed), local(mixed), atol=1e-6, rtol=0)
    composite = load_reward(f"remote:{server}+0.5*brightness")
    parts = composite.components(as_float)
    assert torch.allclose(parts["total"], 1.5 * local(as_float), atol=1e-6)
    assert RemoteReward(server).health()["replicas"] == 2
    clone = pickle.loads(pickle.dumps(remote))
    assert torch.equal(clone(as_uint8), remote(as_uint8))


@needs_ray
@pytest.mark.slow
def test_concurrent_clients_get_their_own_rewards_from_merged_batches(server):
    local, remote = load_reward("brightness"), RemoteReward(server)
    jobs = [uint8_images(2, seed=100 + i, size=8) for i in range(48)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(remote, jobs))
    for images, values in zip(jobs, results):
        assert torch.allclose(values, local(images), atol=1e-6, rtol=0)
    stats = remote.stats()
    assert stats["max_batch_requests"] > 1, stats  # several clients' requests shared one reward call
    assert stats["images"] >= 96


@needs_ray
@pytest.mark.slow
def test_bad_requests_get_400_and_the_server_keeps_serving(server):
    cases = [(b"\x00garbage", "not an .npz"), (npz(images=GOOD[..., :2]), "shape (B, H, W, 3)"),
             (npz(images=NAN), "NaN"), (npz(images=GOOD, prompts=np.array(["one"])), "'prompts' has 1 entries")]
    for body, words in cases:
        status, answer = _post(server + "/score", body)
        assert status == 400 and words in answer["error"], answer
    assert _post(server + "/score", encode_request(GOOD))[0] == 200


@needs_ray
@pytest.mark.slow
def test_a_replica_killed_mid_run_loses_no_image(server):
    local = load_reward("brightness")
    remote = RemoteReward(server, retries=6, backoff=0.25)
    jobs = [uint8_images(3, seed=200 + i, size=8) for i in range(40)]
    crashed: list[int] = []

    def score(i: int) -> torch.Tensor:
        if i == 12:  # a third of the way in: one replica exits (test-only route)
            status, answer = _post(server + "/_crash", b"")
            assert status == 200, answer
            crashed.append(answer["pid"])
        return remote(jobs[i])

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(score, range(len(jobs))))
    assert sum(len(v) for v in results) == 3 * len(jobs)  # every image got exactly one reward
    for images, values in zip(jobs, results):
        assert torch.allclose(values, local(images), atol=1e-6, rtol=0)
    with pytest.raises(ProcessLookupError):  # the replica really is gone (same machine)
        for _ in range(50):
            os.kill(crashed[0], 0)
            time.sleep(0.1)
    assert remote.health()["status"] == "ok"
