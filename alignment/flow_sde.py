"""The flow-matching Euler step as an SDE, with the log-density of the step it took (the Flow-GRPO policy).

A rectified-flow model predicts the velocity v = eps - x0 of x_t = (1 - t) x0 + t eps
(``t`` is the scheduler's *sigma*; sampling runs t from 1 to 0). Its deterministic
sampler is the Euler ODE step ``x + (t_next - t) v``. The same marginals are
reached by the reverse-time SDE (Flow-GRPO, Liu et al. 2025, eq. 8)

    dx = [v + g_t^2 / (2 t) (x + (1 - t) v)] dt + g_t dw,

whose drift correction is ``-g_t^2 / 2`` times the score ``-(x + (1 - t) v) / t``. One
Euler-Maruyama step over ``dt = t_next - t < 0`` is a Gaussian policy
x_next ~ N(mean, (g_t^2 |dt|) I). Two choices of the diffusion coefficient g_t:

* ``"flow_grpo"``: g_t = a sqrt(t / (1 - t)) (Flow-GRPO; large early, small late);
* ``"constant"``: g_t = a (DanceGRPO's constant eta).

``a`` is ``noise_level``. As in :mod:`alignment.ddim`, the log-density is averaged
over the latent's elements, and step indices may be one int for the batch
(sampling) or one per sample ``(B,)`` (timestep-batched training).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

NOISE_SCHEDULES = ("flow_grpo", "constant")


class FlowStep(NamedTuple):
    prev_sample: torch.Tensor
    log_prob: torch.Tensor  # (B,)
    mean: torch.Tensor  # the step's Gaussian mean, for the KL to a reference policy
    std: torch.Tensor  # its std, broadcastable to the sample


def check_flow_scheduler(scheduler) -> None:
    """Refuse a scheduler that is not flow matching's Euler (its sigmas are not flow times)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    if not isinstance(scheduler, FlowMatchEulerDiscreteScheduler):
        raise ValueError(f"Flow-GRPO needs a FlowMatchEulerDiscreteScheduler (a flow-matching model such as "
                         f"SD3), got {type(scheduler).__name__}; for DDIM / SD 1.x use `artquant ddpo`")


