"""Real-size figures for a GPU session, taken in one call: DDPO on an SD 1.5-size UNet and a
7B-class Qwen2.5-VL scorer as a differentiable reward. Random weights at real sizes: nothing is
downloaded (the tokenizers are the toolkit's small local ones, which leaves the compute unchanged
but for the embedding tables).

    python -m scripts.gpu_figures --out runs/gpu_figures            # GPU, real sizes, bf16
    python -m scripts.gpu_figures --small --out /tmp/gpu_figures    # CPU, tiny sizes: the same code paths

Figures (each written to ``OUT/gpu_figures.json`` as soon as it is taken, so a run cut short keeps
what it finished):

1. ``ddpo``: this toolkit's DDPOTrainer on a random-init SD 1.5 architecture (``sd15_architecture``)
   at 512 px, 50 DDIM steps, eta 1, CFG 5, LoRA r4, bf16: trajectories/s over the steady epochs and
   peak GPU memory; beside it trl 0.23.1's DDPOTrainer on the same folder and settings when ``trl``
   imports (``scripts/peer_ddpo_runner.py``; carry its wheels to the GPU machine). ddpo-pytorch's
   published figure is about 0.22 trajectories/s per A100.
2. ``reward``: ``ArtQuantReward`` on a Qwen2.5-VL with the 7B model's sizes, batch 8 at 448 px, bf16,
   gradient checkpointing, forward + backward to the pixels: images/s and peak memory, with SDPA
   and, when ``flash_attn`` imports, FlashAttention-2.

``scripts/gpu_figures.sh`` wraps this for the device machine (wheels, time budget, output folder).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.bench_ddpo import OUR_SETTINGS, time_each_epoch  # noqa: E402 - after the path set-up above

#: the trl comparison's settings (scripts/bench_ddpo.py) at the DDPO paper's SD 1.5 sampling length, batches
#: sized for one GPU; the precision is set per device below
DDPO_SETTINGS = {k: v for k, v in OUR_SETTINGS.items() if k != "mixed_precision"} | dict(
    sample_num_steps=50, sample_batch_size=8, train_batch_size=4)
SMALL_DDPO = dict(sample_num_steps=3, sample_batch_size=2, sample_num_batches_per_epoch=1, train_batch_size=2)
PROMPT = "a painting of a cat"


def qwen2_5_vl_7b_sizes():
    """Qwen2.5-VL-7B's vision tower and language model sizes, as a ``TinyScorerConfig``."""
    from artquant_core.tiny import TinyScorerConfig

    return TinyScorerConfig(family="qwen2_5_vl", image_size=448, patch_size=14, vision_hidden=1280,
                            vision_layers=32, vision_heads=16, vision_intermediate=3420, text_hidden=3584,
                            text_layers=28, text_heads=28, text_kv_heads=4, text_intermediate=18944,
                            text_rope_theta=1_000_000.0, patch_embed_init="default")


