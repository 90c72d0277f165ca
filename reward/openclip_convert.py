"""Convert an open_clip CLIP state dict (e.g. HPSv2's ``HPS_v2.1_compressed.pt``) into a transformers ``CLIPModel``.

Loading never unpickles arbitrary objects: ``.pt`` / ``.bin`` / ``.pth`` files go through
``torch.load(..., weights_only=True, map_location="cpu")`` (tensors and plain containers
only), ``.safetensors`` through safetensors. The file may hold the bare state dict or a
dict with a ``"state_dict"`` entry (HPSv2's training checkpoints); keys may carry a
``module.`` prefix (DDP).

The ``CLIPConfig`` is inferred from the tensor shapes: widths, layer counts, patch size,
image size (from the positional embedding's grid), context length, vocabulary size and
projection dim. Head counts are not in the shapes; they follow open_clip's model configs
(:func:`default_vision_heads`: head width 64, except the ViT-H / g / bigG towers whose head
width gives 16 heads; text heads = width / 64), and can be given explicitly. The activation
defaults to exact GELU (open_clip's LAION ViT-H-14, which HPSv2 fine-tunes; OpenAI's original
models use ``quick_gelu``) and the layer-norm epsilon to 1e-5.

The key mapping (:func:`openclip_to_transformers`), per resblock ``i`` of either tower::

    ln_1 / ln_2                     -> layer_norm1 / layer_norm2
    attn.in_proj_{weight,bias}      -> self_attn.{q,k,v}_proj.{weight,bias}  (split in three)
    attn.out_proj                   -> self_attn.out_proj
    mlp.c_fc / mlp.c_proj           -> mlp.fc1 / mlp.fc2

and around them ``visual.conv1`` -> patch_embedding, ``visual.class_embedding``,
``visual.positional_embedding`` -> position_embedding, ``visual.ln_pre`` -> pre_layrnorm,
``visual.ln_post`` -> post_layernorm, ``visual.proj`` -> ``visual_projection.weight`` (transposed),
``token_embedding``, ``positional_embedding``, ``ln_final`` -> final_layer_norm,
``text_projection`` -> ``text_projection.weight`` (transposed), ``logit_scale``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

#: Files of these suffixes are read as open_clip checkpoints.
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")

#: open_clip vision towers whose head width is not 64 (width -> heads): ViT-H (1280, head width 80),
#: ViT-g (1408, 88), ViT-bigG (1664, 104), all 16 heads.
_VISION_HEADS_BY_WIDTH = {1280: 16, 1408: 16, 1664: 16}

_BLOCK = re.compile(r"^(visual\.)?transformer\.resblocks\.(\d+)\.(.+)$")
_BLOCK_PARTS = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn.out_proj": "self_attn.out_proj",
                "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
_PLAIN = {
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
    "logit_scale": "logit_scale",
}
_TRANSPOSED = {"visual.proj": "visual_projection.weight", "text_projection": "text_projection.weight"}
#: open_clip keys that carry nothing a CLIPModel needs (buffers of some open_clip versions).
_IGNORED = {"attn_mask", "visual.attn_mask"}


class CheckpointError(ValueError):
    """An open_clip checkpoint that cannot be read or converted; the message names the file."""


def load_openclip_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of an open_clip checkpoint file, ``module.`` prefixes and a ``state_dict`` wrapper removed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no open_clip checkpoint at {str(path)!r}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: Any = load_file(str(path))
    else:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle.UnpicklingError for anything beyond tensors and containers
            raise CheckpointError(f"{str(path)!r} does not load as a plain state dict with "
                                  f"torch.load(weights_only=True) ({type(exc).__name__}: {exc})") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{str(path)!r} is not a state dict of tensors (got {type(state).__name__})")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def find_checkpoint_file(path: str | Path, who: str, filename: str, hub_repo: str,
                         folder_kind: str | None = None) -> Path:
    """The checkpoint file that ``path`` names: the file itself, or the only checkpoint file in a folder.

    ``filename`` / ``hub_repo`` name the real checkpoint in the errors; ``folder_kind`` (e.g. ``"CLIPModel"``)
    is the converted-folder form the reward also accepts, mentioned where it applies."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        alternative = f", or a {folder_kind} folder" if folder_kind else ""
        raise FileNotFoundError(f"reward {who!r}: no checkpoint or folder at {str(path)!r} (expected "
                                f"{filename} from the hub repo {hub_repo}{alternative})")
    found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES)
    if len(found) != 1:
        what = "no checkpoint file" if not found else f"{len(found)} checkpoint files ({', '.join(p.name for p in found)})"
        not_a_folder = f"no config.json (not a {folder_kind} folder) and " if folder_kind else ""
        raise FileNotFoundError(f"reward {who!r}: {str(path)!r} has {not_a_folder}{what}; pass the file itself, "
                                f"e.g. '{who}:{path / filename}'")
    return found[0]


