"""Training the painter: a tiny Stable Diffusion pipeline learnt from scratch on (image, caption) pairs.

Two stages, each resumable from its latest atomic checkpoint:

1. **VAE** (:func:`train_vae`): an ``AutoencoderKL`` learns to reconstruct the
   images (MSE + L1 + an image-gradient term that keeps shape corners and the
   horizon sharp, and a tiny KL). Afterwards :func:`normalise_latents` folds the
   latents' per-channel mean and spread into the VAE's 1x1 ``quant_conv`` /
   ``post_quant_conv``, so the latents the UNet sees have zero mean and unit
   spread and ``scaling_factor`` is set to 1 (the pipeline decodes the latents the UNet learnt as they are).
2. **UNet + text encoder** (:func:`train_unet`): the scheduler's prediction target
   (epsilon, or v with a zero-terminal-SNR schedule) on the frozen VAE's latents,
   min-SNR-gamma loss weighting, a share of empty captions
   for classifier-free guidance, an EMA of the UNet that is what gets shipped.

Batches and noise come from generators seeded by ``(seed, step)``: a resumed run
draws exactly what the uninterrupted run would have, so a checkpoint only has to
hold weights, EMA, optimizer and step.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from alignment.lr_schedule import warmup_cosine_rate
from artquant_core.checkpoint import (atomic_directory, latest_checkpoint, load_torch_state, prune_checkpoints,
                                      save_torch_state)


@dataclass
class PainterStageConfig:
    """Optimisation settings of one stage."""

    steps: int
    batch_size: int
    learning_rate: float
    warmup_steps: int = 50
    checkpoint_every: int = 200
    seed: int = 0
    stop_at_step: int | None = None  # checkpoint and return early there (a run split over sessions; tests)
    deadline: float | None = None  # a time.time(): checkpoint and return early once it has passed (a run split
    # into calls of a limited length, e.g. a lent GPU's 10 minutes; resumes like stop_at_step)
    bf16: bool = True  # bf16 autocast (CPUs with AMX / AVX512-BF16 and GPUs run it natively)


def _cosine_lr(step: int, cfg: PainterStageConfig) -> float:
    return warmup_cosine_rate(step, cfg.learning_rate, cfg.warmup_steps, cfg.steps)


def _stop_here(step: int, cfg: PainterStageConfig) -> bool:
    """Whether the stage checkpoints and returns early after ``step``: ``stop_at_step`` or ``deadline`` reached."""
    return step == cfg.stop_at_step or (cfg.deadline is not None and time.time() >= cfg.deadline)


def _step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def _autocast(enabled: bool):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.autocast(device, dtype=torch.bfloat16, enabled=enabled)


def _save_stage(stage_dir: Path, step: int, modules: dict[str, torch.nn.Module], optimizer, extra: dict,
                keep: int = 2) -> None:
    from safetensors.torch import save_file

    with atomic_directory(stage_dir / f"checkpoint-{step}") as tmp:
        for name, module in modules.items():
            save_file({k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()},
                      tmp / f"{name}.safetensors")
        save_torch_state(tmp / "optimizer.pt", {"optimizer": optimizer.state_dict()})
        (tmp / "state.json").write_text(json.dumps({"step": step, **extra}))
    prune_checkpoints(stage_dir, keep)


def _resume_stage(stage_dir: Path, modules: dict[str, torch.nn.Module], optimizer) -> tuple[int, dict]:
    """Load the latest checkpoint of a stage into ``modules`` / ``optimizer``; ``(step, state)``."""
    from safetensors.torch import load_file

    checkpoint = latest_checkpoint(stage_dir)
    if checkpoint is None:
        return 0, {}
    for name, module in modules.items():
        module.load_state_dict(load_file(checkpoint / f"{name}.safetensors"))
    optimizer.load_state_dict(load_torch_state(checkpoint / "optimizer.pt")["optimizer"])
    state = json.loads((checkpoint / "state.json").read_text())
    return int(state["step"]), state


def _device_of(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


def uint8_to_vae_input(images_uint8: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float in [-1, 1], the VAE's input range."""
    return images_uint8.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def image_gradient_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between horizontal and vertical finite differences: penalises soft edges and lost corners."""
    dx = lambda x: x[..., :, 1:] - x[..., :, :-1]  # noqa: E731
    dy = lambda x: x[..., 1:, :] - x[..., :-1, :]  # noqa: E731
    return F.l1_loss(dx(pred), dx(target)) + F.l1_loss(dy(pred), dy(target))


def _texture_differences(x: torch.Tensor) -> list[torch.Tensor]:
    """Neighbour differences in six directions and distances: horizontal, vertical, both diagonals, and
    horizontal and vertical two pixels apart (the last rows / columns each one lacks are cropped)."""
    h, w = x.shape[-2] - 2, x.shape[-1] - 2
    return [(x[..., :, 1:] - x[..., :, :-1])[..., :h, :w], (x[..., 1:, :] - x[..., :-1, :])[..., :h, :w],
            (x[..., 1:, 1:] - x[..., :-1, :-1])[..., :h, :w], (x[..., 1:, :-1] - x[..., :-1, 1:])[..., :h, :w],
            (x[..., :, 2:] - x[..., :, :-2])[..., :h, :w], (x[..., 2:, :] - x[..., :-2, :])[..., :h, :w]]


def texture_loss(pred: torch.Tensor, target: torch.Tensor, patch: int = 4) -> torch.Tensor:
    """L1 between the texture strength of ``pred`` and ``target`` in each ``patch`` x ``patch`` block: the
    root mean square of each of six neighbour differences (:func:`_texture_differences`), averaged.

    Pixel noise is independent per pixel, so no decoder can reproduce it pixel for pixel, and squared or
    absolute errors teach it to draw none (the shipped painter's VAE). This term asks only for as much
    texture as the painting has where it has it, so the decoder draws grain of the right strength and the
    encoder passes that strength on in the latents. Matching one overall strength is not enough: a decoder
    meets it with vertical stripes (measured); six directions and two distances leave grain.
    """
    h, w = (pred.shape[-2] - 2) // patch * patch, (pred.shape[-1] - 2) // patch * patch  # whole blocks only

    def strength(difference: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(difference[..., :h, :w].pow(2), patch).add(1e-6).sqrt()

    pairs = zip(_texture_differences(pred), _texture_differences(target))
    return sum(F.l1_loss(strength(a), strength(b)) for a, b in pairs) / 6


def train_vae(vae, images_uint8: torch.Tensor, cfg: PainterStageConfig, stage_dir: Path,
              log: Callable[[dict], None] = print, kl_weight: float = 1e-6, gradient_weight: float = 0.5,
              initial_posterior_std: float | None = None, texture_weight: float = 0.0) -> dict:
    """Train ``vae`` on ``images_uint8`` (N, H, W, 3); resumes from ``stage_dir``; final losses.

    ``initial_posterior_std``: on a fresh start, set the encoder's posterior spread to this value (the
    log-variance bias of ``quant_conv``). A random-init encoder starts at spread ~1, far above its small
    initial means; with a tiny KL weight nothing then pushes the spread down in a channel the decoder
    has learnt to ignore, and such channels stay noise (the shipped painter's VAE uses 2 of its 4).

    ``texture_weight``: weight of :func:`texture_loss`, which lets the decoder draw SynthArt's pixel noise
    as grain (0: off, as the shipped painter).
    """
    stage_dir.mkdir(parents=True, exist_ok=True)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=cfg.learning_rate, weight_decay=0.0)
    step, _ = _resume_stage(stage_dir, {"vae": vae}, optimizer)
    if step == 0 and initial_posterior_std is not None:
        c = vae.quant_conv.out_channels // 2  # quant_conv gives [mean, log-variance]
        with torch.no_grad():
            vae.quant_conv.bias[c:] = 2.0 * math.log(initial_posterior_std)
            vae.quant_conv.weight[c:] = 0.0
    device = _device_of(vae)
    vae.train()
    start, window = time.time(), []
    while step < cfg.steps:
        gen = _step_generator(cfg.seed, step)
        idx = torch.randint(len(images_uint8), (cfg.batch_size,), generator=gen)
        x = uint8_to_vae_input(images_uint8[idx]).to(device)
        for group in optimizer.param_groups:
            group["lr"] = _cosine_lr(step, cfg)
        with _autocast(cfg.bf16):
            posterior = vae.encode(x).latent_dist
            z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen).to(device)
            recon = vae.decode(z).sample.float()
        mse, l1 = F.mse_loss(recon, x), F.l1_loss(recon, x)
        loss = mse + l1 + gradient_weight * image_gradient_loss(recon, x) + kl_weight * posterior.kl().mean()
        if texture_weight:
            loss = loss + texture_weight * texture_loss(recon, x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        step += 1
        window.append((mse.item(), l1.item()))
        stop = _stop_here(step, cfg)
        if step % 50 == 0 or step == cfg.steps or stop:
            mse_avg = sum(m for m, _ in window) / len(window)
            log({"stage": "vae", "step": step, "mse": round(mse_avg, 5),
                 "psnr_db": round(10 * math.log10(4.0 / max(mse_avg, 1e-12)), 2),
                 "l1": round(sum(a for _, a in window) / len(window), 5), "s": round(time.time() - start, 1)})
            window = []
        if step % cfg.checkpoint_every == 0 or step == cfg.steps or stop:
            _save_stage(stage_dir, step, {"vae": vae}, optimizer, {"stage": "vae"})
        if stop:
            break
    vae.eval()
    return {"steps": step, "complete": step >= cfg.steps}


@torch.no_grad()
def encode_images(vae, images_uint8: torch.Tensor, batch_size: int = 256, bf16: bool = True
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std of every image (float32, as the VAE's latents are stored)."""
    means, stds = [], []
    for i in range(0, len(images_uint8), batch_size):
        with _autocast(bf16):
            dist = vae.encode(uint8_to_vae_input(images_uint8[i:i + batch_size]).to(_device_of(vae))).latent_dist
        means.append(dist.mean.float().cpu())
        stds.append(dist.std.float().cpu())
    return torch.cat(means), torch.cat(stds)


@torch.no_grad()
def normalise_latents(vae, latent_means: torch.Tensor) -> dict:
    """Fold per-channel latent mean ``m`` and spread ``s`` into the VAE's 1x1 convs (z' = (z - m) / s).

    ``quant_conv`` produces ``[mean, logvar]``: its mean rows are divided by ``s`` (bias shifted by
    ``m``), its log-variance bias lowered by ``2 log s``; ``post_quant_conv`` multiplies its input
    columns by ``s`` and adds ``W m`` to its bias, so ``decode(z')`` equals the old ``decode(z)``.

    The VAE's ``scaling_factor`` is set to 1 (and ``shift_factor`` cleared): the pipelines decode
    ``latents / scaling_factor + shift_factor``, and the UNet is trained on these already-whitened
    latents. Left at SD's 0.18215, every sample would be decoded from latents 5.5x too large.
    """
    m = latent_means.mean(dim=(0, 2, 3))
    s = latent_means.std(dim=(0, 2, 3)).clamp_min(1e-4)
    c = m.numel()
    m, s = m.to(vae.quant_conv.weight.device), s.to(vae.quant_conv.weight.device)
    q = vae.quant_conv
    q.weight[:c] /= s.view(c, 1, 1, 1)
    q.bias[:c] = (q.bias[:c] - m) / s
    q.bias[c:] -= 2.0 * torch.log(s)
    p = vae.post_quant_conv
    p.bias += (p.weight[:, :, 0, 0] @ m)
    p.weight *= s.view(1, c, 1, 1)
    vae.register_to_config(scaling_factor=1.0, shift_factor=None)
    return {"latent_channel_mean": [round(float(v), 4) for v in m],
            "latent_channel_std": [round(float(v), 4) for v in s]}


def min_snr_weight(snr: torch.Tensor, gamma: float, prediction_type: str) -> torch.Tensor:
    """Per-sample loss weights of min-SNR-gamma (Hang et al. 2023): low-noise timesteps (SNR > gamma),
    easy to denoise, are down-weighted so they do not dominate.

    Epsilon prediction: ``min(SNR, gamma) / SNR``. V prediction: ``min(1, gamma / SNR)``, i.e. the plain
    v-loss below SNR gamma. (The paper's ``min(SNR, gamma) / (SNR + 1)`` for v would also silence the
    high-noise end, weight 0 at zero terminal SNR, where the caption alone must set the picture's colours.)
    """
    if prediction_type == "epsilon":
        return snr.clamp(max=gamma) / snr
    return (gamma / snr.clamp_min(1e-12)).clamp(max=1.0)


def tokenize_prompts(tokenizer, captions: list[str]) -> torch.Tensor:
    """``(N, model_max_length)`` token ids, padded and truncated to the tokenizer's length."""
    return tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


def encode_prompts(tokenizer, text_encoder, captions: list[str]) -> torch.Tensor:
    """The text encoder's per-token outputs (the UNet's ``encoder_hidden_states``), padded to the tokenizer's length."""
    return text_encoder(tokenize_prompts(tokenizer, captions).to(_device_of(text_encoder)))[0]


def train_unet(unet, text_encoder, tokenizer, latent_means: torch.Tensor, latent_stds: torch.Tensor,
               captions: list[str], scheduler, cfg: PainterStageConfig, stage_dir: Path,
               log: Callable[[dict], None] = print, empty_caption_fraction: float = 0.1,
               min_snr_gamma: float = 5.0, ema_decay: float = 0.999, train_text_encoder: bool = True
               ) -> tuple[dict, torch.nn.Module]:
    """Train the UNet (and the text encoder, unless ``train_text_encoder`` is False) on latents and captions;
    returns (final losses, EMA UNet).

    ``train_text_encoder=False`` keeps the text encoder as it is (random-init here, as SD keeps its CLIP
    frozen). Trained jointly from scratch, the encoder learns the words whose loss is large first (colours,
    sky, horizon) and their outputs grow until the final LayerNorm leaves the words the UNet has not yet
    used (the shapes) nearly indistinguishable — measured on the first shipped painter: swapping the main
    shape's word moved the encoder's outputs by 0.6 (a colour word: 9; norm 8) and the v-loss by 0.0000.
    """
    import copy

    stage_dir.mkdir(parents=True, exist_ok=True)
    ema = copy.deepcopy(unet).requires_grad_(False)
    text_encoder.requires_grad_(train_text_encoder)
    params = list(unet.parameters()) + (list(text_encoder.parameters()) if train_text_encoder else [])
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=1e-2)
    step, state = _resume_stage(stage_dir, {"unet": unet, "text_encoder": text_encoder, "unet_ema": ema},
                                optimizer)
    device = _device_of(unet)
    alphas_cumprod = scheduler.alphas_cumprod.float()
    snr = (alphas_cumprod / (1 - alphas_cumprod)).to(device)
    prediction = scheduler.config.prediction_type
    if prediction not in ("epsilon", "v_prediction"):
        raise ValueError(f"train_unet: prediction_type {prediction!r} is not supported (epsilon, v_prediction)")
    loss_name = "noise_mse" if prediction == "epsilon" else "v_mse"  # the unweighted MSE of the prediction target
    # tokenized once: every batch's 256 captions cost ~12 ms on a CPU core, as much as a GPU step of this UNet
    caption_ids, empty_ids = tokenize_prompts(tokenizer, captions), tokenize_prompts(tokenizer, [""])
    unet.train()
    text_encoder.train(train_text_encoder)
    start, window = time.time(), list(state.get("recent_losses", []))
    while step < cfg.steps:
        gen = _step_generator(cfg.seed, step)
        idx = torch.randint(len(latent_means), (cfg.batch_size,), generator=gen)
        latents = latent_means[idx] + latent_stds[idx] * torch.randn(latent_means[idx].shape, generator=gen)
        drop = torch.rand(cfg.batch_size, generator=gen) < empty_caption_fraction
        batch_ids = torch.where(drop[:, None], empty_ids, caption_ids[idx])
        noise = torch.randn(latents.shape, generator=gen)
        t = torch.randint(0, len(alphas_cumprod), (cfg.batch_size,), generator=gen)
        noisy = scheduler.add_noise(latents, noise, t).to(device)  # drawn on the CPU: the same run on any device
        noise, t = noise.to(device), t.to(device)
        for group in optimizer.param_groups:
            group["lr"] = _cosine_lr(step, cfg)
        target = noise if prediction == "epsilon" else scheduler.get_velocity(latents, noise, t.cpu()).to(device)
        with _autocast(cfg.bf16), torch.set_grad_enabled(train_text_encoder):
            context = text_encoder(batch_ids.to(device))[0]
        with _autocast(cfg.bf16):
            pred = unet(noisy, t, encoder_hidden_states=context).sample.float()
        weight = min_snr_weight(snr[t], min_snr_gamma, prediction)
        per_sample = F.mse_loss(pred, target, reduction="none").mean(dim=(1, 2, 3))
        loss = (weight * per_sample).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        with torch.no_grad():
            decay = min(ema_decay, (1 + step) / (10 + step))
            torch._foreach_lerp_(list(ema.parameters()), list(unet.parameters()), 1 - decay)
        step += 1
        window = (window + [float(per_sample.detach().mean())])[-50:]
        stop = _stop_here(step, cfg)
        if step % 50 == 0 or step == cfg.steps or stop:
            log({"stage": "unet", "step": step, loss_name: round(sum(window) / len(window), 5),
                 "lr": round(_cosine_lr(step - 1, cfg), 6), "s": round(time.time() - start, 1)})
        if step % cfg.checkpoint_every == 0 or step == cfg.steps or stop:
            _save_stage(stage_dir, step, {"unet": unet, "text_encoder": text_encoder, "unet_ema": ema}, optimizer,
                        {"stage": "unet", "recent_losses": window})
        if stop:
            break
    unet.eval()
    text_encoder.eval()
    return {"steps": step, "complete": step >= cfg.steps,
            f"final_{loss_name}": round(sum(window) / max(1, len(window)), 5)}, ema
