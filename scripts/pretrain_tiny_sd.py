"""Pre-train the painter: a tiny Stable Diffusion pipeline learnt from scratch on SynthArt (image, caption).

Stages (each resumes from its latest checkpoint after a kill; finished stages are skipped):

1. data: ``--n-images`` SynthArt paintings of seed ``--data-seed`` with their captions,
   cached in ``OUT/data/`` (uint8 images, safetensors + captions JSON);
2. VAE (``alignment.painter_training.train_vae``), then the latents' per-channel
   statistics folded into the VAE (``OUT/vae/``) and every image encoded (``OUT/latents.safetensors``);
3. UNet + text encoder (``train_unet``), EMA weights kept;
4. the pipeline assembled in ``OUT/painter/`` (``StableDiffusionPipeline.save_pretrained``),
   with ``training_summary.json``; ``--ship`` copies it into ``alignment/pretrained/tiny_painter/``.

    python -m scripts.pretrain_tiny_sd --out runs/painter [--vae-steps 2000 --unet-steps 6000] [--ship]

The shipped painter: a run of ``--n-images 16000 --vae-steps 1000 --unet-steps 1500 --noise-schedule zero-snr-v``
(the painter shipped until 2026-12-07), whose VAE a second run fine-tuned with the texture term and trained a
fresh UNet on: ``--vae-init FIRST_RUN/vae --vae-steps 400 --vae-lr 1e-3 --vae-texture-weight 3 --unet-steps 1500
--noise-schedule zero-snr-v`` (its ``training_summary.json`` has the command and history).

On a GPU the same command runs with larger settings (``--unet-batch 256 --unet-steps 40000``); a machine
lent for calls of limited length runs it in parts with ``--time-limit-minutes`` and ``--vae-from``
(``bash scripts/gpu_figures.sh painter OUT``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOISE_SCHEDULES = ("sd", "zero-snr-v")  # alignment.tiny_sd.NOISE_SCHEDULES (not imported here: --help stays fast)
DATA_SEED = 2000  # disjoint from the scorer's pre-training (1000) and fresh-check (777) draws


def _logger(out: Path):
    """Print each row and append it to ``OUT/metrics.jsonl`` through the toolkit's run tracker."""
    from artquant_core.tracking import RunTracker

    tracker = RunTracker(out)

    def log(row: dict) -> None:
        print(json.dumps(row), flush=True)
        tracker.log({k: v for k, v in row.items() if k != "step"}, row["step"])
    return log


