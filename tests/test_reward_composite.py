"""CompositeReward (weighted sums, z-scores, running state), load_reward's grammar, best_of_n."""

import json

import pytest
import torch

from reward import CompositeReward, best_of_n, load_reward
from reward.base import BaseReward
from reward.simple import Brightness, Contrast, JpegCompressibility, Saturation
from reward.spec import parse_term, split_terms


class Table(BaseReward):
    """A reward that returns fixed numbers (or the image means): known values for exact checks."""

    def __init__(self, values=None, name="table", differentiable=True):
        self.values, self.name, self.differentiable = values, name, differentiable

    def compute(self, images, prompts):
        if self.values is None:
            return images.mean(dim=(1, 2, 3))
        return torch.tensor(self.values[: images.shape[0]], dtype=torch.float64)


def _images(b=4):
    return torch.rand(b, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def test_weighted_sum_is_exact_and_components_are_raw():
    a, b = Table([1.0, 2.0, 3.0, 4.0], "a"), Table([10.0, 0.0, -10.0, 5.0], "b")
    comp = CompositeReward({"a": (a, 0.5), "b": (b, -2.0)})
    out = comp.components(_images())
    torch.testing.assert_close(out["a"], torch.tensor([1.0, 2.0, 3.0, 4.0]))
    torch.testing.assert_close(out["b"], torch.tensor([10.0, 0.0, -10.0, 5.0]))
    torch.testing.assert_close(out["total"], torch.tensor([-19.5, 1.0, 21.5, -8.0]))
    torch.testing.assert_close(comp(_images()), out["total"])
    assert set(out) == {"a", "b", "total"} and out["total"].dtype == torch.float32


def test_batch_zscore_standardises_each_component():
    comp = CompositeReward({"a": (Table([1.0, 2.0, 3.0, 4.0]), 1.0), "b": (Table([0.0, 0.0, 0.0, 10.0]), 2.0)},
                           normalize="batch_zscore")
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    b = torch.tensor([0.0, 0.0, 0.0, 10.0])
    expected = (a - a.mean()) / a.std(unbiased=False) + 2 * (b - b.mean()) / b.std(unbiased=False)
    torch.testing.assert_close(comp(_images()), expected)
    # A constant component contributes 0, not NaN.
    flat = CompositeReward({"c": (Table([3.0, 3.0, 3.0, 3.0]), 1.0)}, normalize="batch_zscore")
    torch.testing.assert_close(flat(_images()), torch.zeros(4))


def test_running_zscore_accumulates_and_state_round_trips():
    images = _images(2)
    first, second = [1.0, 3.0], [5.0, 7.0]
    table = Table(first)
    comp = CompositeReward({"t": (table, 1.0)}, normalize="running_zscore")
    torch.testing.assert_close(comp(images), torch.tensor([-1.0, 1.0]))  # mean 2, std 1
    table.values = second
    # Stats over [1, 3, 5, 7]: mean 4, population std sqrt(5).
    torch.testing.assert_close(comp(images), (torch.tensor(second) - 4.0) / 5 ** 0.5)
    state = comp.state_dict()
    assert state["stats"]["t"]["count"] == 4 and state["stats"]["t"]["mean"] == pytest.approx(4.0)
    restored = CompositeReward({"t": (Table([4.0, 4.0 + 5 ** 0.5]), 1.0)}, normalize="running_zscore").eval()
    with pytest.raises(RuntimeError, match="empty in eval mode"):
        restored(images)
    restored.load_state_dict(json.loads(json.dumps(state)))  # JSON-safe state
    torch.testing.assert_close(restored(images), torch.tensor([0.0, 1.0]))
    assert restored.state_dict() == state  # eval mode does not update
    with pytest.raises(ValueError, match="lacks statistics"):
        CompositeReward({"u": (Table(first), 1.0)}).load_state_dict(state)


def test_gradient_path_refuses_mixed_components_and_flows_otherwise():
    images = _images().requires_grad_(True)
    mixed = CompositeReward({"b": (Brightness(), 1.0), "jpeg": (JpegCompressibility(), 0.1)})
    assert not mixed.differentiable
    with pytest.raises(ValueError, match=r"non-differentiable components \['jpeg'\]"):
        mixed(images)
    assert mixed(images.detach()).shape == (4,)
    smooth = CompositeReward({"b": (Brightness(), 2.0), "s": (Saturation(), 1.0)})
    assert smooth.differentiable
    smooth(images).sum().backward()
    expected = torch.autograd.grad((2 * Brightness()(images) + Saturation()(images)).sum(), images)[0]
    torch.testing.assert_close(images.grad, expected)


def test_composite_nan_component_is_named():
    comp = CompositeReward({"ok": (Table([1.0, 2.0]), 1.0), "bad": (lambda im, p=None: torch.tensor([0.0, float("inf")]), 1.0)})
    with pytest.raises(FloatingPointError, match=r"'bad'.*batch index 1"):
        comp(_images(2))


def test_composite_bad_construction_and_inputs():
    with pytest.raises(ValueError, match="at least one"):
        CompositeReward({})
    with pytest.raises(ValueError, match="unknown normalize mode 'zscore'"):
        CompositeReward({"a": (Brightness(), 1.0)}, normalize="zscore")
    with pytest.raises(ValueError, match="'a' must be a \\(reward, weight\\) pair"):
        CompositeReward({"a": Brightness()})
    comp = CompositeReward({"a": (Brightness(), 1.0)})
    with pytest.raises(ValueError, match="prompts has 1 entries"):
        comp(_images(2), ["x"])
    with pytest.raises(ValueError, match=r"images\[0\].*NaN"):
        comp(torch.full((1, 3, 4, 4), float("nan")))
    empty = comp.components(torch.zeros(0, 3, 4, 4))
    assert empty["total"].shape == (0,) and empty["total"].dtype == torch.float32


@pytest.mark.parametrize("spec, expected", [
    ("artquant:runs/my-model.v2/x*0.8+jpeg_compressibility*0.2",
     [("artquant:runs/my-model.v2/x", 0.8), ("jpeg_compressibility", 0.2)]),
    ("brightness*1e+3 + saturation*-2.5E-1", [("brightness", 1000.0), ("saturation", -0.25)]),
    ("0.5*brightness+2*contrast", [("brightness", 0.5), ("contrast", 2.0)]),
    ("artquant:/data/a+b/c.d@composition*3", [("artquant:/data/a+b/c.d@composition", 3.0)]),
    ("artquant@composition", [("artquant@composition", 1.0)]),
    ("brightness*.5", [("brightness", 0.5)]),
])
def test_spec_grammar(spec, expected):
    assert [parse_term(t) for t in split_terms(spec)] == expected


def test_load_reward_simple_and_sums():
    assert isinstance(load_reward("brightness"), Brightness)
    assert load_reward("jpeg_compressibility").name == "jpeg_compressibility"
    comp = load_reward("brightness*2+contrast*1e-1+brightness*-1")
    assert isinstance(comp, CompositeReward)
    assert {k: w for k, (_, w) in comp.components_.items()} == {"brightness": 2.0, "contrast": 0.1,
                                                               "brightness_2": -1.0}
    images = _images()
    torch.testing.assert_close(comp(images), Brightness()(images) + 0.1 * Contrast()(images), atol=1e-6, rtol=0)
    assert isinstance(load_reward("brightness*3"), CompositeReward)
    assert load_reward("brightness+saturation", normalize="batch_zscore").normalize == "batch_zscore"


@pytest.mark.parametrize("spec, error, match", [
    ("brightnes", ValueError, r"unknown reward 'brightnes' \(did you mean brightness\?\).*known rewards: artquant, jpeg_compressibility"),
    ("", ValueError, "non-empty"),
    ("brightness+", ValueError, "empty term"),
    ("brightness:foo", ValueError, "takes no ':PATH'"),
    ("artquant:/no/such/scorer_dir", FileNotFoundError, "no scorer at '/no/such/scorer_dir'"),
    ("artquant:", ValueError, "needs a path"),
])
def test_load_reward_errors(spec, error, match):
    with pytest.raises(error, match=match):
        load_reward(spec)


def test_best_of_n_indices_on_known_rewards():
    images = _images(6)
    reward = Table([0.1, 0.9, 0.5, 0.3, 0.3, 0.2])
    result = best_of_n(images, ["cat"] * 6, reward, n=3)
    assert result.indices.tolist() == [1, 3]
    torch.testing.assert_close(result.scores, torch.tensor([0.1, 0.9, 0.5, 0.3, 0.3, 0.2]))
    torch.testing.assert_close(result.best_scores, torch.tensor([0.9, 0.3]))
    assert result.group_scores().shape == (2, 3) and result.components == {}
    # One prompt per group is expanded; ties go to the first candidate.
    tie = best_of_n(images, ["a", "b", "c"], Table([1.0, 1.0, 2.0, 2.0, 0.0, 0.0]), n=2)
    assert tie.indices.tolist() == [0, 2, 4] and tie.prompts == ["a", "a", "b", "b", "c", "c"]


def test_best_of_n_with_composite_keeps_components():
    images = _images(4)
    comp = CompositeReward({"a": (Table([1.0, 0.0, 0.0, 1.0]), 1.0), "b": (Table([0.0, 3.0, 1.0, 0.0]), 0.5)})
    result = best_of_n(images, None, comp, n=2)
    assert result.indices.tolist() == [1, 3]
    assert set(result.components) == {"a", "b", "total"}
    torch.testing.assert_close(result.scores, torch.tensor([1.0, 1.5, 0.5, 1.0]))


def test_best_of_n_errors():
    with pytest.raises(ValueError, match="5 images cannot be split into groups of n=2"):
        best_of_n(_images(5), None, Brightness(), 2)
    with pytest.raises(ValueError, match="prompts has 3 entries; expected 4 .* or 2"):
        best_of_n(_images(4), ["a", "b", "c"], Brightness(), 2)
    with pytest.raises(ValueError, match="positive integer"):
        best_of_n(_images(4), None, Brightness(), 0)
