"""A tiny, randomly initialised Stable Diffusion 3 pipeline (flow matching), built offline.

Same components as SD3 (``SD3Transformer2DModel``, ``FlowMatchEulerDiscreteScheduler``,
``AutoencoderKL`` with SD3's 16 latent channels and its scaling / shift factors, two
``CLIPTextModelWithProjection`` encoders), only small, and without the T5 encoder:
``text_encoder_3`` / ``tokenizer_3`` are ``None``, which ``StableDiffusion3Pipeline``
supports (it pads the prompt with zero T5 tokens). The CLIP tokenizers are the tiny SD's
locally built byte-level BPE (:func:`alignment.tiny_sd.build_clip_vocab`), so nothing is
downloaded. The folder loads with ``StableDiffusion3Pipeline.from_pretrained(folder,
text_encoder_3=None, tokenizer_3=None)`` (diffusers' way of leaving T5 out; without the two
``None`` it asks for them) and is what Flow-GRPO fine-tunes by default (``pretrained_model: tiny-sd3``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from alignment.tiny_sd import build_clip_vocab


@dataclass
class TinySD3Architecture:
    """Sizes of the tiny SD3. ``vae_channels`` has one entry per VAE level (``len - 1`` down-samplings:
    four levels turn 64 px into 8x8 latents); with ``patch_size`` 1 each latent pixel is one token."""

    resolution: int = 64
    latent_channels: int = 16  # SD3's
    patch_size: int = 1
    layers: int = 2
    heads: int = 2
    head_dim: int = 16
    vae_channels: tuple[int, ...] = (16, 32, 32, 32)
    text_hidden: int = 32
    text_layers: int = 2
    text_heads: int = 4
    # the pipeline pads/truncates every prompt to this many CLIP tokens: short keeps the transformer's
    # joint attention small (SD3 uses 77)
    max_tokens: int = 16

    @property
    def latent_size(self) -> int:
        return self.resolution // 2 ** (len(self.vae_channels) - 1)


def _clip_encoder(arch: TinySD3Architecture, vocab: dict[str, int]):
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    return CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=arch.text_hidden, intermediate_size=2 * arch.text_hidden,
        num_hidden_layers=arch.text_layers, num_attention_heads=arch.text_heads,
        max_position_embeddings=arch.max_tokens, projection_dim=arch.text_hidden, hidden_act="gelu",
        bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"]))


def tiny_sd3_pipeline(arch: TinySD3Architecture | None = None, seed: int = 0):
    """A randomly initialised ``StableDiffusion3Pipeline`` of the given sizes (in memory), deterministic per seed."""
    from diffusers import (AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel,
                           StableDiffusion3Pipeline)
    from transformers import CLIPTokenizer

    arch = arch or TinySD3Architecture()
    vocab, merges = build_clip_vocab()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=arch.max_tokens)
    tokenizer_2 = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=arch.max_tokens)

    torch.manual_seed(seed)
    # SD3 concatenates the two CLIP hidden states (joint_attention_dim) and their pooled projections
    transformer = SD3Transformer2DModel(
        sample_size=arch.latent_size, patch_size=arch.patch_size, in_channels=arch.latent_channels,
        out_channels=arch.latent_channels, num_layers=arch.layers, attention_head_dim=arch.head_dim,
        num_attention_heads=arch.heads, joint_attention_dim=2 * arch.text_hidden,
        caption_projection_dim=arch.heads * arch.head_dim, pooled_projection_dim=2 * arch.text_hidden,
        pos_embed_max_size=arch.latent_size // arch.patch_size)
    torch.manual_seed(seed + 1)
    levels = len(arch.vae_channels)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=arch.latent_channels, sample_size=arch.resolution,
        layers_per_block=1, block_out_channels=arch.vae_channels, norm_num_groups=1,
        down_block_types=("DownEncoderBlock2D",) * levels, up_block_types=("UpDecoderBlock2D",) * levels,
        scaling_factor=1.5305, shift_factor=0.0609, use_quant_conv=False, use_post_quant_conv=False)
    with torch.no_grad():
        # as in the tiny SD: a plain random decoder gives near-uniform grey; a 3x output gain makes brightness
        # and colour vary with the latent, so image rewards have something to move
        vae.decoder.conv_out.weight.mul_(3.0)
    torch.manual_seed(seed + 2)
    text_encoder = _clip_encoder(arch, vocab)
    torch.manual_seed(seed + 3)
    text_encoder_2 = _clip_encoder(arch, vocab)
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)  # SD3's schedule
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
        text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, text_encoder_3=None, tokenizer_3=None)


def build_tiny_sd3(out_dir: str | Path, seed: int = 0) -> str:
    """Write the random-init tiny SD3 pipeline folder to ``out_dir`` and return its path.

    Deterministic per ``seed``; loads with
    ``StableDiffusion3Pipeline.from_pretrained(out_dir, text_encoder_3=None, tokenizer_3=None)``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tiny_sd3_pipeline(seed=seed).save_pretrained(out_dir, safe_serialization=True)
    return str(out_dir)


def tiny_sd3_path(cache_dir: str | Path, seed: int = 0) -> str:
    """The tiny SD3 under ``cache_dir/tiny_sd3``, built once (atomically) and reused when complete."""
    path = Path(cache_dir) / "tiny_sd3"
    if not (path / "model_index.json").is_file():
        from artquant_core.checkpoint import atomic_directory

        with atomic_directory(path) as tmp:
            build_tiny_sd3(tmp, seed=seed)
    return str(path)
