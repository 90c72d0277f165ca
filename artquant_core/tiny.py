"""The embedded default scorer: a few-million-parameter instance of a real VLM architecture.

``build_tiny_scorer(pretrained=False)`` builds a seeded random-init Qwen2.5-VL
(default) or LLaVA (CLIP + Llama) with a locally trained tokenizer; nothing is
downloaded. ``pretrained=True`` loads the weights the toolkit trained itself,
shipped as package data in ``artquant_core/pretrained/tiny_scorer/``.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"


@dataclass
class TinyScorerConfig:
    """Size knobs of the tiny scorer.

    family: ``"qwen2_5_vl"`` (variable grid, M-RoPE) or ``"llava"`` (CLIP + Llama).
    image_size: working resolution in pixels (Qwen: the pixel budget is
        ``image_size**2``, aspect kept; LLaVA: padded to a square, then this size).
    patch_size: vision patch size; ``None`` = 8 for Qwen (merged 2×2 → 16 tokens at 64 px),
        16 for LLaVA (16 tokens at 64 px).
    vision_hidden / vision_layers / vision_heads / vision_intermediate: vision tower size.
    text_hidden / text_layers / text_heads / text_kv_heads / text_intermediate: language model size.
    text_rope_theta: RoPE base of the language model; ``None`` = 2 for Qwen, 10000 for LLaVA. Small on
        purpose for Qwen: Qwen2.5-VL's M-RoPE gives the image rows and columns the *lowest* rotary
        frequencies (sections t, h, w in that order); with the usual base 10000 and head size 32, one
        token step turns the column part by 0.0002-0.003 rad and the row part by 0.006-0.1, so the
        language model cannot tell where things are (composition SRCC 0.43). Base 2 turns them by
        0.52-0.65 / 0.68-0.84 rad (docs/scorer.md: "The shipped tiny scorer").
    vocab_size: BPE vocabulary of the locally trained tokenizer.
    patch_embed_init: ``"fan_in"`` (N(0, 1/fan_in), helps a tower trained from scratch) or ``"default"``.
    """

    family: str = "qwen2_5_vl"
    image_size: int = 64
    patch_size: int | None = None
    vision_hidden: int = 128
    vision_layers: int = 4
    vision_heads: int = 4
    vision_intermediate: int = 256
    text_hidden: int = 128
    text_layers: int = 2
    text_heads: int = 4
    text_kv_heads: int = 2
    text_intermediate: int = 256
    text_rope_theta: float | None = None
    vocab_size: int = 1024
    patch_embed_init: str = "fan_in"

    def __post_init__(self):
        if self.family not in ("qwen2_5_vl", "llava"):
            raise ValueError(f"TinyScorerConfig.family must be 'qwen2_5_vl' or 'llava', got {self.family!r}")
        if self.patch_size is None:
            self.patch_size = 8 if self.family == "qwen2_5_vl" else 16
        if self.text_rope_theta is None:
            self.text_rope_theta = 2.0 if self.family == "qwen2_5_vl" else 10000.0
        if self.patch_embed_init not in ("fan_in", "default"):
            raise ValueError(f"patch_embed_init must be 'fan_in' or 'default', got {self.patch_embed_init!r}")
        head_dim = self.text_hidden // self.text_heads
        if self.family == "qwen2_5_vl" and (head_dim % 4 or self.text_hidden % self.text_heads):
            raise ValueError(f"text_hidden / text_heads = {head_dim} must be a multiple of 4 (M-RoPE sections)")


def pretrained_folder(family: str = "qwen2_5_vl") -> Path:
    """Where a family's shipped weights live: ``pretrained/tiny_scorer/`` for the default
    (Qwen2.5-VL), ``pretrained/tiny_scorer_<family>/`` otherwise (``tiny_scorer_llava/``: the
    independent judge, trained on a SynthArt draw disjoint from the default's)."""
    TinyScorerConfig(family=family)  # validates the name
    return PRETRAINED_DIR / ("tiny_scorer" if family == "qwen2_5_vl" else f"tiny_scorer_{family}")


@functools.lru_cache(maxsize=4)
def _cached_tokenizer(family: str, vocab_size: int):
    from artquant_core.tiny_tokenizer import train_tiny_tokenizer

    return train_tiny_tokenizer(family, vocab_size=vocab_size)


def _qwen_parts(cfg: TinyScorerConfig, tok):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    head_dim = cfg.text_hidden // cfg.text_heads
    quarter = head_dim // 2 // 4  # M-RoPE sections (t, h, w) must sum to head_dim / 2
    sections = [head_dim // 2 - 2 * (quarter + (quarter + 1) // 2), quarter + (quarter + 1) // 2,
                 quarter + (quarter + 1) // 2]
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>",
                                                      "<|vision_end|>")}
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=cfg.text_hidden, intermediate_size=cfg.text_intermediate,
                         num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.text_heads,
                         num_key_value_heads=cfg.text_kv_heads, max_position_embeddings=2048,
                         rope_parameters={"rope_type": "default", "rope_theta": float(cfg.text_rope_theta),
                                          "mrope_section": sections},
                         bos_token_id=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
        vision_config=dict(depth=cfg.vision_layers, hidden_size=cfg.vision_hidden,
                           intermediate_size=cfg.vision_intermediate, num_heads=cfg.vision_heads,
                           patch_size=cfg.patch_size, spatial_merge_size=2, temporal_patch_size=2,
                           out_hidden_size=cfg.text_hidden, window_size=cfg.image_size,
                           fullatt_block_indexes=[cfg.vision_layers - 1]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False)
    pixels = cfg.image_size**2
    processor = Qwen2VLImageProcessorPil(patch_size=cfg.patch_size, merge_size=2, temporal_patch_size=2,
                                         size={"shortest_edge": pixels, "longest_edge": pixels})
    return Qwen2_5_VLForConditionalGeneration(config), processor