def peak_memory_mib(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_peak(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------- 1. DDPO
def build_sd_folder(small: bool, out: Path) -> str:
    """A random-init SD 1.5-architecture folder (``--small``: the tiny SD's sizes), saved for both trainers."""
    from alignment.tiny_sd import TinySDArchitecture, save_tiny_sd, sd15_architecture, tiny_sd_pipeline

    arch = TinySDArchitecture() if small else sd15_architecture()
    return save_tiny_sd(tiny_sd_pipeline(arch, seed=0), out, arch)


def ddpo_ours(pipeline: str, small: bool, epochs: int, device: str) -> dict:
    """Our DDPOTrainer for ``epochs`` epochs; the first is warm-up."""
    from alignment import DDPOConfig, DDPOTrainer
    from alignment.tiny_sd import sd15_architecture

    settings = {**DDPO_SETTINGS, **(SMALL_DDPO if small else {})}
    config = DDPOConfig(pretrained_model=pipeline, prompts=[PROMPT], eval_prompts=[], eval_every=0,
                        output_dir=tempfile.mkdtemp(prefix="gpu-figures-ddpo-"), seed=0, num_epochs=epochs,
                        checkpoint_every=0, log_with=None, resolution=64 if small else sd15_architecture().resolution,
                        mixed_precision="bf16" if device == "cuda" else "no", **settings)
    trainer = DDPOTrainer(config)
    reset_peak(device)
    per_epoch = config.sample_batch_size * config.sample_num_batches_per_epoch
    seconds = []

    def record(epoch: int, epoch_s: float, metrics: dict) -> None:
        seconds.append(epoch_s)
        print(f"ddpo ours epoch {epoch}: {epoch_s:.1f} s", flush=True)

    time_each_epoch(trainer, record, sync=lambda: sync(device))
    trainer.train()
    steady = seconds[1:] or seconds
    return {"trajectories_per_s": per_epoch * len(steady) / sum(steady), "epoch_s": seconds,
            "trajectories_per_epoch": per_epoch, "peak_memory_mib": peak_memory_mib(device),
            "mixed_precision": config.mixed_precision, "settings": settings}


def ddpo_peer(pipeline: str, small: bool, epochs: int, device: str, python: str = sys.executable) -> dict | None:
    """trl 0.23.1 on the same folder and settings, in a subprocess of ``python``; ``None`` when trl does
    not import there."""
    probe = subprocess.run([python, "-c", "import trl, sys; sys.exit(not hasattr(trl, 'DDPOTrainer'))"],
                           capture_output=True)
    if probe.returncode != 0:
        print("trl with DDPOTrainer not importable: the peer row is skipped", flush=True)
        return None
    settings = {**DDPO_SETTINGS, **(SMALL_DDPO if small else {})}
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        result = fh.name
    cmd = [python, str(ROOT / "scripts" / "peer_ddpo_runner.py"), "--pipeline", pipeline, "--result", result,
           "--epochs", str(epochs), "--threads", str(torch.get_num_threads()),
           "--mixed-precision", "bf16" if device == "cuda" else "no",
           "--sample-steps", str(settings["sample_num_steps"]), "--sample-batch", str(settings["sample_batch_size"]),
           "--sample-batches", str(settings["sample_num_batches_per_epoch"]),
           "--train-batch", str(settings["train_batch_size"])]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr[-2000:]}
    data = json.loads(Path(result).read_text())
    os.unlink(result)
    steady = data["epochs"][1:] or data["epochs"]
    return {"trajectories_per_s": sum(e["samples"] for e in steady) / sum(e["epoch_s"] for e in steady),
            "epoch_s": [e["epoch_s"] for e in data["epochs"]], "name": data["name"],
            "peak_memory_mib": data.get("cuda_max_allocated_mib") or data["peak_rss_mib"]}


# ---------------------------------------------------------------------------- 2. the reward
def reward_figure(small: bool, attn: str, batch: int, repeats: int, device: str) -> dict:
    """Differentiable ArtQuantReward throughput (forward + backward to pixels) and peak memory."""
    from artquant_core.tiny import TinyScorerConfig, build_tiny_scorer
    from reward.artquant_reward import ArtQuantReward

    sizes = TinyScorerConfig() if small else qwen2_5_vl_7b_sizes()
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):  # build the weights where they will run: no 7B copy on the host
            scorer = build_tiny_scorer(seed=0, pretrained=False, config=sizes)
    finally:
        torch.set_default_dtype(default_dtype)
    scorer.model.set_attn_implementation(attn)  # vision tower and language model alike; checks flash_attn
    scorer.model.gradient_checkpointing_enable()
    scorer.model.train()  # checkpointing is active in training mode only (no dropout in Qwen2.5-VL)
    reward = ArtQuantReward(scorer, normalize=False, max_batch=batch)
    size = sizes.image_size
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)

    def step() -> None:
        leaf = images.clone().requires_grad_(True)
        reward(leaf).float().sum().backward()
        assert leaf.grad is not None and torch.isfinite(leaf.grad).all()

    step()  # warm-up
    reset_peak(device)
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    params = sum(p.numel() for p in scorer.model.parameters())
    return {"attn_implementation": attn, "batch": batch, "image_size": size, "dtype": str(dtype),
            "parameters_b": params / 1e9, "images_per_s": batch / sorted(times)[len(times) // 2],
            "peak_memory_mib": peak_memory_mib(device), "gradient_checkpointing": True}


# ---------------------------------------------------------------------------- driver
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for gpu_figures.json")
    parser.add_argument("--small", action="store_true", help="tiny sizes (a CPU check of the same code paths)")
    parser.add_argument("--only", choices=["ddpo", "reward"], default=None, help="take one figure only")
    parser.add_argument("--epochs", type=int, default=3, help="DDPO epochs per trainer; the first is warm-up")
    parser.add_argument("--reward-batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="timed reward steps (median)")
    parser.add_argument("--peer-python", default=sys.executable,
                        help="the Python that has trl 0.23.1 (default: this one; on CPU, bench_ddpo's peer venv)")
    args = parser.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.small:
        parser.error("real sizes need a GPU; use --small for the CPU check")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    figures: dict = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                     "torch": torch.__version__, "small": args.small}

    def save() -> None:
        tmp = out / "gpu_figures.json.tmp"
        tmp.write_text(json.dumps(figures, indent=1))
        os.replace(tmp, out / "gpu_figures.json")

    if args.only in (None, "reward"):
        attns = ["sdpa"]
        try:
            import flash_attn  # noqa: F401

            attns.append("flash_attention_2")
        except ImportError:
            figures["flash_attention_2"] = "flash_attn not installed"
        for attn in attns:
            figures[f"reward_{attn}"] = reward_figure(args.small, attn, args.reward_batch, args.repeats, device)
            print(json.dumps({f"reward_{attn}": figures[f"reward_{attn}"]}), flush=True)
            save()
            if device == "cuda":
                torch.cuda.empty_cache()
    if args.only in (None, "ddpo"):
        with tempfile.TemporaryDirectory(prefix="gpu-figures-sd-") as tmp:
            pipeline = build_sd_folder(args.small, Path(tmp) / "sd")
            figures["ddpo_ours"] = ddpo_ours(pipeline, args.small, args.epochs, device)
            print(json.dumps({"ddpo_ours": figures["ddpo_ours"]}), flush=True)
            save()
            figures["ddpo_trl"] = ddpo_peer(pipeline, args.small, args.epochs, device, args.peer_python)
            save()
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