def require_key(state: dict[str, torch.Tensor], key: str, source: str, kind: str = "an open_clip CLIP") -> torch.Tensor:
    """``state[key]``, or a ``CheckpointError`` naming the file, the missing key and what the file holds."""
    if key not in state:
        raise CheckpointError(f"{source}: not {kind} checkpoint: missing key {key!r} "
                              f"(keys start: {sorted(state)[:5]})")
    return state[key]


def _layers(state: dict[str, torch.Tensor], prefix: str) -> int:
    found = {int(m.group(2)) for k in state if (m := _BLOCK.match(k)) and (m.group(1) or "") == prefix}
    return max(found) + 1 if found else 0


def default_vision_heads(width: int) -> int:
    """open_clip's vision head count for a tower ``width`` (head width 64 unless ViT-H / g / bigG)."""
    return _VISION_HEADS_BY_WIDTH.get(width, max(width // 64, 1))


def default_text_heads(width: int) -> int:
    """open_clip's text head count for a tower ``width`` (width / 64: 8 for 512, 12 for 768, 16 for 1024)."""
    return max(width // 64, 1)


def infer_clip_config(state: dict[str, torch.Tensor], source: str = "checkpoint", *,
                      vision_heads: int | None = None, text_heads: int | None = None,
                      hidden_act: str = "gelu", layer_norm_eps: float = 1e-5,
                      bos_token_id: int | None = None, eos_token_id: int | None = None,
                      pad_token_id: int | None = None) -> Any:
    """The ``CLIPConfig`` of an open_clip state dict, from its tensor shapes (see the module docstring).

    Token ids default to CLIP's convention (``<|startoftext|>`` and ``<|endoftext|>`` the last two
    ids; padding with ``<|endoftext|>``); pass the tokenizer's to be exact.
    """
    from transformers import CLIPConfig

    conv = require_key(state, "visual.conv1.weight", source)
    vision_width, patch = conv.shape[0], conv.shape[-1]
    grid = require_key(state, "visual.positional_embedding", source).shape[0] - 1
    side = int(round(grid ** 0.5))
    if side * side != grid:
        raise CheckpointError(f"{source}: visual.positional_embedding has {grid + 1} rows, not a square grid + 1")
    vocab, text_width = require_key(state, "token_embedding.weight", source).shape
    context = require_key(state, "positional_embedding", source).shape[0]
    projection = require_key(state, "text_projection", source).shape[1]
    vision_layers, text_layers = _layers(state, "visual."), _layers(state, "")
    if not vision_layers or not text_layers:
        tower = "visual.transformer" if not vision_layers else "transformer"
        raise CheckpointError(f"{source}: not an open_clip CLIP checkpoint: missing key "
                              f"'{tower}.resblocks.0.attn.in_proj_weight'")
    vision_mlp = require_key(state, "visual.transformer.resblocks.0.mlp.c_fc.weight", source).shape[0]
    text_mlp = require_key(state, "transformer.resblocks.0.mlp.c_fc.weight", source).shape[0]
    vision_heads = vision_heads or default_vision_heads(vision_width)
    text_heads = text_heads or default_text_heads(text_width)
    for tower, width, heads in (("vision", vision_width, vision_heads), ("text", text_width, text_heads)):
        if width % heads:
            raise CheckpointError(f"{source}: the {tower} width {width} does not split into {heads} heads")
    eos = vocab - 1 if eos_token_id is None else eos_token_id
    return CLIPConfig(
        text_config=dict(vocab_size=vocab, hidden_size=text_width, intermediate_size=text_mlp,
                         num_hidden_layers=text_layers, num_attention_heads=text_heads,
                         max_position_embeddings=context, hidden_act=hidden_act, layer_norm_eps=layer_norm_eps,
                         bos_token_id=vocab - 2 if bos_token_id is None else bos_token_id, eos_token_id=eos,
                         pad_token_id=eos if pad_token_id is None else pad_token_id, projection_dim=projection),
        vision_config=dict(hidden_size=vision_width, intermediate_size=vision_mlp, num_hidden_layers=vision_layers,
                           num_attention_heads=vision_heads, image_size=side * patch, patch_size=patch,
                           hidden_act=hidden_act, layer_norm_eps=layer_norm_eps, projection_dim=projection),
        projection_dim=projection)


def openclip_to_transformers(state: dict[str, torch.Tensor], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The ``CLIPModel`` state dict of an open_clip one (keys renamed, in_proj split, projections transposed).

    Every key ``CLIPModel`` needs must come from ``state``: :func:`clip_model_from_openclip` checks it.
    Unknown keys raise a :class:`CheckpointError` naming the first one.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in _PLAIN:
            out[_PLAIN[key]] = value
        elif key in _TRANSPOSED:
            out[_TRANSPOSED[key]] = value.t().contiguous()
        elif match := _BLOCK.match(key):
            tower = "vision_model" if match.group(1) else "text_model"
            prefix, rest = f"{tower}.encoder.layers.{match.group(2)}.", match.group(3)
            if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
                kind = rest.rsplit("_", 1)[1]
                for name, part in zip("qkv", value.chunk(3, dim=0)):
                    out[f"{prefix}self_attn.{name}_proj.{kind}"] = part.contiguous()
                continue
            module, _, param = rest.rpartition(".")
            if module not in _BLOCK_PARTS:
                raise CheckpointError(f"{source}: unexpected open_clip key {key!r}")
            out[f"{prefix}{_BLOCK_PARTS[module]}.{param}"] = value
        elif key not in _IGNORED:
            raise CheckpointError(f"{source}: unexpected open_clip key {key!r} (not a plain open_clip ViT CLIP)")
    return out


def transformers_key_origin(key: str) -> str:
    """The open_clip key a ``CLIPModel`` key comes from (for error messages)."""
    for src, dst in {**_PLAIN, **_TRANSPOSED}.items():
        if dst == key:
            return src
    match = re.match(r"^(vision_model|text_model)\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$", key)
    if match:
        tower = "visual.transformer" if match.group(1) == "vision_model" else "transformer"
        module = match.group(3)
        if module in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
            module = "attn.in_proj"
            return f"{tower}.resblocks.{match.group(2)}.{module}_{match.group(4)}"
        inverse = {v: k for k, v in _BLOCK_PARTS.items()}
        return f"{tower}.resblocks.{match.group(2)}.{inverse.get(module, module)}.{match.group(4)}"
    return key


def clip_model_from_openclip(path: str | Path, **config_options: Any) -> Any:
    """A frozen, eval-mode, float32 transformers ``CLIPModel`` built from an open_clip checkpoint file.

    ``config_options`` go to :func:`infer_clip_config` (head counts, activation, token ids).
    A key the model needs and the file lacks raises :class:`CheckpointError` naming the file and
    the first missing open_clip key.
    """
    from transformers import CLIPModel

    source = repr(str(path))
    state = load_openclip_state_dict(path)
    config = infer_clip_config(state, source, **config_options)
    converted = openclip_to_transformers(state, source)
    with torch.device("meta"):
        model = CLIPModel(config)
    expected = model.state_dict()
    missing = [k for k in expected if k not in converted and not k.endswith("position_ids")]
    if missing:
        raise CheckpointError(f"{source}: not a complete open_clip CLIP checkpoint: missing key "
                              f"{transformers_key_origin(missing[0])!r} ({len(missing)} CLIPModel tensors missing)")
    for key, value in converted.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise CheckpointError(f"{source}: {transformers_key_origin(key)!r} has shape {tuple(value.shape)}, "
                                  f"the inferred config expects {tuple(expected[key].shape)}")
    # The checkpoint's tensors become the parameters (no random init of a 1B-parameter model, no second copy);
    # only the non-persistent position-id buffers are rebuilt.
    model.load_state_dict(converted, strict=False, assign=True)
    for embeddings in (model.vision_model.embeddings, model.text_model.embeddings):
        positions = embeddings.position_embedding.num_embeddings
        embeddings.register_buffer("position_ids", torch.arange(positions).expand((1, -1)), persistent=False)
    left = [name for name, tensor in (*model.named_parameters(), *model.named_buffers()) if tensor.is_meta]
    if left:
        raise CheckpointError(f"{source}: no value for the CLIPModel tensor {left[0]!r}")
    return model.float().eval().requires_grad_(False)
