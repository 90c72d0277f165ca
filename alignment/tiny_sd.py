"""The embedded diffusion default: a tiny, randomly initialised Stable Diffusion 1.x pipeline.

Same architecture family as SD 1.5 (UNet2DConditionModel, AutoencoderKL,
CLIPTextModel, CLIPTokenizer, DDIMScheduler), only small: UNet block channels
32/64 with one layer per block and cross-attention dim 32, a 4-level VAE
(8x down-sampling, so an 8x8 latent decodes to 64 px, output gain calibrated, see below) and a 2-layer CLIP text
encoder. The tokenizer is a CLIP byte-level BPE whose vocabulary and merges
are written here from a word list, so nothing is downloaded. Everything a real
SD folder can do, this folder does: ``StableDiffusionPipeline.from_pretrained``,
LoRA, DDPO, reward-gradient training.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

# Words the prompt sets of the toolkit use; any other word still tokenizes (into bytes).
_WORDS = """a an the of in on with and at by painting photo picture drawing sketch portrait landscape
still life abstract bright dark light colorful colourful vivid muted red orange yellow green blue
purple pink black white gray grey brown gold silver cat dog bird horse fish flower flowers tree
trees forest mountain mountains river lake sea ocean sky sun moon star stars city street house
castle garden field night day morning evening sunset sunrise winter summer autumn spring rain snow
cloud clouds fog storm man woman child girl boy face people crowd boat ship car bridge road
window door table chair fruit apple bowl vase cup oil watercolor watercolour ink pencil charcoal
acrylic impressionist cubist surreal realistic minimalist modern classical style art artwork
beautiful ugly calm happy sad dramatic peaceful old new small large big tiny simple detailed
geometric shapes lines circles squares texture pattern composition color colour""".split()


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP/GPT-2 byte-level alphabet: every byte mapped to a printable unicode character."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = keep[:]
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(keep, chars)}


def _merge_pair(symbols: list[str], pair: tuple[str, str]) -> list[str]:
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return out


def build_clip_vocab(words: list[str] = _WORDS) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Train a CLIP-format byte-level BPE (vocab + merges, ``</w>`` word ends) on ``words``.

    The vocabulary holds every byte (plain and word-final), so any text
    tokenizes; BPE merges the most frequent adjacent pair until each listed word
    is one token. Written out rather than using ``tokenizers.trainers.BpeTrainer``:
    with every word counted once most pairs tie, and that trainer breaks ties in
    hash order, which changes from process to process (three builds, three
    different merge lists); here ties go to the lexicographically first pair.
    """
    from tokenizers import pre_tokenizers

    alphabet = list(_bytes_to_unicode().values())
    pre = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    words = list(dict.fromkeys(w.lower() for w in words))
    pieces = [list(piece) for w in words for piece, _ in pre.pre_tokenize_str(w)]
    for symbols in pieces:
        symbols[-1] += "</w>"
    merges: list[tuple[str, str]] = []
    while True:
        counts = Counter(pair for symbols in pieces for pair in zip(symbols, symbols[1:]))
        if not counts:
            break
        pair = min(counts, key=lambda p: (-counts[p], p))
        merges.append(pair)
        pieces = [_merge_pair(symbols, pair) for symbols in pieces]
    vocab: dict[str, int] = {}
    for token in [*alphabet, *(ch + "</w>" for ch in alphabet)]:
        vocab[token] = len(vocab)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab, merges


PAINTER_DIR = Path(__file__).resolve().parent / "pretrained" / "tiny_painter"