def make_painter_data(data_dir: Path, n: int, seed: int, size: int):
    """SynthArt paintings and captions in memory, cached in ``data_dir`` (uint8 (N, H, W, 3), list[str])."""
    import numpy as np
    import torch
    from safetensors.torch import load_file, save_file
    from tqdm import tqdm

    from artquant_core.synthart.dataset import synth_item

    images_file, captions_file = data_dir / "images.safetensors", data_dir / "captions.json"
    if images_file.is_file() and captions_file.is_file():
        meta = json.loads(captions_file.read_text())
        if (meta["n"], meta["seed"], meta["size"]) == (n, seed, size):
            return load_file(images_file)["images"], meta["captions"]
    data_dir.mkdir(parents=True, exist_ok=True)
    pixels = np.empty((n, size, size, 3), dtype=np.uint8)
    captions = []
    for i in tqdm(range(n), desc="SynthArt", mininterval=5):
        item = synth_item(seed, i, size)
        pixels[i] = item["pixels"]
        captions.append(item["caption"])
    images = torch.from_numpy(pixels)
    save_file({"images": images}, images_file)
    captions_file.write_text(json.dumps({"n": n, "seed": seed, "size": size, "captions": captions}))
    return images, captions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="run folder (data, stage checkpoints, painter)")
    parser.add_argument("--n-images", type=int, default=16000)
    parser.add_argument("--data-seed", type=int, default=DATA_SEED)
    parser.add_argument("--vae-steps", type=int, default=2000)
    parser.add_argument("--vae-batch", type=int, default=16)
    parser.add_argument("--vae-lr", type=float, default=1e-3)
    parser.add_argument("--unet-steps", type=int, default=6000)
    parser.add_argument("--unet-batch", type=int, default=64)
    parser.add_argument("--unet-lr", type=float, default=1e-3)
    parser.add_argument("--vae-fp32", action="store_true", help="train the VAE in float32 (default: bf16 autocast, "
                        "2x faster on CPUs with AMX)")
    parser.add_argument("--vae-initial-std", type=float, default=None,
                        help="start the VAE's posterior spread at this value (e.g. 0.02) instead of ~1, so no "
                             "latent channel is given up as noise early on (default: off, as the shipped painter)")
    parser.add_argument("--freeze-text-encoder", action="store_true",
                        help="keep the random-init text encoder fixed while the UNet trains (as SD keeps CLIP fixed); "
                             "trained jointly, it lets the shape words collapse (alignment.painter_training.train_unet)")
    parser.add_argument("--unet-bf16", action="store_true", help="bf16 autocast for the UNet (on GPUs; on this "
                        "CPU float32 was faster: 0.65 vs 0.77 s a batch-64 step)")
    parser.add_argument("--checkpoint-every", type=int, default=200, help="steps between stage checkpoints")
    parser.add_argument("--stop-at-step", type=int, default=None,
                        help="checkpoint the running stage at this step and exit (continue later with the same "
                             "command: the run resumes from its checkpoints)")
    parser.add_argument("--time-limit-minutes", type=float, default=None,
                        help="checkpoint the running stage and exit once this invocation has run this long (a run "
                             "split into calls of limited length; the same command continues it)")
    parser.add_argument("--vae-texture-weight", type=float, default=0.0,
                        help="weight of the VAE's texture term (alignment.painter_training.texture_loss): its "
                             "decoder then draws SynthArt's pixel noise as grain (e.g. 3; default 0, as the shipped "
                             "painter, whose decoder smooths the noise away)")
    parser.add_argument("--vae-init", default=None,
                        help="start the VAE stage from this VAE's weights (same architecture, e.g. "
                             "alignment/pretrained/tiny_painter/vae) and train it --vae-steps more")
    parser.add_argument("--vae-from", default=None,
                        help="start from this finished painter VAE (a diffusers AutoencoderKL folder with whitened "
                             "latents, e.g. alignment/pretrained/tiny_painter/vae) instead of training one")
    parser.add_argument("--preview", action="store_true",
                        help="write OUT/painter_preview from the latest UNet checkpoint (EMA) and exit; safe beside "
                             "a running training")
    parser.add_argument("--unet-cross-attention", default=None,
                        help="comma list of 0/1 per UNet level from the top: cross-attention there (default: the "
                             "shipped painter's 0,1,1); kept in OUT/architecture.json, fixed for a run folder")
    parser.add_argument("--noise-schedule", default=None, choices=NOISE_SCHEDULES,
                        help="sd: SD 1.x's (epsilon, scaled-linear); zero-snr-v: zero terminal SNR, v prediction, "
                             "trailing timesteps (default: the shipped painter's); kept in OUT/architecture.json")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    parser.add_argument("--ship", action="store_true", help="copy the painter into the package")
    args = parser.parse_args(argv)
    if args.vae_init and (args.vae_from or args.vae_initial_std is not None):
        parser.error("--vae-init starts the VAE stage from trained weights: it goes with neither --vae-from "
                     "(no VAE stage) nor --vae-initial-std (a fresh start's setting)")

    import torch

    from alignment import painter_training as pt
    from artquant_core.tracking import read_metrics
    from alignment.tiny_sd import PAINTER_DIR, painter_architecture, save_tiny_sd, tiny_sd_pipeline
    from scripts.pretrain_tiny_scorer import machine_description

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = _logger(out)
    arch = run_architecture(out, painter_architecture(), args.unet_cross_attention, args.noise_schedule, parser)
    bf16 = not args.vae_fp32
    start = time.time()

    if args.preview:
        return write_preview(out, arch)

    # 1. data
    images, captions = make_painter_data(out / "data", args.n_images, args.data_seed, arch.resolution)

    # 2. VAE, then latent normalisation and the encoded data set
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe = tiny_sd_pipeline(arch, seed=0).to(device)
    deadline = None if args.time_limit_minutes is None else start + 60.0 * args.time_limit_minutes
    vae_cfg = pt.PainterStageConfig(steps=args.vae_steps, batch_size=args.vae_batch, learning_rate=args.vae_lr,
                                    seed=1, bf16=bf16, checkpoint_every=args.checkpoint_every,
                                    stop_at_step=args.stop_at_step, deadline=deadline)
    latents_file = out / "latents.safetensors"
    if args.vae_from and not (out / "vae" / "config.json").is_file():
        adopt_vae(Path(args.vae_from), out, pipe.vae.config, parser)
    if not (out / "vae" / "config.json").is_file():
        if args.vae_init:
            start_vae_from(Path(args.vae_init), pipe.vae, parser)
        if not pt.train_vae(pipe.vae, images, vae_cfg, out / "vae_stage", log=log,
                            initial_posterior_std=args.vae_initial_std,
                            texture_weight=args.vae_texture_weight)["complete"]:
            print(f"stopped in the VAE stage; run the same command again to continue ({out})")
            return 0
        means, _ = pt.encode_images(pipe.vae, images[:2048], bf16=bf16)
        stats = pt.normalise_latents(pipe.vae, means)
        log({"stage": "vae_normalise", "step": vae_cfg.steps, **stats})
        pipe.vae.to("cpu").save_pretrained(out / "vae", safe_serialization=True)
    vae = load_run_vae(out).to(device)
    if not latents_file.is_file():
        from safetensors.torch import save_file

        means, stds = pt.encode_images(vae, images, bf16=bf16)
        save_file({"means": means.contiguous(), "stds": stds.contiguous()}, latents_file)
    from safetensors.torch import load_file

    latents = load_file(latents_file)

    # 3. UNet + text encoder
    unet_cfg = pt.PainterStageConfig(steps=args.unet_steps, batch_size=args.unet_batch,
                                     learning_rate=args.unet_lr, seed=2, bf16=args.unet_bf16,
                                     checkpoint_every=args.checkpoint_every, stop_at_step=args.stop_at_step,
                                     deadline=deadline)
    unet_result, ema = pt.train_unet(pipe.unet, pipe.text_encoder, pipe.tokenizer, latents["means"],
                                     latents["stds"], captions, pipe.scheduler, unet_cfg, out / "unet_stage",
                                     log=log, train_text_encoder=not args.freeze_text_encoder)
    if not unet_result["complete"]:
        print(f"stopped in the UNet stage at step {unet_result['steps']}; run the same command again to continue")
        return 0

    # 4. assemble and save (EMA UNet, trained text encoder, normalised VAE)
    pipe.unet.load_state_dict(ema.state_dict())
    pipe.to("cpu")
    vae = vae.to("cpu")
    # stored in float16 (13 MB instead of 26: the package stays under 30 MB); from_pretrained loads it as float32
    pipe.unet.to(torch.float16)
    pipe.register_modules(vae=vae)
    painter_dir = out / "painter"
    save_tiny_sd(pipe, painter_dir, arch)
    rows = read_metrics(out)
    last_vae = next((r for r in reversed(rows) if r.get("stage") == "vae"), {})
    summary = {
        "command": "python -m scripts.pretrain_tiny_sd " + " ".join(sys.argv[1:] if argv is None else argv),
        "data": {"generator": "SynthArt", "seed": args.data_seed, "n_images": args.n_images,
                 "size": arch.resolution},
        "vae": ({"from": args.vae_from} if args.vae_from else
                {**_stage_settings(vae_cfg), "initial_posterior_std": args.vae_initial_std, "init": args.vae_init,
                 "texture_weight": args.vae_texture_weight,
                 "final_mse": last_vae.get("mse"), "final_psnr_db": last_vae.get("psnr_db")}),
        "unet": {**_stage_settings(unet_cfg), **unet_result, "text_encoder_trained": not args.freeze_text_encoder,
                 "stored_dtype": "float16 (EMA weights)"},
        "architecture": {"unet_channels": arch.unet_channels, "vae_channels": arch.vae_channels,
                         "latent_size": arch.latent_size, "text_hidden": arch.text_hidden,
                         "unet_cross_attention": list(arch.unet_cross_attention),
                         "noise_schedule": arch.noise_schedule,
                         "max_tokens": arch.max_tokens,
                         "parameters_m": {n: round(sum(p.numel() for p in getattr(pipe, n).parameters()) / 1e6, 3)
                                          for n in ("unet", "vae", "text_encoder")}},
        "wall_minutes_this_invocation": round((time.time() - start) / 60, 1),
        "machine": machine_description(),
    }
    (painter_dir / "training_summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(json.dumps(summary, indent=2, default=str))
    if args.ship:
        if PAINTER_DIR.exists():
            shutil.rmtree(PAINTER_DIR)
        shutil.copytree(painter_dir, PAINTER_DIR)
        print(f"shipped to {PAINTER_DIR}")
    return 0


def run_architecture(out: Path, arch, cross_attention: str | None, noise_schedule: str | None,
                     parser: argparse.ArgumentParser):
    """The painter's sizes for this run folder: ``arch`` with ``--unet-cross-attention`` and
    ``--noise-schedule`` applied, written to ``OUT/architecture.json`` on the first invocation and read back
    by later ones (the checkpoints fit it; a folder from before a setting existed has that setting's
    default)."""
    import dataclasses

    changes: dict = {}
    if cross_attention is not None:
        values = [v.strip() for v in cross_attention.split(",")]
        if any(v not in ("0", "1") for v in values):
            parser.error(f"--unet-cross-attention: expected a comma list of 0/1, got {cross_attention!r}")
        levels = tuple(v == "1" for v in values)
        if len(levels) != len(arch.unet_channels):
            parser.error(f"--unet-cross-attention: {len(levels)} values for a UNet of {len(arch.unet_channels)} levels")
        if not any(levels):
            parser.error("--unet-cross-attention: at least one level needs cross-attention (the captions' way in)")
        changes["unet_cross_attention"] = levels
    if noise_schedule is not None:
        changes["noise_schedule"] = noise_schedule
    saved_file = out / "architecture.json"
    if saved_file.is_file():
        raw = json.loads(saved_file.read_text())
        saved = {"unet_cross_attention": tuple(raw["unet_cross_attention"]),
                 "noise_schedule": raw.get("noise_schedule", "sd")}
        for key, value in changes.items():
            if saved[key] != value:
                flag = "--" + key.replace("_", "-")
                shown = ",".join(str(int(v)) for v in saved[key]) if key == "unet_cross_attention" else saved[key]
                parser.error(f"{flag} differs from this run folder's {shown} ({saved_file}); use a new --out")
        return dataclasses.replace(arch, **saved)
    from artquant_core.records import write_json_atomic

    arch = dataclasses.replace(arch, **changes)
    write_json_atomic(saved_file, {"unet_cross_attention": list(arch.unet_cross_attention),
                                   "noise_schedule": arch.noise_schedule})
    return arch


def _stage_settings(cfg) -> dict:
    """A stage's settings for the summary (its deadline is a clock time, meaningless afterwards)."""
    settings = asdict(cfg)
    settings.pop("deadline")
    return settings


def adopt_vae(source: Path, out: Path, expected_config, parser: argparse.ArgumentParser) -> None:
    """Copy a finished painter VAE into the run folder as ``OUT/vae`` (the VAE stage is then skipped).

    It must be one whose latents ``normalise_latents`` whitened (``scaling_factor`` 1: the UNet learns those
    latents as they are) and fit this run's UNet: as many latent channels and the same down-sampling.
    """
    from artquant_core.checkpoint import atomic_directory

    config_file = source / "config.json"
    if not config_file.is_file() or not (source / "diffusion_pytorch_model.safetensors").is_file():
        parser.error(f"--vae-from {source}: expected a diffusers AutoencoderKL folder (config.json and "
                     f"diffusion_pytorch_model.safetensors), e.g. alignment/pretrained/tiny_painter/vae")
    config = json.loads(config_file.read_text())
    if config.get("scaling_factor") != 1.0:
        parser.error(f"--vae-from {source}: scaling_factor {config.get('scaling_factor')}, not 1.0: not a painter "
                     f"VAE with whitened latents (this script writes those in OUT/vae)")

    def downsampling(cfg) -> int:
        return 2 ** (len(cfg["block_out_channels"]) - 1)

    for key, value, wanted in (("latent_channels", config.get("latent_channels"), expected_config["latent_channels"]),
                               ("down-sampling", downsampling(config), downsampling(expected_config))):
        if value != wanted:
            parser.error(f"--vae-from {source}: {key} {value}, this run's UNet expects {wanted}")
    with atomic_directory(out / "vae") as tmp:
        for file in ("config.json", "diffusion_pytorch_model.safetensors"):
            shutil.copy2(source / file, tmp / file)
    print(f"VAE from {source} (its stage skipped)")


def start_vae_from(source: Path, vae, parser: argparse.ArgumentParser) -> None:
    """``--vae-init``: load ``source``'s weights into the run's fresh VAE before its stage (a resumed stage
    then loads its own checkpoint over them)."""
    from safetensors.torch import load_file

    weights_file = source / "diffusion_pytorch_model.safetensors"
    if not weights_file.is_file():
        parser.error(f"--vae-init {source}: no diffusion_pytorch_model.safetensors there (expected a diffusers "
                     f"AutoencoderKL folder, e.g. alignment/pretrained/tiny_painter/vae)")
    try:
        vae.load_state_dict(load_file(weights_file))
    except RuntimeError as error:
        first = str(error).splitlines()[1].strip() if len(str(error).splitlines()) > 1 else str(error)
        parser.error(f"--vae-init {source}: its weights do not fit this run's VAE ({first})")


def load_run_vae(out: Path):
    """The run folder's VAE, whose latents ``normalise_latents`` whitened: decoded at scale 1.

    Folders written before ``normalise_latents`` set ``scaling_factor`` still say SD's 0.18215,
    which would decode every sample from latents 5.5x too large; the scale is mended on load.
    """
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(out / "vae").eval()
    if vae.config.scaling_factor != 1.0 or vae.config.shift_factor:
        print(f"{out / 'vae'}: scaling_factor {vae.config.scaling_factor} -> 1.0 (its latents are whitened)")
        vae.register_to_config(scaling_factor=1.0, shift_factor=None)
    return vae


def write_preview(out: Path, arch) -> int:
    """The painter as it stands: normalised VAE + the latest UNet checkpoint's EMA and text encoder."""
    from safetensors.torch import load_file

    from alignment.tiny_sd import save_tiny_sd, tiny_sd_pipeline
    from artquant_core.checkpoint import latest_checkpoint

    checkpoint = latest_checkpoint(out / "unet_stage")
    if checkpoint is None or not (out / "vae" / "config.json").is_file():
        raise SystemExit(f"{out}: no UNet checkpoint yet (the VAE stage runs first)")
    pipe = tiny_sd_pipeline(arch, seed=0)
    pipe.unet.load_state_dict(load_file(checkpoint / "unet_ema.safetensors"))
    pipe.text_encoder.load_state_dict(load_file(checkpoint / "text_encoder.safetensors"))
    pipe.register_modules(vae=load_run_vae(out))
    print(save_tiny_sd(pipe, out / "painter_preview", arch), f"(UNet {checkpoint.name})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
