"""ddim_step_with_logprob against an independent float64 computation and diffusers' own step."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from alignment import ddim_step_with_logprob


def _scheduler(prediction_type="epsilon", **kw):
    s = DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                      set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type,
                      clip_sample=kw.pop("clip_sample", False), **kw)
    s.set_timesteps(10)
    return s


def _reference(s, out, t, x, eta, prev):
    """Independent float64 DDIM (eq. 12/16) written from the paper, per sample."""
    ac = s.alphas_cumprod.double().numpy()  # the schedule itself; everything else recomputed here
    ours = np.cumprod(1.0 - np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2)
    np.testing.assert_allclose(ac, ours, rtol=1e-6)  # it is the scaled-linear schedule
    out, x, prev = (v.double().numpy() for v in (out, x, prev))
    logps = []
    for i in range(x.shape[0]):
        ti = int(t[i]) if np.ndim(t) else int(t)
        tp = ti - 1000 // 10
        a, ap = ac[ti], (ac[tp] if tp >= 0 else ac[0])
        e, xi = out[i], x[i]
        if s.config.prediction_type == "epsilon":
            x0, eps = (xi - math.sqrt(1 - a) * e) / math.sqrt(a), e
        elif s.config.prediction_type == "v_prediction":
            x0, eps = math.sqrt(a) * xi - math.sqrt(1 - a) * e, math.sqrt(a) * e + math.sqrt(1 - a) * xi
        else:
            x0, eps = e, (xi - math.sqrt(a) * e) / math.sqrt(1 - a)
        if s.config.thresholding:
            q = np.quantile(np.abs(x0).ravel(), s.config.dynamic_thresholding_ratio)
            q = min(max(q, 1.0), s.config.sample_max_value)
            x0 = np.clip(x0, -q, q) / q
        elif s.config.clip_sample:
            x0 = np.clip(x0, -s.config.clip_sample_range, s.config.clip_sample_range)
        sigma = eta * math.sqrt((1 - ap) / (1 - a) * (1 - a / ap))
        mu = math.sqrt(ap) * x0 + math.sqrt(1 - ap - sigma ** 2) * eps
        dens = -((prev[i] - mu) ** 2) / (2 * sigma ** 2) - math.log(sigma) - 0.5 * math.log(2 * math.pi)
        logps.append(dens.mean())
    return np.array(logps)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("clip", ["none", "clip", "threshold"])
def test_logprob_matches_float64_reference(prediction_type, per_sample, clip):
    kw = {"clip": {"clip_sample": True, "clip_sample_range": 1.0},
          "threshold": {"thresholding": True, "dynamic_thresholding_ratio": 0.9, "sample_max_value": 1.5},
          "none": {}}[clip]
    s = _scheduler(prediction_type, **kw)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 8, 8, generator=g) * 2
    out = torch.randn(3, 4, 8, 8, generator=g) * 2
    prev = torch.randn(3, 4, 8, 8, generator=g)
    t = s.timesteps[[0, 4, 9]] if per_sample else s.timesteps[3]
    _, logp = ddim_step_with_logprob(s, out, t, x, eta=1.0, prev_sample=prev)
    ref = _reference(s, out, t.numpy(), x, 1.0, prev)
    assert logp.shape == (3,)
    np.testing.assert_allclose(logp.numpy(), ref, rtol=1e-4, atol=1e-4)
    # float64 inputs reproduce the reference to round-off
    _, logp64 = ddim_step_with_logprob(s, out.double(), t, x.double(), eta=1.0, prev_sample=prev.double())
    np.testing.assert_allclose(logp64.numpy(), ref, rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_sampled_step_equals_diffusers_step(prediction_type):
    s = _scheduler(prediction_type)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    out = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    t = s.timesteps[2]
    ours, logp = ddim_step_with_logprob(s, out, t, x, eta=0.7, generator=torch.Generator().manual_seed(3))
    theirs = s.step(out, t, x, eta=0.7, generator=torch.Generator().manual_seed(3)).prev_sample
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    # per-sample timesteps all equal give the same result as the 0-d form
    ours2, logp2 = ddim_step_with_logprob(s, out, t.expand(2), x, eta=0.7, prev_sample=ours)
    torch.testing.assert_close(ours2, ours)
    torch.testing.assert_close(logp2, logp)


def test_logprob_is_maximal_at_the_mean_and_differentiable():
    s = _scheduler()
    x = torch.randn(2, 4, 8, 8)
    out = torch.randn(2, 4, 8, 8, requires_grad=True)
    t = s.timesteps[5]
    mean, _ = ddim_step_with_logprob(s, out, t, x, eta=1e-12)  # ~deterministic draw: the mean
    _, at_mean = ddim_step_with_logprob(s, out, t, x, eta=1.0, prev_sample=mean.detach())
    _, off = ddim_step_with_logprob(s, out, t, x, eta=1.0, prev_sample=mean.detach() + 0.1)
    assert (at_mean > off).all()
    at_mean.sum().backward()
    assert out.grad is not None and torch.isfinite(out.grad).all()


def test_requires_set_timesteps_and_checks_timestep_shape():
    s = DDIMScheduler()
    with pytest.raises(ValueError, match="set_timesteps"):
        ddim_step_with_logprob(s, torch.zeros(1, 4, 2, 2), torch.tensor(1), torch.zeros(1, 4, 2, 2), 1.0)
    s.set_timesteps(10)
    with pytest.raises(ValueError, match="timestep"):
        ddim_step_with_logprob(s, torch.zeros(2, 4, 2, 2), torch.tensor([1, 2, 3]), torch.zeros(2, 4, 2, 2), 1.0)


def test_a_schedule_ending_at_alpha_one_is_refused_by_name():
    """set_alpha_to_one=True gives the last step zero variance: its log-probability would be NaN."""
    from diffusers import DDIMScheduler

    from alignment.ddim import check_log_prob_schedule, ddim_step_full

    ending_at_one = DDIMScheduler(set_alpha_to_one=True)
    ending_at_one.set_timesteps(4)
    last = ending_at_one.timesteps[-1]
    x = torch.randn(1, 4, 8, 8)
    assert torch.isnan(ddim_step_full(ending_at_one, torch.randn_like(x), last, x, eta=1.0).log_prob).all()
    with pytest.raises(ValueError, match="set_alpha_to_one"):
        check_log_prob_schedule(ending_at_one)
    check_log_prob_schedule(DDIMScheduler(set_alpha_to_one=False))  # SD 1.x / 2.x: accepted


def test_zero_terminal_snr_trailing_schedule_matches_diffusers_at_every_step():
    """The painter's "zero-snr-v" schedule: sampling starts at alpha_bar = 0 (pure noise), where an epsilon
    model's x0 would divide by zero; v prediction is finite there, and every step equals diffusers' own."""
    from alignment.tiny_sd import scheduler_settings

    s = DDIMScheduler(**scheduler_settings("zero-snr-v"))
    s.set_timesteps(10)
    assert int(s.timesteps[0]) == 999 and float(s.alphas_cumprod[999]) < 1e-6
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 4, 8, 8, generator=g)
    # eta 1 at alpha_bar = 0: diffusers' sqrt(1 - alpha_prev - std^2) is sqrt of a round-off negative (NaN);
    # ours clamps it at 0, so DDPO's eta-1 sampling stays finite on this schedule
    first, logp = ddim_step_with_logprob(s, torch.randn(2, 4, 8, 8, generator=g), s.timesteps[0], x, eta=1.0)
    assert torch.isfinite(first).all() and torch.isfinite(logp).all()
    for t in s.timesteps:
        out = torch.randn(2, 4, 8, 8, generator=g)
        ours, logp = ddim_step_with_logprob(s, out, t, x, eta=0.7, generator=torch.Generator().manual_seed(int(t)))
        theirs = s.step(out, t, x, eta=0.7, generator=torch.Generator().manual_seed(int(t))).prev_sample
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
        assert torch.isfinite(logp).all()
        x = ours


def test_guarded_diffusers_ddim_stays_finite_at_eta_1_on_zero_terminal_snr_and_matches_ours():
    """diffusers' own step at eta 1 from alpha_bar = 0 takes the root of a round-off negative number; the
    guard that load_sd_pipeline installs caps the variance just under its bound, and the steps equal ours."""
    from alignment.ddim import guard_ddim_variance
    from alignment.tiny_sd import scheduler_settings

    s = DDIMScheduler(**scheduler_settings("zero-snr-v"))
    guard_ddim_variance(s)
    s.set_timesteps(10)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 4, 8, 8, generator=g)
    for t in s.timesteps:
        out = torch.randn(2, 4, 8, 8, generator=g)
        ours = ddim_step_with_logprob(s, out, t, x, eta=1.0, generator=torch.Generator().manual_seed(int(t)))[0]
        theirs = s.step(out, t, x, eta=1.0, generator=torch.Generator().manual_seed(int(t))).prev_sample
        assert torch.isfinite(theirs).all(), int(t)
        # the cap binds at the first step only (from alpha_bar 0), where its 1e-6 margin leaves a direction
        # term of sqrt(1e-6 (1 - a_prev)) ~ 0.001 times the noise prediction that ours clamps to exactly 0
        tolerance = 5e-3 if t == s.timesteps[0] else 1e-5
        torch.testing.assert_close(theirs, ours, rtol=0, atol=tolerance)
        x = ours
    # an SD-schedule scheduler's steps are untouched by the guard (the cap is never reached there)
    sd, guarded = DDIMScheduler(**scheduler_settings("sd")), DDIMScheduler(**scheduler_settings("sd"))
    guard_ddim_variance(guarded)
    for t, prev in ((901, 801), (101, 1), (1, -99)):
        assert torch.equal(guarded._get_variance(t, prev), sd._get_variance(t, prev))


@pytest.mark.skipif(not (Path(__file__).resolve().parents[1] / "alignment" / "pretrained" / "tiny_painter").is_dir(),
                    reason="the shipped painter is not installed")
def test_the_painter_loaded_by_the_toolkit_samples_with_eta_1(tmp_path):
    from alignment import build_tiny_sd
    from alignment.pipeline import load_sd_pipeline

    pipe = load_sd_pipeline(str(build_tiny_sd(tmp_path / "painter")))
    images = pipe(["a red disc in the centre, a small blue square, pale teal sky, dark green ground, low horizon"],
                  num_inference_steps=4, guidance_scale=3.0, eta=1.0, output_type="pt",
                  generator=torch.Generator().manual_seed(0)).images
    assert torch.isfinite(images).all() and 0.05 < float(images.mean()) < 0.95
