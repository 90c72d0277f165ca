"""Simple rewards, the shared call path (validation, NaN guard), and the protocol."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from reward import Reward
from reward.base import BaseReward
from reward.simple import Brightness, Colorfulness, Contrast, ImageHashNoise, JpegCompressibility, Saturation


def _solid(rgb, size=16, batch=1):
    return torch.tensor(rgb, dtype=torch.float32).view(1, 3, 1, 1).expand(batch, 3, size, size).clone()


def test_brightness_of_known_images():
    images = torch.cat([_solid((0, 0, 0)), _solid((1, 1, 1)), _solid((1, 0, 0)), _solid((0.5, 0.5, 0.5))])
    values = Brightness()(images)
    assert values.dtype == torch.float32 and values.shape == (4,)
    torch.testing.assert_close(values, torch.tensor([0.0, 1.0, 0.299, 0.5]), atol=1e-6, rtol=0)


def test_random_reward_is_a_fixed_uniform_function_of_the_pixels():
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(400, 3, 8, 8, generator=gen)
    values = ImageHashNoise()(images)
    assert values.dtype == torch.float32 and values.shape == (400,)
    assert ((values >= 0) & (values < 1)).all()
    # uniform: mean 1/2, variance 1/12 (400 draws: 4 standard errors of slack)
    assert abs(values.mean().item() - 0.5) < 4 * (1 / 12 / 400) ** 0.5
    assert abs(values.var().item() - 1 / 12) < 0.02
    # the same image scores the same in any batch and order; a one-level change draws a new value
    again = ImageHashNoise()(images[[5, 3]])
    torch.testing.assert_close(again, values[[5, 3]], atol=0, rtol=0)
    nudged = images[:1].clone()
    nudged[0, 0, 0, 0] = (nudged[0, 0, 0, 0] * 255).round().add(1).remainder(256) / 255
    assert ImageHashNoise()(nudged).item() != values[0].item()
    # it ignores brightness: no correlation with the mean pixel
    brightness = images.mean(dim=(1, 2, 3))
    assert abs(torch.corrcoef(torch.stack([values, brightness]))[0, 1].item()) < 0.2
    assert not ImageHashNoise.differentiable


def test_saturation_contrast_colorfulness_of_known_images():
    grey, red = _solid((0.5, 0.5, 0.5)), _solid((1.0, 0.0, 0.0))
    half = _solid((0.8, 0.4, 0.4))
    sat = Saturation()(torch.cat([grey, red, half, _solid((0, 0, 0))]))
    torch.testing.assert_close(sat, torch.tensor([0.0, 1.0, 0.5, 0.0]), atol=1e-6, rtol=0)
    # Half black, half white: luma std = 0.5.
    checker = torch.zeros(1, 3, 16, 16)
    checker[..., :8] = 1.0
    contrast = Contrast()(torch.cat([grey, checker]))
    torch.testing.assert_close(contrast, torch.tensor([0.0, 0.5]), atol=1e-5, rtol=0)
    # Pure red: rg = 1, yb = 0.5, no spread -> 0.3 * sqrt(1.25).
    colour = Colorfulness()(torch.cat([grey, red]))
    torch.testing.assert_close(colour, torch.tensor([0.0, 0.3 * 1.25 ** 0.5]), atol=1e-5, rtol=0)


def test_jpeg_compressibility_flat_beats_noise_and_matches_file_size():
    flat = _solid((0.3, 0.6, 0.2), size=64)
    noise = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    reward = JpegCompressibility()
    values = reward(torch.cat([flat, noise]))
    assert values[0] > values[1]  # the flat image is more compressible
    assert float(values[1]) < -5.0  # 64x64 noise at q95 is several kB
    buffer = io.BytesIO()
    Image.fromarray((noise[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(
        buffer, format="JPEG", quality=95)
    assert float(values[1]) == pytest.approx(-buffer.tell() / 1000.0, abs=1e-4)
    assert not reward.differentiable and reward.name == "jpeg_compressibility"
    assert float(JpegCompressibility(sign=1.0)(noise)[0]) == pytest.approx(-float(values[1]), abs=1e-4)


def test_non_differentiable_reward_refuses_grad_input():
    images = torch.rand(2, 3, 8, 8, requires_grad=True)
    with pytest.raises(ValueError, match="jpeg_compressibility.*not differentiable"):
        JpegCompressibility()(images)
    assert JpegCompressibility()(images.detach()).shape == (2,)


@pytest.mark.parametrize("cls", [Brightness, Saturation, Contrast, Colorfulness])
def test_differentiable_statistics_give_finite_gradients_even_on_flat_images(cls):
    images = torch.cat([_solid((0.5, 0.5, 0.5)), torch.rand(1, 3, 16, 16)]).requires_grad_(True)
    cls()(images).sum().backward()
    assert torch.isfinite(images.grad).all()
    assert images.grad[1].abs().sum() > 0


@pytest.mark.parametrize("cls", [Brightness, Saturation, Contrast, Colorfulness])
def test_directional_derivative_matches_finite_differences_float64(cls):
    gen = torch.Generator().manual_seed(1)
    images = (0.1 + 0.8 * torch.rand(2, 3, 8, 8, generator=gen, dtype=torch.float64)).requires_grad_(True)
    direction = torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64)
    reward = cls()
    values = reward(images)
    assert values.dtype == torch.float64
    (grad,) = torch.autograd.grad(values.sum(), images)
    eps = 1e-6
    with torch.no_grad():
        fd = (reward(images + eps * direction) - reward(images - eps * direction)).sum() / (2 * eps)
    analytic = (grad * direction).sum()
    assert abs(float(analytic - fd)) <= 1e-4 * abs(float(fd)) + 1e-9


def test_uint8_and_pil_inputs_agree_with_float():
    arr = np.random.default_rng(0).integers(0, 256, size=(2, 12, 10, 3), dtype=np.uint8)
    as_uint8 = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
    as_float = as_uint8.float() / 255
    as_pil = [Image.fromarray(a) for a in arr]
    b = Brightness()
    torch.testing.assert_close(b(as_uint8), b(as_float))
    torch.testing.assert_close(b(as_pil), b(as_float))


def test_mixed_size_pil_list_is_scored_one_by_one():
    images = [Image.new("RGB", (8, 8), (255, 255, 255)), Image.new("RGB", (20, 12), (0, 0, 0))]
    torch.testing.assert_close(Brightness()(images), torch.tensor([1.0, 0.0]))


@pytest.mark.parametrize("bad, match", [
    (torch.full((2, 3, 4, 4), 0.5).index_put_((torch.tensor([1]),), torch.tensor(float("nan"))), r"images\[1\].*NaN"),
    (torch.full((2, 3, 4, 4), 0.5).index_put_((torch.tensor([0]),), torch.tensor(float("inf"))), r"images\[0\].*NaN or inf"),
    (torch.full((2, 3, 4, 4), 1.5), r"images\[0\].*outside \[0, 1\]"),
    (torch.full((2, 3, 4, 4), -0.2), r"outside \[0, 1\]"),
    (torch.rand(3, 4, 4), r"shape \(B, 3, H, W\)"),
    (torch.rand(2, 4, 4, 4), r"shape \(B, 3, H, W\)"),
    (torch.rand(2, 1, 4, 4), r"shape \(B, 3, H, W\)"),
])
def test_bad_images_raise_naming_the_culprit(bad, match):
    with pytest.raises(ValueError, match=match):
        Brightness()(bad)


def test_prompt_length_mismatch_and_types():
    images = torch.rand(3, 3, 4, 4)
    with pytest.raises(ValueError, match="prompts has 2 entries but the image batch has 3"):
        Brightness()(images, ["a", "b"])
    with pytest.raises(ValueError, match="single string"):
        Brightness()(images, "a cat")
    with pytest.raises(ValueError, match=r"prompts\[1\] must be a string"):
        Brightness()(images, ["a", 3, "c"])
    assert Brightness()(images, ["a", "b", "c"]).shape == (3,)


def test_empty_batch_returns_empty_float32():
    for reward in (Brightness(), JpegCompressibility(), Colorfulness()):
        out = reward(torch.zeros(0, 3, 8, 8))
        assert out.shape == (0,) and out.dtype == torch.float32
    assert Brightness()([]).shape == (0,)


class _Exploding(BaseReward):
    name = "exploding"

    def compute(self, images, prompts):
        values = images.mean(dim=(1, 2, 3))
        values[2] = float("nan")
        return values


def test_nan_reward_raises_floating_point_error_with_name_and_index():
    with pytest.raises(FloatingPointError, match=r"'exploding'.*batch index 2"):
        _Exploding()(torch.rand(4, 3, 4, 4))


def test_every_reward_satisfies_the_protocol():
    for reward in (Brightness(), Saturation(), Contrast(), Colorfulness(), JpegCompressibility()):
        assert isinstance(reward, Reward)
        assert isinstance(reward.name, str) and isinstance(reward.differentiable, bool)
