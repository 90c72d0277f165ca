"""ArtQuantReward on the embedded tiny scorer (random init): values, paths, gradients, specs."""

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from reward import ArtQuantReward, CompositeReward, load_reward


@pytest.fixture(scope="module")
def scorer():
    from artquant_core.tiny import build_tiny_scorer

    return build_tiny_scorer(seed=0, pretrained=False)


def _images(b, size=64, seed=0):
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_normalised_reward_is_the_score_mapped_from_the_scale_range(scorer):
    images = _images(5)
    reward = ArtQuantReward(scorer)
    values = reward(images)
    raw = scorer.score(images).score
    assert values.shape == (5,) and values.dtype == torch.float32
    assert not torch.is_inference(values)  # usable in a later autograd graph (DDPO advantages)
    assert not torch.is_inference(ArtQuantReward(scorer, normalize=False)(images))
    torch.testing.assert_close(values, (raw - 1.0) / 9.0, atol=1e-6, rtol=0)
    assert bool(((values >= 0) & (values <= 1)).all())
    torch.testing.assert_close(ArtQuantReward(scorer, normalize=False)(images), raw, atol=1e-5, rtol=0)
    assert reward.name == "artquant" and reward.differentiable
    assert not scorer.training and not any(p.requires_grad for p in scorer.parameters())


def test_chunked_no_grad_path_equals_one_batch_and_the_gradient_path(scorer):
    images = _images(7, seed=1)
    whole = ArtQuantReward(scorer, max_batch=64)(images)
    chunked = ArtQuantReward(scorer, max_batch=3)(images)
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=0)
    leaf = images.clone().requires_grad_(True)
    with_grad = ArtQuantReward(scorer)(leaf)
    assert with_grad.requires_grad
    torch.testing.assert_close(with_grad.detach(), whole, atol=1e-5, rtol=0)
    with_grad.sum().backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all() and leaf.grad.abs().sum() > 0
    # A later sample's reward does not depend on another sample's pixels.
    leaf.grad = None
    ArtQuantReward(scorer)(leaf)[0].backward()
    assert leaf.grad[1:].abs().max() == 0 and leaf.grad[0].abs().sum() > 0


def _exact_float64_qwen(monkeypatch):
    """transformers' Qwen2.5-VL rounds to float32 inside RMSNorm and the vision rotary embedding
    (mixed-precision habits). In float64 that rounding (~6e-8) swamps a 1e-6 finite difference,
    so the check swaps in dtype-preserving twins of those two functions (same maths)."""
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as qwen

    def rms_norm(self, hidden):
        variance = hidden.pow(2).mean(-1, keepdim=True)
        return self.weight * (hidden * torch.rsqrt(variance + self.variance_epsilon))

    def rotary_vision(q, k, cos, sin):
        cos, sin = cos.unsqueeze(-2).to(q.dtype), sin.unsqueeze(-2).to(q.dtype)
        return q * cos + qwen.rotate_half(q) * sin, k * cos + qwen.rotate_half(k) * sin

    monkeypatch.setattr(qwen.Qwen2_5_VLRMSNorm, "forward", rms_norm)
    monkeypatch.setattr(qwen, "apply_rotary_pos_emb_vision", rotary_vision)


def test_directional_derivative_matches_central_differences_in_float64(scorer, monkeypatch):
    _exact_float64_qwen(monkeypatch)
    double = copy.deepcopy(scorer).double()
    reward = ArtQuantReward(double)
    gen = torch.Generator().manual_seed(3)
    images = (0.1 + 0.8 * torch.rand(2, 3, 64, 64, generator=gen, dtype=torch.float64)).requires_grad_(True)
    direction = torch.randn(2, 3, 64, 64, generator=gen, dtype=torch.float64)
    values = reward(images)
    assert values.dtype == torch.float64
    (grad,) = torch.autograd.grad(values.sum(), images)
    analytic = float((grad * direction).sum())
    eps = 1e-6
    with torch.no_grad():
        fd = float((reward(images + eps * direction) - reward(images - eps * direction)).sum() / (2 * eps))
    assert abs(analytic) > 1e-8
    assert abs(analytic - fd) <= 1e-4 * abs(fd), (analytic, fd)


def test_aspect_changes_the_prompt_and_the_name(scorer):
    images = _images(3, seed=2)
    overall = ArtQuantReward(scorer)(images)
    composition = ArtQuantReward(scorer, aspect="composition")
    assert composition.name == "artquant@composition"
    values = composition(images)
    torch.testing.assert_close(values, (scorer.score(images, aspect="composition").score - 1) / 9, atol=1e-6, rtol=0)
    assert not torch.allclose(values, overall)


