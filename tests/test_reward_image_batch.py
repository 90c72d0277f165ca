"""One validation per call on the reward path: an ImageBatch travels from the composite to the scorer.

A reward inside a ``CompositeReward`` must give exactly what it gives alone — for
float, uint8 and PIL inputs (the 8-bit fact reaches the scorer either way) — and
the images are validated once, however many rewards score them.
"""

import numpy as np
import pytest
import torch
from PIL import Image

import artquant_core.images as images_module
from reward import ArtQuantReward, CompositeReward
from reward.simple import Brightness, JpegCompressibility
from tests._scorer_helpers import FAMILIES


@pytest.fixture(scope="module", params=FAMILIES)
def reward(request):
    from artquant_core.tiny import build_tiny_scorer

    return ArtQuantReward(build_tiny_scorer(seed=0, pretrained=False, family=request.param), max_batch=2)


def _uint8(b=3, h=48, w=64, seed=0):
    return torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _inputs():
    """The same three pictures as float, uint8 and PIL, plus a PIL list of mixed sizes."""
    u8 = _uint8()
    pil = [Image.fromarray(a) for a in u8.permute(0, 2, 3, 1).numpy()]
    return {"float": torch.rand(3, 3, 48, 64, generator=torch.Generator().manual_seed(1)), "uint8": u8,
            "pil": pil, "pil_mixed_sizes": [pil[0], pil[1].resize((40, 40)), pil[2]]}


@pytest.mark.parametrize("kind", ["float", "uint8", "pil", "pil_mixed_sizes"])
def test_artquant_reward_in_a_composite_equals_it_alone(reward, kind):
    images = _inputs()[kind]
    alone = reward(images)
    composite = CompositeReward({"artquant": (reward, 1.0), "bright": (Brightness(), 0.5)})
    assert torch.equal(composite.components(images)["artquant"], alone)
    assert torch.equal(CompositeReward({"artquant": (reward, 1.0)})(images), alone)
    nested = CompositeReward({"inner": (CompositeReward({"artquant": (reward, 1.0)}), 1.0)})
    assert torch.equal(nested(images), alone)


def test_8bit_inputs_score_as_8bit_in_a_composite(reward):
    """uint8 and PIL give the scorer's 8-bit result; the same pixels as floats are a different (float) path."""
    inputs = _inputs()
    composite = CompositeReward({"artquant": (reward, 1.0), "bright": (Brightness(), 0.5)})
    expected = reward._map(reward.scorer.score(inputs["pil"]).score)
    torch.testing.assert_close(composite.components(inputs["uint8"])["artquant"], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(composite.components(inputs["pil"])["artquant"], expected, atol=1e-6, rtol=0)


@pytest.fixture
def validations(monkeypatch):
    """Counts the validating passes: one over a tensor batch, or one over a list's items."""
    counts = {"tensor": 0, "list": 0}
    tensor_batch, validated_items = images_module._tensor_batch, images_module._validated_items

    def count_tensor(*args, **kwargs):
        counts["tensor"] += 1
        return tensor_batch(*args, **kwargs)

    def count_list(*args, **kwargs):
        counts["list"] += 1
        return validated_items(*args, **kwargs)

    monkeypatch.setattr(images_module, "_tensor_batch", count_tensor)
    monkeypatch.setattr(images_module, "_validated_items", count_list)
    return counts


@pytest.mark.parametrize("kind, expected", [("float", {"tensor": 1, "list": 0}),
                                            ("uint8", {"tensor": 1, "list": 0}),
                                            ("pil", {"tensor": 0, "list": 1})])
def test_a_composite_of_three_rewards_validates_once(reward, validations, kind, expected):
    images = _inputs()[kind]
    composite = CompositeReward({"artquant": (reward, 1.0), "bright": (Brightness(), 0.5),
                                 "jpeg": (JpegCompressibility(), 0.1)})
    assert composite(images).shape == (3,)
    assert validations == expected


def test_plain_callables_in_a_composite_get_the_images_as_given():
    seen = []

    def plain(images, prompts=None):
        seen.append(images)
        return torch.zeros(len(images))

    u8 = _uint8(2, 8, 8)
    CompositeReward({"plain": (plain, 1.0), "bright": (Brightness(), 1.0)})(u8)
    assert seen[0] is u8


def test_scorer_takes_an_image_batch_without_revalidating(reward, validations):
    batch = images_module.image_batch(_inputs()["uint8"])
    assert validations == {"tensor": 1, "list": 0}
    scored = reward.scorer.score(batch, batch_size=2).score
    assert validations == {"tensor": 1, "list": 0}
    assert torch.equal(scored, reward.scorer.score(_inputs()["uint8"], batch_size=2).score)
    assert np.isfinite(scored.numpy()).all()
