"""Flow-GRPO: the flow-matching SDE step and its log-probability, config refusals, and runs on the tiny SD3."""

import math

import pytest
import torch
from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler

from alignment.flow_sde import euler_step, sde_step_with_logprob


def _scheduler(steps=6):
    s = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    s.set_timesteps(steps)
    return s


def _reference_step(x, v, t, t_next, a, schedule, t_cap):
    """Euler-Maruyama step of dx = [v - g^2/2 * score] dt + g dw written from the score of
    x_t = (1 - t) x0 + t eps (score = -(x - (1 - t) x0) / t^2 with x0 = x - t v), in float64."""
    x, v = x.double(), v.double()
    t, t_next = torch.tensor(t, dtype=torch.float64), torch.tensor(t_next, dtype=torch.float64)
    if schedule == "flow_grpo":
        g = a * math.sqrt(float(t) / (1 - (t_cap if float(t) >= 1 else float(t))))
    else:
        g = a
    x0 = x - t * v
    score = -(x - (1 - t) * x0) / t ** 2
    dt = t_next - t
    return x + (v - 0.5 * g ** 2 * score) * dt, g * math.sqrt(float(-dt))


@pytest.mark.parametrize("schedule", ["flow_grpo", "constant"])
def test_sde_step_matches_a_float64_reference(schedule):
    sched = _scheduler()
    gen = torch.Generator().manual_seed(0)
    x, v, noise = (torch.randn(3, 4, 5, 5, generator=gen) for _ in range(3))
    idx = torch.tensor([0, 2, 5])  # the first step (t = 1), a middle one, the last (t_next = 0)
    step = sde_step_with_logprob(sched, v, idx, x, 0.7, noise_schedule=schedule, variance_noise=noise)
    t_cap = float(sched.sigmas[1])
    for b, i in enumerate(idx.tolist()):
        mean, std = _reference_step(x[b], v[b], float(sched.sigmas[i]), float(sched.sigmas[i + 1]), 0.7,
                                    schedule, t_cap)
        torch.testing.assert_close(step.mean[b].double(), mean, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(step.prev_sample[b].double(), mean + std * noise[b].double(), rtol=1e-5,
                                   atol=1e-5)
        ref_lp = torch.distributions.Normal(mean, std).log_prob(step.prev_sample[b].double()).mean()
        torch.testing.assert_close(step.log_prob[b].double(), ref_lp, rtol=1e-5, atol=1e-5)


def test_small_noise_is_the_euler_step_and_euler_is_the_scheduler_step():
    sched = _scheduler(4)
    x, v = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    step = sde_step_with_logprob(sched, v, 1, x, 1e-6)
    expected = sched.step(v, sched.timesteps[1], x, return_dict=False)[0]
    torch.testing.assert_close(step.mean, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(euler_step(sched, v, 1, x), expected, rtol=1e-6, atol=1e-6)


def test_log_prob_is_highest_at_the_mean_and_scores_given_samples():
    sched = _scheduler()
    x, v = torch.randn(4, 4, 6, 6), torch.randn(4, 4, 6, 6)
    drawn = sde_step_with_logprob(sched, v, 2, x, 0.7, generator=torch.Generator().manual_seed(1))
    at_mean = sde_step_with_logprob(sched, v, 2, x, 0.7, prev_sample=drawn.mean)
    assert (at_mean.log_prob > drawn.log_prob).all()
    again = sde_step_with_logprob(sched, v, 2, x, 0.7, prev_sample=drawn.prev_sample)
    torch.testing.assert_close(again.log_prob, drawn.log_prob)
    # the drawn sample's squared error is about one variance per element: log p ~ -1/2 - log(std sqrt(2 pi))
    expected = -0.5 - torch.log(drawn.std.flatten()[0]) - 0.5 * math.log(2 * math.pi)
    assert drawn.log_prob.mean().item() == pytest.approx(expected.item(), abs=0.1)


def test_noise_level_and_scheduler_are_refused_by_name():
    sched = _scheduler()
    x = torch.randn(1, 4, 2, 2)
    for bad in (0.0, -0.1):
        with pytest.raises(ValueError, match="noise_level must be > 0"):
            sde_step_with_logprob(sched, x, 0, x, bad)
    ddim = DDIMScheduler()
    ddim.set_timesteps(4)
    with pytest.raises(ValueError, match="FlowMatchEulerDiscreteScheduler.*got DDIMScheduler"):
        sde_step_with_logprob(ddim, x, 0, x, 0.7)
    with pytest.raises(ValueError, match="noise_schedule"):
        sde_step_with_logprob(sched, x, 0, x, 0.7, noise_schedule="cosine")
