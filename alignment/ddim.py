"""One DDIM step that also returns the log-density of the step it took (the DDPO policy).

DDIM with ``eta > 0`` is a Gaussian policy: x_{t-1} ~ N(mu_theta(x_t, t), sigma_t^2 I)
with sigma_t = eta * sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)) (DDIM eq. 16).
The log-density is averaged over the latent's elements (the DDPO code's
convention), so its scale does not depend on the latent size.

Timesteps may be one 0-d tensor for the whole batch (sampling) or one per
sample (``(B,)``, timestep-batched training, where a batch mixes steps of
several trajectories).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch


class DDIMStep(NamedTuple):
    prev_sample: torch.Tensor
    log_prob: torch.Tensor
    mean: torch.Tensor  # mu_theta, for the KL to a reference policy
    std: torch.Tensor  # sigma_t, broadcastable to the sample


def _per_sample(values: torch.Tensor, ndim: int) -> torch.Tensor:
    return values.reshape(values.shape + (1,) * (ndim - values.ndim))


def _threshold(x0: torch.Tensor, ratio: float, max_value: float) -> torch.Tensor:
    flat = x0.reshape(x0.shape[0], -1)
    s = torch.quantile(flat.abs(), ratio, dim=1).clamp(min=1.0, max=max_value).unsqueeze(1)
    return (flat.clamp(-s, s) / s).reshape(x0.shape)


def check_log_prob_schedule(scheduler) -> None:
    """Refuse a DDIM schedule whose last step has no noise, so that its log-probability is undefined.

    With ``set_alpha_to_one=True`` the final step goes to alpha = 1: its variance is 0 whatever
    ``eta``, and the Gaussian log-density of that step is NaN. SD 1.x / 2.x ship ``False``.
    """
    if getattr(scheduler.config, "set_alpha_to_one", False):
        raise ValueError(
            "the pipeline's DDIM scheduler has set_alpha_to_one=True: its last step has zero variance, so the "
            "DDPO log-probability is undefined (NaN) there. Set \"set_alpha_to_one\": false in "
            "scheduler/scheduler_config.json (as SD 1.x / 2.x ship it)")


def guard_ddim_variance(scheduler) -> None:
    """Keep diffusers' own ``DDIMScheduler.step`` finite at ``eta > 0`` on a zero-terminal-SNR schedule.

    Its first step goes from alpha 0, where the DDIM variance equals ``1 - a_prev`` exactly and
    ``sqrt(1 - a_prev - eta^2 var)`` takes the root of a round-off negative number at ``eta`` 1: every
    sample turns NaN (``pipe(..., eta=1.0)`` on the painter). The variance is capped just below
    ``1 - a_prev``, its exact bound (a relative 1e-6 under it, so the step's own square root and square
    cannot round past it). The cap binds only at a step from alpha 0: there the noise shrinks by 5e-7
    and a direction term of ~0.001 times the noise prediction remains where the exact value is 0
    (:func:`ddim_step_full` clamps it to 0). Patched on this scheduler instance only (its config, and so
    what ``save_pretrained`` writes, is untouched).
    """
    original = scheduler._get_variance

    def capped_variance(timestep, prev_timestep):
        variance = original(timestep, prev_timestep)
        a_prev = scheduler.alphas_cumprod[prev_timestep] if prev_timestep >= 0 else scheduler.final_alpha_cumprod
        return torch.minimum(variance, (1 - a_prev) * (1 - 1e-6))

    scheduler._get_variance = capped_variance


def ddim_step_full(scheduler, model_output: torch.Tensor, timestep: torch.Tensor | int, sample: torch.Tensor,
                   eta: float, prev_sample: torch.Tensor | None = None,
                   generator: torch.Generator | list[torch.Generator] | None = None,
                   use_clipped_model_output: bool = False,
                   variance_noise: torch.Tensor | None = None) -> DDIMStep:
    """``ddim_step_with_logprob`` that also returns the Gaussian's mean and std.

    ``variance_noise`` (standard normal, the sample's shape) replaces the internal
    draw, so a CPU generator can drive sampling on any device reproducibly.
    """
    if scheduler.num_inference_steps is None:
        raise ValueError("ddim_step_with_logprob: call scheduler.set_timesteps(...) first")
    cfg = scheduler.config
    out_dtype = sample.dtype
    # Half-precision model outputs are promoted: the log-density needs float32 at least.
    work = torch.promote_types(torch.promote_types(sample.dtype, model_output.dtype), torch.float32)
    sample_w, eps_w = sample.to(work), model_output.to(work)
    nd = sample.ndim
    t = torch.as_tensor(timestep, device=sample.device).long()
    if t.ndim == 0:
        t = t.expand(sample.shape[0])
    elif t.shape != (sample.shape[0],):
        raise ValueError(f"timestep must be 0-d or shape ({sample.shape[0]},), got {tuple(t.shape)}")
    prev_t = t - cfg.num_train_timesteps // scheduler.num_inference_steps
    alphas = scheduler.alphas_cumprod.to(device=sample.device, dtype=work)
    final = torch.as_tensor(scheduler.final_alpha_cumprod, device=sample.device, dtype=work)
    a_t = _per_sample(alphas[t.clamp(0, len(alphas) - 1)], nd)
    a_prev = _per_sample(torch.where(prev_t >= 0, alphas[prev_t.clamp(0, len(alphas) - 1)], final), nd)
    b_t = 1 - a_t

    if cfg.prediction_type == "epsilon":
        x0 = (sample_w - b_t.sqrt() * eps_w) / a_t.sqrt()
        eps = eps_w
    elif cfg.prediction_type == "sample":
        x0 = eps_w
        eps = (sample_w - a_t.sqrt() * x0) / b_t.sqrt()
    elif cfg.prediction_type == "v_prediction":
        x0 = a_t.sqrt() * sample_w - b_t.sqrt() * eps_w
        eps = a_t.sqrt() * eps_w + b_t.sqrt() * sample_w
    else:
        raise ValueError(f"unsupported prediction_type {cfg.prediction_type!r}")

    if cfg.thresholding:
        x0 = _threshold(x0, cfg.dynamic_thresholding_ratio, cfg.sample_max_value)
    elif cfg.clip_sample:
        x0 = x0.clamp(-cfg.clip_sample_range, cfg.clip_sample_range)
    if use_clipped_model_output:
        eps = (sample_w - a_t.sqrt() * x0) / b_t.sqrt()

    variance = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
    std = eta * variance.clamp(min=0).sqrt()
    mean = a_prev.sqrt() * x0 + (1 - a_prev - std ** 2).clamp(min=0).sqrt() * eps

    if prev_sample is None:
        if eta <= 0:
            prev_sample = mean
        else:
            noise = variance_noise
            if noise is None:
                from diffusers.utils.torch_utils import randn_tensor

                noise = randn_tensor(model_output.shape, generator=generator, device=model_output.device,
                                     dtype=model_output.dtype)
            prev_sample = mean + std * noise.to(device=mean.device, dtype=work)
    prev_w = prev_sample.to(work)
    log_prob = (-((prev_w.detach() - mean) ** 2) / (2 * std ** 2) - torch.log(std)
                - math.log(math.sqrt(2 * math.pi)))
    log_prob = log_prob.mean(dim=tuple(range(1, nd)))
    return DDIMStep(prev_w.to(out_dtype), log_prob, mean, std)


def ddim_step_with_logprob(scheduler, model_output: torch.Tensor, timestep: torch.Tensor | int,
                           sample: torch.Tensor, eta: float, prev_sample: torch.Tensor | None = None,
                           generator: torch.Generator | list[torch.Generator] | None = None,
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM step of ``scheduler`` (a ``diffusers.DDIMScheduler`` after ``set_timesteps``).

    Args:
        model_output: the (guided) UNet prediction, of the scheduler's ``prediction_type``.
        timestep: current timestep, a 0-d tensor / int or one per sample ``(B,)``.
        sample: x_t, ``(B, C, h, w)``.
        eta: DDIM stochasticity; the log-density needs ``eta > 0`` (with 0 it is degenerate).
        prev_sample: x_{t-1} to score; drawn from the step's Gaussian when ``None``.
        generator: RNG for that draw.

    Returns:
        ``(prev_sample, log_prob)``, ``log_prob`` of shape ``(B,)``, averaged over non-batch dims.
    """
    step = ddim_step_full(scheduler, model_output, timestep, sample, eta, prev_sample, generator)
    return step.prev_sample, step.log_prob