def test_pil_and_uint8_inputs_match_the_scorer_on_the_same_images(scorer):
    arr = np.random.default_rng(0).integers(0, 256, size=(3, 48, 80, 3), dtype=np.uint8)
    pil = [Image.fromarray(a) for a in arr]
    reward = ArtQuantReward(scorer, normalize=False)
    expected = scorer.score(pil).score
    torch.testing.assert_close(reward(pil), expected, atol=1e-5, rtol=0)
    as_uint8 = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
    torch.testing.assert_close(reward(as_uint8), expected, atol=1e-5, rtol=0)
    # Mixed sizes are scored one by one.
    mixed = [pil[0], pil[1].resize((32, 32))]
    torch.testing.assert_close(reward(mixed), torch.cat([scorer.score([m]).score for m in mixed]), atol=1e-5, rtol=0)


def test_nan_from_the_scorer_is_caught_before_any_optimizer(scorer, monkeypatch):
    reward = ArtQuantReward(scorer)
    real = scorer.score

    def broken(images, aspect=None):
        out = real(images, aspect=aspect)
        out.score[1] = float("nan")
        return out

    monkeypatch.setattr(reward, "_score_fn", broken)
    with pytest.raises(FloatingPointError, match=r"'artquant'.*batch index 1"):
        reward(_images(3))


def test_bad_inputs_to_the_artquant_reward(scorer):
    reward = ArtQuantReward(scorer)
    with pytest.raises(ValueError, match=r"images\[0\].*NaN"):
        reward(torch.full((1, 3, 64, 64), float("nan")))
    with pytest.raises(ValueError, match="prompts has 1 entries"):
        reward(_images(2), ["only one"])
    empty = reward(torch.zeros(0, 3, 64, 64))
    assert empty.shape == (0,) and empty.dtype == torch.float32
    with pytest.raises(ValueError, match="needs a scorer"):
        ArtQuantReward(object())
    with pytest.raises(ValueError, match="max_batch"):
        ArtQuantReward(scorer, max_batch=0)
    with pytest.raises(ValueError, match="unknown autocast dtype"):
        ArtQuantReward(scorer, autocast_dtype="int8")


def test_load_reward_artquant_path_with_aspect_and_weights(scorer, tmp_path):
    folder = tmp_path / "runs+1" / "my-scorer.v1"
    scorer.save_pretrained(folder)
    images = _images(2, seed=4)
    single = load_reward(f"artquant:{folder}")
    assert isinstance(single, ArtQuantReward) and single.aspect is None
    torch.testing.assert_close(single(images), ArtQuantReward(scorer)(images), atol=1e-5, rtol=0)
    comp = load_reward(f"artquant:{folder}@composition*0.8+jpeg_compressibility*2e-1")
    assert isinstance(comp, CompositeReward) and not comp.differentiable
    parts = comp.components(images)
    assert set(parts) == {"artquant@composition", "jpeg_compressibility", "total"}
    torch.testing.assert_close(parts["total"], 0.8 * parts["artquant@composition"] + 0.2 * parts["jpeg_compressibility"])


def test_load_reward_embedded_default_loads_or_says_it_is_not_shipped():
    from artquant_core.tiny import PRETRAINED_DIR

    if (PRETRAINED_DIR / "tiny_scorer" / "config.json").exists():
        reward = load_reward("artquant")
        assert isinstance(reward, ArtQuantReward) and reward(_images(1)).shape == (1,)
    else:
        with pytest.raises(FileNotFoundError, match="not shipped"):
            load_reward("artquant")


def test_bf16_autocast_no_grad_path_stays_close_and_float32(scorer):
    images = _images(4, seed=5)
    exact = ArtQuantReward(scorer)(images)
    fast = ArtQuantReward(scorer, autocast_dtype="bf16", autocast_on_cpu=True, max_batch=2)(images)
    assert fast.dtype == torch.float32
    assert float((fast - exact).abs().max()) < 0.02  # bf16 has ~3 significant digits
    # The gradient path never autocasts.
    leaf = images.clone().requires_grad_(True)
    grad_values = ArtQuantReward(scorer, autocast_dtype="bf16", autocast_on_cpu=True)(leaf)
    torch.testing.assert_close(grad_values.detach(), exact, atol=1e-5, rtol=0)
