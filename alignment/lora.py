"""LoRA adapters on a diffusers UNet: add, save (diffusers format), restore, reference policy."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import torch

LORA_WEIGHTS = "pytorch_lora_weights.safetensors"
PEFT_WEIGHTS = "unet_lora_peft.safetensors"  # the exact adapter tensors, for resuming
UNET_ATTENTION_MODULES = ["to_q", "to_k", "to_v", "to_out.0"]
# SD3's joint attention: the image stream's projections and the text stream's (add_*, to_add_out)
TRANSFORMER_ATTENTION_MODULES = [*UNET_ATTENTION_MODULES, "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out"]


def add_lora(unet, rank: int, target_modules: list[str] | None = None) -> list[torch.nn.Parameter]:
    """Add a LoRA adapter (alpha = rank, Gaussian init, so the model is unchanged at start) to ``unet``.

    Returns the trainable parameters (kept in float32 whatever the UNet's dtype).
    """
    from peft import LoraConfig

    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                target_modules=target_modules or UNET_ATTENTION_MODULES))
    params = [p for p in unet.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()
    return params


def lora_state_dict(unet) -> dict[str, torch.Tensor]:
    """The adapter tensors in peft naming."""
    from peft.utils import get_peft_model_state_dict

    return {k: v.detach().contiguous().cpu() for k, v in get_peft_model_state_dict(unet).items()}


def save_lora(unet, directory: str | Path) -> Path:
    """Write ``pytorch_lora_weights.safetensors`` (diffusers format, for ``load_lora_weights``) and the
    exact peft tensors (for resuming) into ``directory``."""
    from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline, StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from safetensors.torch import save_file

    directory = Path(directory)
    state = lora_state_dict(unet)
    if isinstance(unet, SD3Transformer2DModel):  # "transformer." keys, for StableDiffusion3Pipeline.load_lora_weights
        StableDiffusion3Pipeline.save_lora_weights(directory, transformer_lora_layers=state, safe_serialization=True)
    else:
        StableDiffusionPipeline.save_lora_weights(directory, unet_lora_layers=convert_state_dict_to_diffusers(state),
                                                  safe_serialization=True)
    save_file(state, str(directory / PEFT_WEIGHTS))
    return directory / LORA_WEIGHTS


def load_lora(unet, directory: str | Path) -> None:
    """Restore adapter tensors written by ``save_lora`` (exactly, in place)."""
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    path = Path(directory) / PEFT_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"LoRA checkpoint file missing: {path}")
    result = set_peft_model_state_dict(unet, load_file(str(path)))
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise ValueError(f"{path}: adapter keys do not match the model: {unexpected[:3]}")


@contextlib.contextmanager
def adapters_disabled(unet) -> Iterator[None]:
    """The reference policy of a LoRA run: the same UNet with its adapters switched off."""
    unet.disable_adapters()
    try:
        yield
    finally:
        unet.enable_adapters()


@contextlib.contextmanager
def lora_merged(unet) -> Iterator[None]:
    """The LoRA policy with its adapters folded into the base weights, for inference (sampling).

    Each adapted projection computes ``W x + s B A x`` with three matrix products;
    merged it is one, ``(W + s B A) x``. The merged weight is a new tensor and the
    original base tensor is put back afterwards, so nothing drifts: the base weights
    are bit-for-bit unchanged after the block and the adapter tensors are never touched.
    Outputs agree with the unmerged forward to float rounding. Not for training (no
    gradient reaches the adapters through the merged weight).
    """
    from peft.tuners.lora import LoraLayer

    restore: list[tuple[torch.Tensor, torch.Tensor]] = []
    with torch.no_grad():
        for layer in unet.modules():
            if not isinstance(layer, LoraLayer) or layer.merged or layer.disable_adapters:
                continue
            weight = layer.get_base_layer().weight
            delta = sum(layer.get_delta_weight(name) for name in layer.active_adapters if name in layer.lora_A)
            if isinstance(delta, torch.Tensor):
                restore.append((weight, weight.data))
                weight.data = weight.data + delta.to(weight.dtype)
    unet.disable_adapters()
    try:
        yield
    finally:
        unet.enable_adapters()
        for weight, original in restore:
            weight.data = original