@dataclass
class TinySDArchitecture:
    """Sizes of a tiny SD 1.x pipeline: the defaults are the random-init model, :func:`painter_architecture`
    the painter.

    ``vae_channels`` has one entry per VAE level: ``len - 1`` down-samplings, so (16, 32, 32, 32) turns
    64 px into 8x8 latents and (32, 64, 64) into 16x16. ``unet_cross_attention`` says, per UNet level
    from the top, whether it has cross-attention.

    ``noise_schedule``: ``"sd"`` is SD 1.x's (scaled-linear betas, epsilon prediction, "leading" timesteps);
    ``"zero-snr-v"`` rescales the betas to zero terminal SNR, predicts v and samples from the last timestep
    ("trailing"), as Lin et al. 2024 ("Common Diffusion Noise Schedules and Sample Steps are Flawed")
    recommend. SD's schedule leaves ~7 % of the image in its last noisy latent, and a model trained on it
    reads the global colours from that residue -- at inference, pure noise, so colours come out random.
    """

    resolution: int = 64
    unet_channels: tuple[int, ...] = (32, 64)
    unet_cross_attention: tuple[bool, ...] = (True, False)
    unet_heads: int = 8
    unet_norm_groups: int = 8
    vae_channels: tuple[int, ...] = (16, 32, 32, 32)
    vae_norm_groups: int = 1
    vae_mid_attention: bool = True
    text_hidden: int = 32
    text_layers: int = 2
    text_heads: int = 4
    max_tokens: int = 77
    extra_words: tuple[str, ...] = ()
    unet_layers_per_block: int = 1
    vae_layers_per_block: int = 1
    text_intermediate: int | None = None  # None: 2 x text_hidden
    noise_schedule: str = "sd"

    @property
    def latent_size(self) -> int:
        return self.resolution // 2 ** (len(self.vae_channels) - 1)


def painter_architecture() -> TinySDArchitecture:
    """The shipped painter's sizes (its tokenizer also knows every caption word)."""
    from artquant_core.synthart.captions import caption_vocabulary

    return TinySDArchitecture(
        unet_channels=(64, 128, 128), unet_cross_attention=(False, True, True), unet_heads=8,
        unet_norm_groups=32, vae_channels=(32, 64, 64), vae_norm_groups=8, vae_mid_attention=False,
        text_hidden=64, text_layers=2, text_heads=4, max_tokens=32, extra_words=tuple(caption_vocabulary()))


def sd15_architecture() -> TinySDArchitecture:
    """Stable Diffusion 1.5's sizes (860 M-parameter UNet on 64x64 latents at 512 px, the 84 M VAE, a
    12-layer 768-wide CLIP text encoder) with random weights and the toolkit's small local tokenizer:
    real-size compute and memory for benchmarks on a GPU, nothing downloaded (``scripts/gpu_figures.py``)."""
    return TinySDArchitecture(
        resolution=512, unet_channels=(320, 640, 1280, 1280), unet_cross_attention=(True, True, True, False),
        unet_heads=8, unet_norm_groups=32, vae_channels=(128, 256, 512, 512), vae_norm_groups=32,
        vae_mid_attention=True, text_hidden=768, text_layers=12, text_heads=12, text_intermediate=3072,
        unet_layers_per_block=2, vae_layers_per_block=2)


NOISE_SCHEDULES = ("sd", "zero-snr-v")


def scheduler_settings(noise_schedule: str) -> dict:
    """``DDIMScheduler`` keyword arguments of a :class:`TinySDArchitecture` ``noise_schedule``."""
    common = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                  clip_sample=False, set_alpha_to_one=False, steps_offset=1)  # the offset: "leading" only
    if noise_schedule == "sd":
        return {**common, "prediction_type": "epsilon"}
    if noise_schedule == "zero-snr-v":
        return {**common, "prediction_type": "v_prediction", "rescale_betas_zero_snr": True,
                "timestep_spacing": "trailing"}
    raise ValueError(f"noise_schedule {noise_schedule!r}: expected one of {', '.join(NOISE_SCHEDULES)}")


def unet_from_architecture(arch: TinySDArchitecture):
    """A randomly initialised ``UNet2DConditionModel`` of ``arch``'s sizes (on the current default device,
    so ``with torch.device("meta"):`` counts parameters without allocating them)."""
    from diffusers import UNet2DConditionModel

    down = tuple("CrossAttnDownBlock2D" if x else "DownBlock2D" for x in arch.unet_cross_attention)
    up = tuple("CrossAttnUpBlock2D" if x else "UpBlock2D" for x in reversed(arch.unet_cross_attention))
    return UNet2DConditionModel(
        sample_size=arch.latent_size, in_channels=4, out_channels=4, layers_per_block=arch.unet_layers_per_block,
        block_out_channels=arch.unet_channels, down_block_types=down, up_block_types=up,
        cross_attention_dim=arch.text_hidden, attention_head_dim=arch.unet_heads,
        norm_num_groups=arch.unet_norm_groups,
    )


