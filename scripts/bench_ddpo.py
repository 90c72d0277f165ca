"""DDPO performance benchmark: the toolkit's DDPOTrainer against trl 0.23.1's, same settings.

Both trainers fine-tune the same tiny SD pipeline folder (``build_tiny_sd``)
with identical settings: 64 px, DDIM 10 steps, eta 1, CFG 5 (also in
training), sample batch 4 x 2 batches per epoch, train batch 2, 1 inner
epoch, every timestep trained, LoRA rank 4 on the UNet attention projections,
lr 3e-4, brightness reward, fp32 (``--mixed-precision bf16``: both trainers autocast to bf16),
``--threads`` torch threads.

Each run is a fresh subprocess; runs alternate (ours, peer, ours, peer, ...)
so that a change in machine load hits both sides alike. The first epoch of
every run is warm-up and excluded; the figure is the median steady-state
samples/s (sampling + reward + training of an epoch) over all runs, with the
peak RSS of each run's process.

The peer runs in its own virtual environment (created on first use, see
``--peer-venv``): trl 0.23.1, transformers<5, diffusers 0.35, peft 0.17,
accelerate 1.10 and the same torch 2.13.0 (pinned with ``-c constraints.txt``
so no CUDA build is pulled). trl is never a dependency of the toolkit.

    python scripts/bench_ddpo.py --epochs 4 --rounds 2 --out bench_ddpo.json

``--latent-size 32`` benchmarks a tiny SD whose VAE down-samples once (32x32 latents
at 64 px, nearer SD 1.5's 64x64, where the UNet's compute dominates) instead of the
embedded model's three times (8x8); a comma list (``--latent-size 8,32``) runs each
size in turn and prints one table per size.

On a shared machine, pin it to one free core with one thread; the runs it
starts inherit the CPU affinity:

    taskset -c 1 python scripts/bench_ddpo.py --threads 1 --epochs 3 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python scripts/bench_ddpo.py` from anywhere imports the toolkit
    sys.path.insert(0, str(REPO))
PEER_RUNNER = REPO / "scripts" / "peer_ddpo_runner.py"
DEFAULT_PEER_VENV = Path.home() / ".cache" / "artquant" / "peer-trl-0.23.1"
PEER_REQUIREMENTS = ["trl==0.23.1", "transformers<5", "diffusers==0.35.*", "peft==0.17.*",
                     "accelerate==1.10.*", "torch==2.13.0"]
PROMPT = "a painting of a cat"

# The comparison's settings, in our DDPOConfig's field names (the peer runner sets trl's equivalents).
OUR_SETTINGS = dict(
    sample_num_steps=10, sample_eta=1.0, guidance_scale=5.0,
    sample_batch_size=4, sample_num_batches_per_epoch=2,
    train_batch_size=2, train_gradient_accumulation_steps=1, train_num_inner_epochs=1,
    train_timestep_fraction=1.0, learning_rate=3e-4, clip_range=1e-4, adv_clip_max=5.0,
    per_prompt_stat_tracking=False, use_lora=True, lora_rank=4, kl_coef=0.0,
    mixed_precision="no", reward="brightness",
)


def peer_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_peer_venv(venv: Path) -> Path:
    """Create the peer's virtual environment once; later calls only check that trl 0.23.1 imports."""
    python = peer_python(venv)
    check = [str(python), "-c", "import trl, sys; sys.exit(trl.__version__ != '0.23.1')"]
    if python.is_file() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"creating the peer environment in {venv} (trl 0.23.1; a few minutes) ...", flush=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-c", str(REPO / "constraints.txt"),
                    *PEER_REQUIREMENTS], check=True)
    if subprocess.run(check, capture_output=True).returncode != 0:
        raise RuntimeError(f"{venv}: trl 0.23.1 does not import after installation")
    return python


def time_each_epoch(trainer, record: Callable[[int, float, dict], None],
                    sync: Callable[[], None] = lambda: None) -> None:
    """Wrap ``trainer.train_epoch`` so that each whole epoch (sampling, rewards, advantages, training) is
    timed and passed on as ``record(epoch, seconds, metrics)``. ``sync``: waits for the device (CUDA runs
    asynchronously), called before and after each epoch."""
    run_epoch = trainer.train_epoch

    def timed_epoch(epoch: int) -> dict:
        sync()
        start = time.perf_counter()
        metrics = run_epoch(epoch)
        sync()
        record(epoch, time.perf_counter() - start, metrics)
        return metrics

    trainer.train_epoch = timed_epoch