def _flow_times(scheduler, step_index: torch.Tensor | int, sample: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(t, t_next) per sample, shaped to broadcast against ``sample``, in float64 for the coefficients."""
    if scheduler.num_inference_steps is None:
        raise ValueError("flow step: call scheduler.set_timesteps(...) first")
    idx = torch.as_tensor(step_index, device=scheduler.sigmas.device).long()
    if idx.ndim == 0:
        idx = idx.expand(sample.shape[0])
    elif idx.shape != (sample.shape[0],):
        raise ValueError(f"step_index must be an int or shape ({sample.shape[0]},), got {tuple(idx.shape)}")
    if int(idx.min()) < 0 or int(idx.max()) >= len(scheduler.sigmas) - 1:
        raise ValueError(f"step_index out of range [0, {len(scheduler.sigmas) - 2}]: {idx.tolist()}")
    shape = (-1,) + (1,) * (sample.ndim - 1)
    sigmas = scheduler.sigmas.to(device=sample.device, dtype=torch.float64)
    return sigmas[idx.to(sample.device)].reshape(shape), sigmas[idx.to(sample.device) + 1].reshape(shape)


def euler_step(scheduler, model_output: torch.Tensor, step_index: torch.Tensor | int,
               sample: torch.Tensor) -> torch.Tensor:
    """The deterministic (ODE) flow-matching Euler step ``x + (t_next - t) v`` (= ``scheduler.step``)."""
    check_flow_scheduler(scheduler)
    t, t_next = _flow_times(scheduler, step_index, sample)
    work = torch.promote_types(sample.dtype, torch.float32)
    out = sample.to(work) + (t_next - t).to(work) * model_output.to(work)
    return out.to(sample.dtype)


def sde_noise_std(t: torch.Tensor, noise_level: float, noise_schedule: str, t_cap: float) -> torch.Tensor:
    """The diffusion coefficient g_t of the reverse SDE (see the module docstring).

    ``t_cap``: the largest flow time below 1 of the schedule; at t = 1 the ``flow_grpo`` ratio
    t / (1 - t) is infinite, so its denominator uses ``t_cap`` there (as Flow-GRPO does).
    """
    if noise_schedule == "flow_grpo":
        return noise_level * torch.sqrt(t / (1 - torch.where(t >= 1, torch.full_like(t, t_cap), t)))
    if noise_schedule == "constant":
        return torch.full_like(t, float(noise_level))
    raise ValueError(f"noise_schedule must be one of {NOISE_SCHEDULES}, got {noise_schedule!r}")


def sde_step_with_logprob(scheduler, model_output: torch.Tensor, step_index: torch.Tensor | int,
                          sample: torch.Tensor, noise_level: float, prev_sample: torch.Tensor | None = None,
                          generator: torch.Generator | None = None, *, noise_schedule: str = "flow_grpo",
                          variance_noise: torch.Tensor | None = None) -> FlowStep:
    """One SDE step of a ``FlowMatchEulerDiscreteScheduler`` (after ``set_timesteps``), and its log-density.

    Args:
        scheduler: the flow-matching scheduler; its ``sigmas`` give t (and t_next) of each step.
        model_output: the (guided) velocity prediction ``v``, the sample's shape.
        step_index: position in ``scheduler.sigmas``: an int, or one per sample ``(B,)``.
        sample: x_t, ``(B, C, h, w)``.
        noise_level: ``a`` of the noise schedule; must be > 0 (0 is the ODE step, :func:`euler_step`,
            whose log-density is undefined).
        prev_sample: x_next to score; drawn from the step's Gaussian when ``None``.
        generator: RNG for that draw (ignored when ``variance_noise`` is given).
        noise_schedule: ``"flow_grpo"`` (a sqrt(t / (1 - t))) or ``"constant"`` (DanceGRPO's a).
        variance_noise: standard normal noise of the sample's shape replacing the internal draw, so a
            CPU generator drives sampling on any device reproducibly.

    Returns:
        ``FlowStep(prev_sample, log_prob (B,), mean, std)``; the log-density is averaged over non-batch dims.
    """
    check_flow_scheduler(scheduler)
    if not noise_level > 0:
        raise ValueError(f"noise_level must be > 0, got {noise_level}: with no noise the step is the "
                         "deterministic Euler ODE step (euler_step), whose log-probability is undefined")
    t64, t_next64 = _flow_times(scheduler, step_index, sample)
    below_one = scheduler.sigmas[scheduler.sigmas < 1]
    t_cap = float(below_one.max()) if len(below_one) else 0.0
    g64 = sde_noise_std(t64, noise_level, noise_schedule, t_cap)
    dt64 = t_next64 - t64  # < 0: time runs from 1 (noise) to 0 (data)
    # Half-precision outputs are promoted: the log-density needs float32 at least.
    work = torch.promote_types(torch.promote_types(sample.dtype, model_output.dtype), torch.float32)
    x, v = sample.to(work), model_output.to(work)
    t, dt, g = t64.to(work), dt64.to(work), g64.to(work)
    mean = x + dt * (v + g ** 2 / (2 * t) * (x + (1 - t) * v))
    std = g * torch.sqrt(-dt)
    if prev_sample is None:
        noise = variance_noise
        if noise is None:
            from diffusers.utils.torch_utils import randn_tensor

            noise = randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=work)
        prev_sample = mean + std * noise.to(device=mean.device, dtype=work)
    prev_w = prev_sample.to(work)
    log_prob = (-((prev_w.detach() - mean) ** 2) / (2 * std ** 2) - torch.log(std)
                - math.log(math.sqrt(2 * math.pi)))
    log_prob = log_prob.mean(dim=tuple(range(1, sample.ndim)))
    return FlowStep(prev_w.to(sample.dtype), log_prob, mean, std)
