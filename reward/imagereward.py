"""ImageReward (Xu et al. 2023) as a differentiable reward, on transformers' BLIP modules (no image-reward package).

ImageReward is BLIP's ViT-L image encoder and BLIP's BERT text encoder, whose layers cross-attend
to the image tokens; the text's ``[CLS]`` output goes through an MLP 768 -> 1024 -> 128 -> 64 ->
16 -> 1 (no activations) and the result is standardised:
``(mlp(cls) - 0.16717362830052426) / 1.0333394966054072`` (:data:`IMAGEREWARD_MEAN`,
:data:`IMAGEREWARD_STD`), about -2..2. The prompt is tokenised with BERT's uncased WordPiece,
``[CLS] ... [SEP]``, truncated to 35 tokens and padded to 35 (the package's ``score``); images are
resized bicubically to 224, centre-cropped and normalised with OpenAI CLIP's mean / std, in torch,
so gradients reach the pixels.

``ImageRewardScore(path)``: ``path`` is the package's checkpoint ``ImageReward.pt`` (hub repo
``THUDM/ImageReward``; a bare state dict with keys ``blip.visual_encoder.*``,
``blip.text_encoder.*``, ``mlp.layers.*``), read with ``torch.load(weights_only=True)`` (or a
``.safetensors`` file with the same keys), or a folder holding exactly one such file. The BERT
tokenizer files (``vocab.txt`` of ``bert-base-uncased``) must lie in the same folder (or its
``tokenizer/`` subfolder). The configs are inferred from the tensor shapes (ViT-L/16 at 224 px,
16 heads, GELU, layer-norm eps 1e-6; BERT-base 12 layers, 12 heads, cross-attention width 1024).

Key mapping (:func:`imagereward_to_transformers`)::

    blip.visual_encoder.cls_token / pos_embed     -> vision.embeddings.class_embedding / position_embedding
    blip.visual_encoder.patch_embed.proj          -> vision.embeddings.patch_embedding
    blip.visual_encoder.blocks.i.norm1 / norm2    -> vision.encoder.layers.i.layer_norm1 / layer_norm2
    blip.visual_encoder.blocks.i.attn.qkv / proj  -> vision.encoder.layers.i.self_attn.qkv / projection
    blip.visual_encoder.blocks.i.mlp.fc1 / fc2    -> vision.encoder.layers.i.mlp.fc1 / fc2
    blip.visual_encoder.norm                      -> vision.post_layernorm
    blip.text_encoder.*                           -> text.* (the same BERT names; BLIP's med.py is the origin)
    mlp.layers.*                                  -> head.layers.*
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from artquant_core.images import ImageBatch
from artquant_core.vlm_preprocess import ClipImagePreprocessor
from reward import clip_rewards
from reward.clip_rewards import AestheticHead, ClipReward
from reward.openclip_convert import CheckpointError, find_checkpoint_file, load_openclip_state_dict, require_key

IMAGEREWARD_MEAN = 0.16717362830052426
IMAGEREWARD_STD = 1.0333394966054072
IMAGEREWARD_HUB_REPO = "THUDM/ImageReward"
IMAGEREWARD_CHECKPOINT = "ImageReward.pt"
IMAGEREWARD_TOKENIZER = "bert-base-uncased"
#: The package tokenises with padding='max_length', truncation=True, max_length=35.
IMAGEREWARD_MAX_TOKENS = 35

_VISION = "blip.visual_encoder."
_TEXT = "blip.text_encoder."
_HEAD = "mlp."
_VISION_PLAIN = {"cls_token": "embeddings.class_embedding", "pos_embed": "embeddings.position_embedding",
                 "patch_embed.proj.weight": "embeddings.patch_embedding.weight",
                 "patch_embed.proj.bias": "embeddings.patch_embedding.bias",
                 "norm.weight": "post_layernorm.weight", "norm.bias": "post_layernorm.bias"}
_VISION_BLOCK = re.compile(r"^blocks\.(\d+)\.(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)$")
_VISION_BLOCK_PARTS = {"norm1": "layer_norm1", "norm2": "layer_norm2", "attn.qkv": "self_attn.qkv",
                       "attn.proj": "self_attn.projection", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}


def _require(state: dict[str, torch.Tensor], key: str, source: str) -> torch.Tensor:
    return require_key(state, key, source, kind="an ImageReward")


def _count(state: dict[str, torch.Tensor], pattern: str) -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def infer_configs(state: dict[str, torch.Tensor], source: str = "checkpoint", *, vision_heads: int | None = None,
                  text_heads: int | None = None) -> tuple[Any, Any]:
    """``(BlipVisionConfig, BlipTextConfig)`` of an ImageReward state dict, from its tensor shapes.

    Head counts are width / 64 (ViT-L: 16, BERT-base: 12) unless given.
    """
    from transformers import BlipTextConfig, BlipVisionConfig

    patch = _require(state, _VISION + "patch_embed.proj.weight", source)
    width, size = patch.shape[0], patch.shape[-1]
    grid = _require(state, _VISION + "pos_embed", source).shape[1] - 1
    side = int(round(grid ** 0.5))
    if side * side != grid:
        raise CheckpointError(f"{source}: {_VISION}pos_embed has {grid + 1} positions, not a square grid + 1")
    vision_layers = _count(state, re.escape(_VISION) + r"blocks\.(\d+)\.")
    text_layers = _count(state, re.escape(_TEXT) + r"encoder\.layer\.(\d+)\.")
    if not vision_layers:
        raise CheckpointError(f"{source}: not an ImageReward checkpoint: missing key '{_VISION}blocks.0.attn.qkv.weight'")
    if not text_layers:
        raise CheckpointError(f"{source}: not an ImageReward checkpoint: missing key "
                              f"'{_TEXT}encoder.layer.0.attention.self.query.weight'")
    vision_mlp = _require(state, _VISION + "blocks.0.mlp.fc1.weight", source).shape[0]
    vocab, hidden = _require(state, _TEXT + "embeddings.word_embeddings.weight", source).shape
    positions = _require(state, _TEXT + "embeddings.position_embeddings.weight", source).shape[0]
    text_mlp = _require(state, _TEXT + "encoder.layer.0.intermediate.dense.weight", source).shape[0]
    cross = _require(state, _TEXT + "encoder.layer.0.crossattention.self.key.weight", source).shape[1]
    vision_heads = vision_heads or max(width // 64, 1)
    text_heads = text_heads or max(hidden // 64, 1)
    vision = BlipVisionConfig(hidden_size=width, intermediate_size=vision_mlp, num_hidden_layers=vision_layers,
                              num_attention_heads=vision_heads, image_size=side * size, patch_size=size,
                              hidden_act="gelu", layer_norm_eps=1e-6)
    text = BlipTextConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=text_mlp,
                          num_hidden_layers=text_layers, num_attention_heads=text_heads,
                          max_position_embeddings=positions, encoder_hidden_size=cross, hidden_act="gelu",
                          layer_norm_eps=1e-12, is_decoder=True, pad_token_id=0)
    return vision, text


def imagereward_to_transformers(state: dict[str, torch.Tensor], source: str = "checkpoint") -> dict[str, dict[str, torch.Tensor]]:
    """``{"vision": ..., "text": ..., "head": ...}``: state dicts of BlipVisionModel, BlipTextModel, AestheticHead.

    Other ``blip.*`` tensors (BLIP's contrastive projections, the ``position_ids`` buffer) are dropped;
    an unknown key inside the image encoder or outside ``blip.`` / ``mlp.`` raises a
    :class:`CheckpointError` naming it.
    """
    out: dict[str, dict[str, torch.Tensor]] = {"vision": {}, "text": {}, "head": {}}
    for key, value in state.items():
        if key.startswith(_VISION):
            rest = key[len(_VISION):]
            if rest in _VISION_PLAIN:
                out["vision"][_VISION_PLAIN[rest]] = value
            elif match := _VISION_BLOCK.match(rest):
                part = _VISION_BLOCK_PARTS[match.group(2)]
                out["vision"][f"encoder.layers.{match.group(1)}.{part}.{match.group(3)}"] = value
            else:
                raise CheckpointError(f"{source}: unexpected image-encoder key {key!r}")
        elif key.startswith(_TEXT):
            rest = key[len(_TEXT):]
            if not rest.endswith("position_ids"):
                out["text"][rest] = value
        elif key.startswith(_HEAD):
            out["head"][key[len(_HEAD):]] = value
        elif not key.startswith("blip."):
            raise CheckpointError(f"{source}: unexpected key {key!r} (an ImageReward checkpoint holds blip.* and mlp.*)")
    return out


def _origin(part: str, key: str) -> str:
    """The checkpoint key a converted key comes from (for error messages)."""
    if part == "text":
        return _TEXT + key
    if part == "head":
        return _HEAD + key
    for src, dst in _VISION_PLAIN.items():
        if dst == key:
            return _VISION + src
    match = re.match(r"^encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$", key)
    if match:
        inverse = {v: k for k, v in _VISION_BLOCK_PARTS.items()}
        return f"{_VISION}blocks.{match.group(1)}.{inverse.get(match.group(2), match.group(2))}.{match.group(3)}"
    return _VISION + key


def _load_into(module: nn.Module, tensors: dict[str, torch.Tensor], part: str, source: str) -> None:
    expected = module.state_dict()
    missing = [k for k in expected if k not in tensors and not k.endswith("position_ids")]
    if missing:
        raise CheckpointError(f"{source}: not a complete ImageReward checkpoint: missing key "
                              f"{_origin(part, missing[0])!r} ({len(missing)} tensors missing)")
    for key, value in tensors.items():
        if key not in expected:
            raise CheckpointError(f"{source}: unexpected key {_origin(part, key)!r} for the inferred model")
        if tuple(value.shape) != tuple(expected[key].shape):
            raise CheckpointError(f"{source}: {_origin(part, key)!r} has shape {tuple(value.shape)}, the inferred "
                                  f"config expects {tuple(expected[key].shape)}")
    module.load_state_dict(tensors, strict=False)


class ImageRewardModel(nn.Module):
    """BLIP ViT + BLIP BERT with cross-attention + the MLP head; :meth:`forward` gives the standardised score."""

    def __init__(self, vision: nn.Module, text: nn.Module, head: AestheticHead) -> None:
        super().__init__()
        self.vision, self.text, self.head = vision, text, head

    @classmethod
    def from_checkpoint(cls, path: str | Path, **config_options: Any) -> "ImageRewardModel":
        from transformers import BlipTextModel, BlipVisionModel

        source = repr(str(path))
        state = load_openclip_state_dict(path)
        vision_config, text_config = infer_configs(state, source, **config_options)
        parts = imagereward_to_transformers(state, source)
        head_weight = parts["head"].get("layers.0.weight")
        if head_weight is None:
            raise CheckpointError(f"{source}: not a complete ImageReward checkpoint: missing key 'mlp.layers.0.weight'")
        vision = BlipVisionModel(vision_config)
        text = BlipTextModel(text_config, add_pooling_layer=False)
        head = AestheticHead(head_weight.shape[1])
        for module, part in ((vision, "vision"), (text, "text"), (head, "head")):
            _load_into(module, parts[part], part, source)
        if head.embed_dim != text_config.hidden_size:
            raise CheckpointError(f"{source}: the MLP takes {head.embed_dim}-d input but the text encoder gives "
                                  f"{text_config.hidden_size}-d")
        return cls(vision, text, head).float().eval().requires_grad_(False)

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        image_embeds = self.vision(pixel_values=pixel_values).last_hidden_state
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        text = self.text(input_ids=input_ids, attention_mask=attention_mask, encoder_hidden_states=image_embeds,
                         encoder_attention_mask=image_mask, is_decoder=False).last_hidden_state
        return (self.head(text[:, 0]) - IMAGEREWARD_MEAN) / IMAGEREWARD_STD


class _Encoder(nn.Module):
    """What :class:`~reward.clip_rewards.ClipReward` moves between devices: the model (preprocessing has no weights)."""

    def __init__(self, model: ImageRewardModel) -> None:
        super().__init__()
        self.model = model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype


class ImageRewardScore(ClipReward):
    """ImageReward: the standardised MLP output on BLIP's image-conditioned ``[CLS]`` (about -2..2); needs prompts."""

    name = "imagereward"
    needs_prompts = True

    def __init__(self, path: str | Path, max_batch: int = 32, device: str | torch.device | None = None,
                 **config_options: Any) -> None:
        from transformers import AutoTokenizer

        checkpoint = find_checkpoint_file(path, self.name, IMAGEREWARD_CHECKPOINT, IMAGEREWARD_HUB_REPO)
        folder = checkpoint.parent
        tokenizer_folder = next((f for f in (folder, folder / "tokenizer")
                                 if (f / "vocab.txt").is_file() or (f / "tokenizer.json").is_file()), None)
        if tokenizer_folder is None:
            raise FileNotFoundError(
                f"reward {self.name!r}: the checkpoint {str(checkpoint)!r} needs BERT's tokenizer (vocab.txt, or "
                f"tokenizer.json) in {str(folder)!r} or {str(folder / 'tokenizer')!r}, and there is none; save "
                f"it once (where there is network): `python -c \"from transformers import BertTokenizer; "
                f"BertTokenizer.from_pretrained('{IMAGEREWARD_TOKENIZER}').save_pretrained('{folder}')\"`")
        if any((tokenizer_folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
            self.tokenizer = clip_rewards._load(AutoTokenizer, str(tokenizer_folder), self.name, "BERT tokenizer")
        else:  # a bare vocab.txt: BERT's uncased WordPiece
            from transformers import BertTokenizer

            self.tokenizer = BertTokenizer(str(tokenizer_folder / "vocab.txt"), do_lower_case=True)
        try:
            model = ImageRewardModel.from_checkpoint(checkpoint, **config_options)
        except CheckpointError as exc:
            raise CheckpointError(f"reward {self.name!r}: {exc}") from exc
        vocab = model.text.config.vocab_size
        if len(self.tokenizer) > vocab:
            raise ValueError(f"reward {self.name!r}: the tokenizer in {str(tokenizer_folder)!r} has "
                             f"{len(self.tokenizer)} tokens but {str(checkpoint)!r} embeds {vocab}; use "
                             f"{IMAGEREWARD_TOKENIZER}'s")
        size = model.vision.config.image_size
        self.image_preprocessor = ClipImagePreprocessor(shortest_edge=size, crop_size=(size, size))
        super().__init__(_Encoder(model), max_batch, device)

    @torch.no_grad()
    def _tokens(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        tokens = self.tokenizer(prompts, padding="max_length", truncation=True, max_length=IMAGEREWARD_MAX_TOKENS,
                                return_tensors="pt")
        return {k: tokens[k].to(self.encoder.device) for k in ("input_ids", "attention_mask")}

    def score(self, batch: ImageBatch, prompts: list[str] | None) -> torch.Tensor:
        items = [item.to(self.encoder.device) for item in batch.items()]
        pixel_values = self.image_preprocessor(items, quantize=batch.from_uint8)["pixel_values"]
        return self.encoder.model(pixel_values.to(self.encoder.dtype), **self._tokens(prompts))
