"""Loading the diffusion pipeline every alignment trainer fine-tunes."""

from __future__ import annotations

import sys
from pathlib import Path

import torch


def import_model_libraries() -> None:
    """Import diffusers and transformers' model code without letting them load scipy.

    Both libraries import scipy modules at import time when scipy is installed
    (the toolkit installs it for its metrics): diffusers for optional DPM-Solver
    sigma schedules, transformers for its object-detection losses. That is about
    50 MiB of resident code a diffusion fine-tuning run never calls. Each library
    asks once whether scipy is installed and keeps the answer, so hiding scipy
    while they are imported keeps it out; scipy stays importable afterwards for
    everything else. Does nothing when scipy is already loaded or either library
    has already decided (it would then import scipy itself, hidden or not).
    """
    if "scipy" in sys.modules or "diffusers.utils.import_utils" in sys.modules:
        return
    if "transformers.utils.import_utils" in sys.modules:
        from transformers.utils.import_utils import is_scipy_available

        cache_info = getattr(is_scipy_available, "cache_info", None)
        if cache_info is None or cache_info().currsize:
            return
    sys.modules["scipy"] = None  # importlib.util.find_spec("scipy") → None: "not installed"
    try:
        import diffusers.utils.import_utils  # noqa: F401
        import transformers.modeling_utils  # noqa: F401
    finally:
        if sys.modules.get("scipy", 0) is None:
            del sys.modules["scipy"]


def resolve_pretrained(pretrained_model: str, cache_dir: str | Path, seed: int = 0) -> str:
    """``"painter"`` → the shipped painter (SynthArt-trained tiny SD), ``"tiny"`` → the random-init tiny SD,
    ``"tiny-sd3"`` → the random-init tiny SD3 (each copied/built under ``cache_dir`` once); a folder →
    checked; else a hub id.

    The tiny model is always initialised with seed 0, whatever ``seed`` (a run's
    training seed) is, so runs with different seeds fine-tune the same base model.

    A local folder must be a diffusers pipeline (``model_index.json``); the
    error names the folder otherwise. Checked before any model is loaded.
    """
    if pretrained_model == "tiny-sd3":
        from alignment.tiny_sd3 import tiny_sd3_path

        return tiny_sd3_path(cache_dir, seed=0)
    if pretrained_model in ("tiny", "painter"):
        from alignment.tiny_sd import tiny_sd_path

        return tiny_sd_path(cache_dir, seed=0, pretrained=pretrained_model == "painter")
    path = Path(pretrained_model).expanduser()
    if path.exists():
        if not (path / "model_index.json").is_file():
            raise ValueError(f"pretrained_model {str(path)!r} is not a diffusers pipeline folder "
                             "(no model_index.json)")
        return str(path)
    if pretrained_model.startswith((".", "/", "~")) or pretrained_model.count("/") != 1:
        raise FileNotFoundError(f"pretrained_model {pretrained_model!r}: no such folder (and not a hub id)")
    return pretrained_model


def load_sd_pipeline(pretrained: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
    """A ``StableDiffusionPipeline`` with a DDIM scheduler, frozen, without safety checker."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from alignment.ddim import guard_ddim_variance

    try:
        pipe = StableDiffusionPipeline.from_pretrained(pretrained, dtype=dtype, safety_checker=None,
                                                       requires_safety_checker=False)
    except (OSError, ValueError, EnvironmentError) as exc:
        raise ValueError(f"pretrained_model {pretrained!r} could not be loaded as a Stable Diffusion "
                         f"pipeline: {str(exc).splitlines()[0]}") from exc
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    guard_ddim_variance(pipe.scheduler)  # pipe(..., eta=1) on a zero-terminal-SNR model (the painter)
    pipe.set_progress_bar_config(disable=True)
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        module.requires_grad_(False)
        module.to(device)
    return pipe


def load_sd3_pipeline(pretrained: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
    """A ``StableDiffusion3Pipeline`` (flow matching), frozen, without the T5 encoder.

    T5 is left out (the pipeline then pads prompts with zero T5 tokens): the tiny SD3 has none, and on a
    real SD3 it is most of the memory. The scheduler must be a ``FlowMatchEulerDiscreteScheduler``.
    """
    from diffusers import StableDiffusion3Pipeline

    from alignment.flow_sde import check_flow_scheduler

    try:
        pipe = StableDiffusion3Pipeline.from_pretrained(pretrained, dtype=dtype, text_encoder_3=None,
                                                        tokenizer_3=None)
    except (OSError, ValueError, TypeError, EnvironmentError) as exc:
        raise ValueError(f"pretrained_model {pretrained!r} could not be loaded as a Stable Diffusion 3 "
                         f"pipeline: {str(exc).splitlines()[0]}") from exc
    check_flow_scheduler(pipe.scheduler)
    pipe.set_progress_bar_config(disable=True)
    for module in (pipe.transformer, pipe.vae, pipe.text_encoder, pipe.text_encoder_2):
        module.requires_grad_(False)
        module.to(device)
    return pipe


class SD3PromptEncoder:
    """``(prompt_embeds, pooled_prompt_embeds)`` of prompts through the pipeline's own ``encode_prompt``
    (two CLIP encoders; zero T5 tokens), cached per string (the encoders are frozen).

    Args:
        pipe: a ``StableDiffusion3Pipeline``.
        device: where embeddings are returned.
        max_sequence_length: the T5 token count the pipeline pads with (its ``__call__`` default is 256;
            with no T5 they are zeros, but they still take part in attention, so images made with
            ``pipe(...)`` match only at the same length).
    """

    def __init__(self, pipe, device: torch.device | str = "cpu", max_sequence_length: int = 256) -> None:
        self.pipe, self.device, self.max_sequence_length = pipe, torch.device(device), max_sequence_length
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @torch.no_grad()
    def __call__(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        # one prompt per encoder call: a prompt's embedding must not depend on which prompts happened to be
        # encoded with it (batched matmuls round differently), or a resumed run would sample other images
        for p in dict.fromkeys(prompts):
            if p not in self._cache:
                embeds, _, pooled, _ = self.pipe.encode_prompt(
                    [p], None, None, device=self.pipe.text_encoder.device, do_classifier_free_guidance=False,
                    max_sequence_length=self.max_sequence_length)
                self._cache[p] = (embeds[0].detach().to(self.device), pooled[0].detach().to(self.device))
        return (torch.stack([self._cache[p][0] for p in prompts]),
                torch.stack([self._cache[p][1] for p in prompts]))