def tiny_sd_pipeline(arch: TinySDArchitecture | None = None, seed: int = 0):
    """A randomly initialised ``StableDiffusionPipeline`` of the given sizes (in memory)."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    arch = arch or TinySDArchitecture()
    vocab, merges = build_clip_vocab(list(_WORDS) + list(arch.extra_words))
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=arch.max_tokens)

    torch.manual_seed(seed)
    unet = unet_from_architecture(arch)
    torch.manual_seed(seed + 1)
    levels = len(arch.vae_channels)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=arch.resolution,
        layers_per_block=arch.vae_layers_per_block,
        block_out_channels=arch.vae_channels, norm_num_groups=arch.vae_norm_groups,
        down_block_types=("DownEncoderBlock2D",) * levels, up_block_types=("UpDecoderBlock2D",) * levels,
        mid_block_add_attention=arch.vae_mid_attention,
    )
    if arch == TinySDArchitecture():
        # A plain random decoder maps every latent to near-uniform grey: its GroupNorms remove per-channel
        # means and the output conv is small. One group per norm and a 3x output gain give images whose
        # brightness and colours vary with the latent (std ~0.01 of brightness across latents), so image
        # rewards have something for the fine-tuning to move.
        with torch.no_grad():
            vae.decoder.conv_out.weight.mul_(3.0)
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=arch.text_hidden,
        intermediate_size=arch.text_intermediate or 2 * arch.text_hidden,
        num_hidden_layers=arch.text_layers, num_attention_heads=arch.text_heads,
        max_position_embeddings=arch.max_tokens, projection_dim=arch.text_hidden,
        bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
    ))
    scheduler = DDIMScheduler(**scheduler_settings(arch.noise_schedule))
    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def save_tiny_sd(pipe, out_dir: str | Path, arch: TinySDArchitecture | None = None) -> str:
    """``save_pretrained`` plus the tokenizer as vocab.json + merges.txt (for loaders without tokenizer.json)."""
    arch = arch or TinySDArchitecture()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(out_dir, safe_serialization=True)
    vocab, merges = build_clip_vocab(list(_WORDS) + list(arch.extra_words))
    (out_dir / "tokenizer" / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out_dir / "tokenizer" / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    return str(out_dir)


def build_tiny_sd(out_dir: str | Path, seed: int = 0, pretrained: bool = True) -> str:
    """Write a tiny SD pipeline folder to ``out_dir`` and return its path.

    ``pretrained=True``: the shipped painter (trained on SynthArt captions by
    ``scripts/pretrain_tiny_sd.py``; ``seed`` is unused). ``pretrained=False``: the
    random-init pipeline, deterministic per ``seed``. Both load with
    ``StableDiffusionPipeline.from_pretrained(out_dir)``.
    """
    out_dir = Path(out_dir)
    if pretrained:
        if not (PAINTER_DIR / "model_index.json").is_file():
            raise FileNotFoundError(
                f"the shipped painter is missing from {PAINTER_DIR} (an install without package data?); "
                "reinstall the toolkit, train one from a checkout with `python -m scripts.pretrain_tiny_sd --ship`, "
                "or use pretrained=False / `artquant tiny-sd --random-init`")
        shutil.copytree(PAINTER_DIR, out_dir, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("training_summary.json", "samples*.png"))
        return str(out_dir)
    return save_tiny_sd(tiny_sd_pipeline(TinySDArchitecture(), seed=seed), out_dir)


def tiny_sd_path(cache_dir: str | Path, seed: int = 0, pretrained: bool = False) -> str:
    """The tiny pipeline under ``cache_dir/tiny_sd`` (random init) or ``cache_dir/painter`` (the shipped painter),
    built once and reused when complete."""
    path = Path(cache_dir) / ("painter" if pretrained else "tiny_sd")
    if not (path / "model_index.json").is_file():
        from artquant_core.checkpoint import atomic_directory

        with atomic_directory(path) as tmp:
            build_tiny_sd(tmp, seed=seed, pretrained=pretrained)
    return str(path)
