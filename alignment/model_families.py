"""The diffusion model families a trainer drives, with every difference between them in one place.

A trainer's config names its family (``pipeline_kind``: ``"sd"``, a UNet under DDIM with one CLIP text
encoder, or ``"sd3"``, a flow-matching transformer with two CLIP encoders and pooled embeddings); the
shared setup asks the family how to load the pipeline, which module is trained, where LoRA goes and
how prompts are encoded, and never branches on the family itself.
"""

from __future__ import annotations

from typing import Any

import torch

from alignment.lora import TRANSFORMER_ATTENTION_MODULES, UNET_ATTENTION_MODULES


class StableDiffusionFamily:
    """SD 1.x / 2.x and the tiny SD / painter: ``StableDiffusionPipeline``, UNet, DDIM."""

    name = "sd"
    lora_targets = UNET_ATTENTION_MODULES

    def load(self, pretrained: str, device: torch.device | str) -> Any:
        from alignment.pipeline import load_sd_pipeline

        return load_sd_pipeline(pretrained, device=device)

    def denoiser(self, pipe: Any) -> torch.nn.Module:
        return pipe.unet

    def text_encoders(self, pipe: Any) -> tuple[torch.nn.Module, ...]:
        return (pipe.text_encoder,)

    def prompt_encoder(self, pipe: Any, device: torch.device | str, config: Any):
        from alignment.sampling import PromptEncoder

        return PromptEncoder(pipe.tokenizer, pipe.text_encoder, device)


class StableDiffusion3Family:
    """SD 3 and the tiny SD3: ``StableDiffusion3Pipeline`` without T5, transformer, flow-matching Euler."""

    name = "sd3"
    lora_targets = TRANSFORMER_ATTENTION_MODULES

    def load(self, pretrained: str, device: torch.device | str) -> Any:
        from alignment.pipeline import load_sd3_pipeline

        return load_sd3_pipeline(pretrained, device=device)

    def denoiser(self, pipe: Any) -> torch.nn.Module:
        return pipe.transformer

    def text_encoders(self, pipe: Any) -> tuple[torch.nn.Module, ...]:
        return (pipe.text_encoder, pipe.text_encoder_2)

    def prompt_encoder(self, pipe: Any, device: torch.device | str, config: Any):
        from alignment.pipeline import SD3PromptEncoder

        return SD3PromptEncoder(pipe, device, config.max_sequence_length)  # (prompt_embeds, pooled) pairs


FAMILIES = {family.name: family for family in (StableDiffusionFamily(), StableDiffusion3Family())}


def family_for(config: Any) -> StableDiffusionFamily | StableDiffusion3Family:
    """The family a trainer config drives (its class's ``pipeline_kind``, ``"sd"`` when it has none)."""
    kind = getattr(config, "pipeline_kind", "sd")
    if kind not in FAMILIES:
        raise ValueError(f"{type(config).__name__}.pipeline_kind must be one of {sorted(FAMILIES)}, got {kind!r}")
    return FAMILIES[kind]
