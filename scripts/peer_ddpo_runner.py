"""Run trl 0.23.1's DDPOTrainer on a local pipeline folder and report per-epoch timings.

Used by ``scripts/bench_ddpo.py`` as the performance peer. It runs inside the
peer's own virtual environment (trl 0.23.1, transformers 4.57, diffusers 0.35,
peft 0.17, accelerate 1.10), never in the toolkit's, and imports nothing from
the toolkit. It drives trl's public API: ``DDPOConfig``,
``DefaultDDPOStableDiffusionPipeline`` (a diffusers folder + trl's own LoRA:
rank 4 on to_q/to_k/to_v/to_out.0) and ``DDPOTrainer.step``.

Writes one JSON object to ``--result``: settings, per-epoch wall time
(sampling + reward + training) and this process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
import warnings


def brightness(images, prompts, metadata):
    """Mean BT.601 luma of each image, as the toolkit's "brightness" reward computes it.

    ``images`` are (B, 3, H, W) floats in [0, 1] (trl samples with output_type "pt").
    """
    import torch

    weights = torch.tensor((0.299, 0.587, 0.114), dtype=images.dtype, device=images.device)
    values = torch.einsum("bchw,c->bhw", images.clamp(0, 1), weights).mean(dim=(1, 2))
    return values.to(torch.float32), {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", required=True, help="diffusers StableDiffusionPipeline folder")
    parser.add_argument("--result", required=True, help="where to write the JSON result")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prompt", default="a painting of a cat")
    parser.add_argument("--mixed-precision", default="no", choices=["no", "bf16"],
                        help="trl's mixed_precision (accelerate autocast; on CPU too)")
    # the bench's settings by default; scripts/gpu_figures.py sets SD 1.5-paper sizes
    parser.add_argument("--sample-steps", type=int, default=10)
    parser.add_argument("--sample-batch", type=int, default=4)
    parser.add_argument("--sample-batches", type=int, default=2)
    parser.add_argument("--train-batch", type=int, default=2)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    from trl import DDPOConfig, DDPOTrainer, DefaultDDPOStableDiffusionPipeline

    logdir = tempfile.mkdtemp(prefix="peer-ddpo-")
    config = DDPOConfig(
        exp_name="peer_bench", seed=args.seed, log_with=None, logdir=logdir, num_epochs=args.epochs,
        save_freq=10**9, mixed_precision=args.mixed_precision, allow_tf32=False,
        project_kwargs={"project_dir": logdir, "automatic_checkpoint_naming": True, "total_limit": 1},
        sample_num_steps=args.sample_steps, sample_eta=1.0, sample_guidance_scale=5.0,
        sample_batch_size=args.sample_batch, sample_num_batches_per_epoch=args.sample_batches,
        train_batch_size=args.train_batch, train_gradient_accumulation_steps=1, train_num_inner_epochs=1,
        train_timestep_fraction=1.0, train_cfg=True, train_learning_rate=3e-4,
        train_max_grad_norm=1.0, train_clip_range=1e-4, train_adv_clip_max=5.0,
        per_prompt_stat_tracking=False, async_reward_computation=False,
    )
    t0 = time.perf_counter()
    from accelerate import PartialState

    PartialState()  # trl logs through accelerate's logger while it builds the pipeline
    pipeline = DefaultDDPOStableDiffusionPipeline(args.pipeline, use_lora=True)
    trainer = DDPOTrainer(config, brightness, lambda: (args.prompt, {}), pipeline)
    pipeline.set_progress_bar_config(disable=True)
    setup_s = time.perf_counter() - t0
    setup_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # libraries + models + LoRA

    # Split of each epoch into sampling (+ reward) and training, for the table only;
    # the headline figure is the whole epoch's wall time around the public step().
    split: dict[str, float] = {"sample_s": 0.0, "train_s": 0.0}

    def timed(name, fn):
        def wrapper(*a, **kw):
            start = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                split[name] += time.perf_counter() - start
        return wrapper

    trainer._generate_samples = timed("sample_s", trainer._generate_samples)
    trainer._train_batched_samples = timed("train_s", trainer._train_batched_samples)

    samples_per_epoch = config.sample_batch_size * config.sample_num_batches_per_epoch
    epochs = []
    global_step = 0
    for epoch in range(args.epochs):
        split.update(sample_s=0.0, train_s=0.0)
        start = time.perf_counter()
        global_step = trainer.step(epoch, global_step)
        epoch_s = time.perf_counter() - start
        epochs.append({"epoch": epoch, "epoch_s": epoch_s, "samples": samples_per_epoch,
                       "samples_per_s": samples_per_epoch / epoch_s, **split})
        print(f"peer epoch {epoch}: {epoch_s:.2f} s ({samples_per_epoch / epoch_s:.3f} samples/s)", flush=True)

    import diffusers
    import peft
    import transformers
    import trl

    result = {
        "name": f"trl {trl.__version__} DDPOTrainer",
        "versions": {"trl": trl.__version__, "torch": torch.__version__, "diffusers": diffusers.__version__,
                     "transformers": transformers.__version__, "peft": peft.__version__},
        "threads": torch.get_num_threads(), "setup_s": setup_s, "setup_rss_mib": setup_rss_mib, "epochs": epochs,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "cuda_max_allocated_mib": (torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None),
        "trainable_params": sum(p.numel() for p in pipeline.unet.parameters() if p.requires_grad),
    }
    with open(args.result, "w") as fh:
        json.dump(result, fh, indent=1)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