def run_ours(pipeline: str, epochs: int, threads: int, result: str, timestep_batch: int | None = None,
             mixed_precision: str = "no") -> int:
    """Worker: our DDPOTrainer for ``epochs`` epochs, timed around each epoch (sample + reward + train)."""
    import torch

    torch.set_num_threads(threads)
    from alignment import DDPOConfig, DDPOTrainer

    out_dir = tempfile.mkdtemp(prefix="ours-ddpo-")
    # train_timestep_batch is how our trainer shapes its compute, not a setting of the comparison:
    # the config's default unless --ours-timestep-batch is given (0: all timesteps in one call)
    memory = {} if timestep_batch is None else {"train_timestep_batch": timestep_batch}
    config = DDPOConfig(pretrained_model=pipeline, prompts=[PROMPT], eval_prompts=[], eval_every=0,
                        output_dir=out_dir, seed=0, num_epochs=epochs, checkpoint_every=0, log_with=None,
                        resolution=64, **memory, **{**OUR_SETTINGS, "mixed_precision": mixed_precision})
    t0 = time.perf_counter()
    trainer = DDPOTrainer(config)
    setup_s = time.perf_counter() - t0
    setup_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # libraries + models + LoRA
    per_epoch = int(config.sample_batch_size * config.sample_num_batches_per_epoch)
    epochs_out: list[dict] = []

    def record(epoch: int, epoch_s: float, metrics: dict) -> None:
        epochs_out.append({"epoch": epoch, "epoch_s": epoch_s, "samples": per_epoch,
                           "samples_per_s": per_epoch / epoch_s, "sample_s": metrics.get("sample_s"),
                           "train_s": metrics.get("train_s"), "reward_s": metrics.get("reward_s")})
        print(f"ours epoch {epoch}: {epoch_s:.2f} s ({per_epoch / epoch_s:.3f} samples/s)", flush=True)

    time_each_epoch(trainer, record)
    trainer.train()
    Path(result).write_text(json.dumps({
        "name": "artquant DDPOTrainer", "threads": torch.get_num_threads(), "setup_s": setup_s,
        "train_timestep_batch": config.train_timestep_batch, "mixed_precision": config.mixed_precision,
        "train_call_latent_budget": config.train_call_latent_budget,
        "setup_rss_mib": setup_rss_mib,
        "epochs": epochs_out, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "versions": {"torch": torch.__version__},
    }, indent=1))
    return 0