def _llava_parts(cfg: TinyScorerConfig, tok):
    from transformers import LlavaConfig, LlavaForConditionalGeneration
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    config = LlavaConfig(
        vision_config=dict(model_type="clip_vision_model", hidden_size=cfg.vision_hidden,
                           intermediate_size=cfg.vision_intermediate, num_hidden_layers=cfg.vision_layers,
                           num_attention_heads=cfg.vision_heads, image_size=cfg.image_size,
                           patch_size=cfg.patch_size, projection_dim=cfg.vision_hidden),
        text_config=dict(model_type="llama", vocab_size=len(tok), hidden_size=cfg.text_hidden,
                         intermediate_size=cfg.text_intermediate, num_hidden_layers=cfg.text_layers,
                         num_attention_heads=cfg.text_heads, num_key_value_heads=cfg.text_kv_heads,
                         max_position_embeddings=2048, bos_token_id=tok.bos_token_id,
                         rope_parameters={"rope_type": "default", "rope_theta": float(cfg.text_rope_theta)},
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1,  # LLaVA-1.5 uses -2; -1 leaves no layer without gradient in the tiny
        vision_feature_select_strategy="default", tie_word_embeddings=False)
    processor = CLIPImageProcessorPil(size={"shortest_edge": cfg.image_size},
                                      crop_size={"height": cfg.image_size, "width": cfg.image_size})
    return LlavaForConditionalGeneration(config), processor


def build_tiny_scorer(seed: int = 0, pretrained: bool = True, family: str | None = None,
                      config: TinyScorerConfig | None = None):
    """The embedded default scorer.

    ``pretrained=True``: the toolkit's own trained weights from
    ``artquant_core/pretrained/tiny_scorer/`` (``family="llava"``: ``tiny_scorer_llava/``,
    the independent judge; see :func:`pretrained_folder`); ``FileNotFoundError`` naming the
    folder if they are not shipped in this install. ``pretrained=False``: random init seeded by ``seed``
    (the global RNG is left untouched), sized by ``config`` (default
    :class:`TinyScorerConfig`) or ``family``.
    """
    from artquant_core.scorer import ArtQuantScorer

    if config is None:
        config = TinyScorerConfig(family=family or "qwen2_5_vl")
    elif family is not None and family != config.family:
        raise ValueError(f"family={family!r} contradicts config.family={config.family!r}")
    if pretrained:
        folder = pretrained_folder(config.family)
        if not (folder / "config.json").exists():
            raise FileNotFoundError(
                f"the embedded tiny scorer's trained weights are not in this install ({folder} is missing); "
                "use build_tiny_scorer(pretrained=False) for the random-init model, or train one with "
                "`artquant train-scorer`")
        if asdict(config) != asdict(TinyScorerConfig(family=config.family)):
            raise ValueError("size knobs apply to pretrained=False; the shipped weights have their own size")
        return ArtQuantScorer.from_pretrained(folder)
    tok = copy.deepcopy(_cached_tokenizer(config.family, config.vocab_size))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, processor = (_qwen_parts if config.family == "qwen2_5_vl" else _llava_parts)(config, tok)
        if config.patch_embed_init == "fan_in":
            _fan_in_patch_embed(model)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    return ArtQuantScorer(model.eval(), tok, processor, family=config.family)


def _fan_in_patch_embed(model: torch.nn.Module) -> None:
    """N(0, 1/fan_in) for the patch embedding, so patch features start at unit scale."""
    for name, module in model.named_modules():
        if name.endswith(("patch_embed.proj", "embeddings.patch_embedding")) and hasattr(module, "weight"):
            fan_in = module.weight[0].numel()
            with torch.no_grad():
                module.weight.normal_(0.0, fan_in**-0.5)


def load_scorer(name_or_path: str):
    """``"tiny"`` → the embedded default with its shipped weights; anything else →
    ``ArtQuantScorer.from_pretrained`` (a folder or hub id). What the commands accept as ``--model``."""
    if name_or_path == "tiny":
        return build_tiny_scorer(pretrained=True)
    from artquant_core.scorer import ArtQuantScorer

    return ArtQuantScorer.from_pretrained(name_or_path)
