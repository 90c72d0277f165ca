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
    """``"painter"`` → the shipped painter (SynthArt-trained tiny SD), ``"tiny"`` → the random-init tiny SD
    (each copied/built under ``cache_dir`` once); a folder → checked; else a hub id.

    The tiny model is always initialised with seed 0, whatever ``seed`` (a run's
    training seed) is, so runs with different seeds fine-tune the same base model.

    A local folder must be a diffusers pipeline (``model_index.json``); the
    error names the folder otherwise. Checked before any model is loaded.
    """
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

    try:
        pipe = StableDiffusionPipeline.from_pretrained(pretrained, dtype=dtype, safety_checker=None,
                                                       requires_safety_checker=False)
    except (OSError, ValueError, EnvironmentError) as exc:
        raise ValueError(f"pretrained_model {pretrained!r} could not be loaded as a Stable Diffusion "
                         f"pipeline: {str(exc).splitlines()[0]}") from exc
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        module.requires_grad_(False)
        module.to(device)
    return pipe