def _launch(cmd: list[str], threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               TOKENIZERS_PARALLELISM="false", WANDB_MODE="disabled", PYTHONPATH=str(REPO))
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        result = fh.name
    proc = subprocess.run(cmd + ["--result", result], env=env, cwd=str(REPO), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark run failed ({' '.join(cmd[:2])}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    data = json.loads(Path(result).read_text())
    os.unlink(result)
    return data


def summarize(runs: list[dict]) -> dict:
    steady = [e for run in runs for e in run["epochs"][1:]]
    if not steady:
        raise ValueError("need at least 2 epochs per run (the first is warm-up)")
    return {
        "samples_per_s": statistics.median(e["samples_per_s"] for e in steady),
        "epoch_s": statistics.median(e["epoch_s"] for e in steady),
        "sample_s": statistics.median(e["sample_s"] for e in steady if e.get("sample_s") is not None)
        if any(e.get("sample_s") is not None for e in steady) else None,
        "train_s": statistics.median(e["train_s"] for e in steady if e.get("train_s") is not None)
        if any(e.get("train_s") is not None for e in steady) else None,
        "peak_rss_mib": max(run["peak_rss_mib"] for run in runs),
        "setup_rss_mib": max(run.get("setup_rss_mib", 0.0) for run in runs),
        "steady_epochs": len(steady),
        "name": runs[0]["name"],
        "versions": runs[0].get("versions", {}),
    }


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="DDPO: artquant vs trl 0.23.1 at identical settings")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run; the first is warm-up")
    parser.add_argument("--rounds", type=int, default=2, help="runs per side, alternating")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pipeline", default=None, help="tiny SD folder (default: build_tiny_sd into a temp dir)")
    parser.add_argument("--latent-size", default="8", help="latent side(s) of the built tiny SD at 64 px: 8 (the "
                        "embedded model), 16 or 32; a comma list runs each (ignored with --pipeline)")
    parser.add_argument("--peer-venv", type=Path, default=DEFAULT_PEER_VENV)
    parser.add_argument("--ours-timestep-batch", type=int, default=None,
                        help="our train_timestep_batch (timesteps per UNet call in training; default: DDPOConfig's; "
                             "0: all in one call)")
    parser.add_argument("--mixed-precision", default="no", choices=["no", "bf16"],
                        help="both trainers: 'bf16' autocasts the UNet and VAE (trl through its mixed_precision); "
                             "log-probabilities and rewards stay float32")
    parser.add_argument("--skip-ours", action="store_true")
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--out", default=None, help="write the summary JSON here")
    parser.add_argument("--worker", choices=["ours"], help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (the first epoch is warm-up)")
    if args.worker == "ours":
        return run_ours(args.pipeline, args.epochs, args.threads, args.result, args.ours_timestep_batch,
                        args.mixed_precision)

    sizes = [int(v) for v in str(args.latent_size).split(",")]
    bad = [v for v in sizes if v not in LATENT_VAE_CHANNELS]
    if bad:
        parser.error(f"--latent-size must be among {sorted(LATENT_VAE_CHANNELS)}, got {bad}")
    peer = None if args.skip_peer else ensure_peer_venv(args.peer_venv)
    results = {}
    for size in ([None] if args.pipeline else sizes):
        pipeline = args.pipeline or build_bench_pipeline(size)
        results[f"latent_{size}" if size else "pipeline"] = bench_one(args, pipeline, peer, size)
    if args.out:
        Path(args.out).write_text(json.dumps(results if len(results) > 1 else next(iter(results.values())),
                                             indent=1))
    return 0


#: VAE channels per level giving each latent side at 64 px (one level per down-sampling, plus one)
LATENT_VAE_CHANNELS = {8: (16, 32, 32, 32), 16: (16, 32, 32), 32: (16, 32)}


def build_bench_pipeline(latent_size: int) -> str:
    """The random-init tiny SD with a VAE that down-samples 64 px to ``latent_size`` (the UNet unchanged)."""
    from alignment.tiny_sd import TinySDArchitecture, save_tiny_sd, tiny_sd_pipeline

    arch = TinySDArchitecture(vae_channels=LATENT_VAE_CHANNELS[latent_size])
    out = Path(tempfile.mkdtemp(prefix=f"bench-ddpo-{latent_size}-")) / "tiny_sd"
    return save_tiny_sd(tiny_sd_pipeline(arch, seed=0), out, arch)


def bench_one(args, pipeline: str, peer, latent_size: int | None) -> dict:
    """Alternating rounds of both trainers on one pipeline folder; prints and returns the summary."""
    load = os.getloadavg()
    runs: dict[str, list[dict]] = {"ours": [], "peer": []}
    common = ["--pipeline", pipeline, "--epochs", str(args.epochs), "--threads", str(args.threads),
              "--mixed-precision", args.mixed_precision]
    for round_ in range(args.rounds):
        if not args.skip_ours:
            print(f"round {round_ + 1}/{args.rounds}: ours", flush=True)
            extra = ([] if args.ours_timestep_batch is None
                     else ["--ours-timestep-batch", str(args.ours_timestep_batch)])
            runs["ours"].append(_launch([sys.executable, str(Path(__file__).resolve()), "--worker", "ours", *common,
                                         *extra], args.threads))
        if peer is not None:
            print(f"round {round_ + 1}/{args.rounds}: trl 0.23.1", flush=True)
            runs["peer"].append(_launch([str(peer), str(PEER_RUNNER), *common], args.threads))

    summary = {side: summarize(r) for side, r in runs.items() if r}
    ours_tb = runs["ours"][0].get("train_timestep_batch") if runs["ours"] else None
    summary["settings"] = {**OUR_SETTINGS, "mixed_precision": args.mixed_precision, "resolution": 64,
                           "latent_size": latent_size,
                           "ours_train_timestep_batch": ours_tb,
                           "epochs_per_run": args.epochs, "rounds": args.rounds,
                           "threads": args.threads, "prompt": PROMPT}
    summary["loadavg_before"] = load
    summary["loadavg_after"] = os.getloadavg()
    if "ours" in summary and "peer" in summary:
        summary["speedup"] = summary["ours"]["samples_per_s"] / summary["peer"]["samples_per_s"]
        summary["memory_ratio"] = summary["ours"]["peak_rss_mib"] / summary["peer"]["peak_rss_mib"]
    print(f"\nlatent size {latent_size or 'of ' + pipeline}, mixed precision {args.mixed_precision}")
    print(f"{'trainer':<28} {'samples/s':>10} {'epoch s':>8} {'sample s':>9} {'train s':>8} {'peak RSS MiB':>13} "
          f"{'after setup':>12}")
    for side in ("ours", "peer"):
        if side in summary:
            s = summary[side]
            print(f"{s['name']:<28} {s['samples_per_s']:>10.3f} {s['epoch_s']:>8.2f} {_fmt(s['sample_s'], '9.2f')} "
                  f"{_fmt(s['train_s'], '8.2f')} {s['peak_rss_mib']:>13.0f} {s['setup_rss_mib']:>12.0f}")
    if "speedup" in summary:
        print(f"speed-up {summary['speedup']:.2f}x, memory ratio {summary['memory_ratio']:.2f} "
              f"(load average before {load[0]:.2f}, after {summary['loadavg_after'][0]:.2f})")
    return {"runs": runs, **summary}


if __name__ == "__main__":
    sys.exit(main())
