"""Level scales and exact soft labels: property-based checks on APDD, Q-Align and random scales."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from artquant_core.levels import (APDD_SCALE, QALIGN_SCALE, LevelScale, default_spread,
                                  level_probs_to_score, level_probs_to_std, score_to_level_probs)

SETTINGS = settings(max_examples=60, deadline=None)


@st.composite
def scales(draw):
    kind = draw(st.sampled_from(["apdd", "qalign", "custom"]))
    if kind == "apdd":
        return APDD_SCALE
    if kind == "qalign":
        return QALIGN_SCALE
    n = draw(st.integers(2, 7))
    anchors = draw(st.lists(st.floats(-50, 50, allow_nan=False), min_size=n, max_size=n,
                            unique_by=lambda a: round(a, 1)).filter(lambda a: min(abs(x - y) for i, x in enumerate(a)
                                                                               for y in a[i + 1:]) > 0.05))
    order = draw(st.permutations(range(n)))  # anchors in any order, as a model's vocabulary might list them
    return LevelScale(tuple(f"w{i}" for i in range(n)), tuple(anchors[i] for i in order))


@st.composite
def scale_and_scores(draw):
    scale = draw(scales())
    fractions = draw(st.lists(st.one_of(st.floats(0, 1), st.sampled_from([0.0, 1.0, 1e-12, 1 - 1e-12, 1e-7])),
                              min_size=1, max_size=40))
    scores = np.clip(scale.min + np.array(fractions) * scale.range, scale.min, scale.max)
    return scale, scores


def _check_label(probs, scores, scale):
    assert probs.shape == (scores.size, len(scale))
    assert not np.isnan(probs).any()
    assert (probs >= 0).all()
    assert np.abs(probs.sum(axis=1) - 1).max() <= 1e-9
    assert np.abs(level_probs_to_score(probs, scale) - scores).max() <= 1e-6


@SETTINGS
@given(scale_and_scores(), st.sampled_from([None, 0.05, 0.3, 3.0]))
def test_expectation_exact_normalised_no_nan(data, relative_spread):
    scale, scores = data
    spread = None if relative_spread is None else relative_spread * scale.range
    _check_label(score_to_level_probs(scores, scale, spread=spread), scores, scale)


@SETTINGS
@given(scale_and_scores())
def test_monotone_first_order_stochastic_dominance(data):
    scale, scores = data
    scores = np.sort(scores)
    probs = score_to_level_probs(scores, scale)
    order = np.argsort(scale.anchors)  # low level -> high level
    cdf = np.cumsum(probs[:, order], axis=1)
    # A higher score never puts more mass at or below any level.
    assert (np.diff(cdf, axis=0) <= 1e-9).all()


@SETTINGS
@given(scale_and_scores(), st.integers(0, 2**31))
def test_per_record_std_like_deqa(data, seed):
    scale, scores = data
    std = np.random.default_rng(seed).uniform(0.01, 0.5, scores.size) * scale.range
    _check_label(score_to_level_probs(scores, scale, std=std), scores, scale)


@SETTINGS
@given(scale_and_scores())
def test_numpy_and_torch_agree(data):
    scale, scores = data
    np_probs = score_to_level_probs(scores, scale)
    t_probs = score_to_level_probs(torch.tensor(scores, dtype=torch.float64), scale)
    assert isinstance(t_probs, torch.Tensor) and t_probs.dtype == torch.float64
    np.testing.assert_array_equal(t_probs.numpy(), np_probs)
    t_score = level_probs_to_score(t_probs, scale)
    np.testing.assert_allclose(t_score.numpy(), level_probs_to_score(np_probs, scale), atol=1e-12)


def test_ends_are_one_hot_and_anchor_order_respected():
    probs = score_to_level_probs(np.array([10.0, 1.0]), APDD_SCALE)
    np.testing.assert_array_equal(probs, [[1, 0, 0, 0, 0], [0, 0, 0, 0, 1]])
    reversed_scale = LevelScale(APDD_SCALE.words[::-1], APDD_SCALE.anchors[::-1])
    np.testing.assert_array_equal(score_to_level_probs([10.0], reversed_scale), [[0, 0, 0, 0, 1]])


def test_default_spread_matches_reference_sigma_and_shape_is_gaussian():
    assert default_spread(APDD_SCALE) == 1.0
    assert default_spread(QALIGN_SCALE) == pytest.approx(4 / 9)
    # At a score where the Gaussian's mean can sit on the score, labels are exactly the
    # normalised densities: check the log-ratios are quadratic in the anchors with sigma 1.
    probs = score_to_level_probs(np.array([6.2]), APDD_SCALE)[0]
    anchors = np.array(APDD_SCALE.anchors)
    logp = np.log(probs)
    # log p_i = -(a_i - mu)^2 / 2 + c  =>  mu recovered from any two levels is the same.
    mus = [((logp[i] - logp[j]) + 0.5 * (anchors[i] ** 2 - anchors[j] ** 2)) / (anchors[i] - anchors[j])
           for i, j in [(0, 1), (1, 2), (2, 3), (3, 4), (0, 4)]]
    assert np.ptp(mus) < 1e-9
    assert level_probs_to_score(probs, APDD_SCALE) == pytest.approx(6.2, abs=1e-12)


def test_near_end_scores_tiny_mass_but_exact():
    scores = np.array([10 - 1e-15, 10 - 1e-9, 1 + 1e-15, 1 + 1e-9])
    probs = score_to_level_probs(scores, APDD_SCALE)
    _check_label(probs, scores, APDD_SCALE)
    assert probs[1, 0] > 1 - 1e-8 and probs[3, 4] > 1 - 1e-8


def test_dtypes_and_devices_round_trip():
    f32 = score_to_level_probs(torch.tensor([2.0, 9.0]), APDD_SCALE)
    assert f32.dtype == torch.float32 and f32.shape == (2, 5)
    assert score_to_level_probs(np.array([3, 4]), QALIGN_SCALE).dtype == np.float64
    assert score_to_level_probs(np.array([3.5], np.float32), QALIGN_SCALE).dtype == np.float32
    assert score_to_level_probs(3.0, QALIGN_SCALE).shape == (1, 5)
    assert score_to_level_probs(np.zeros(0) + 1, QALIGN_SCALE)[:0].shape == (0, 5)
    assert score_to_level_probs(np.zeros(0), QALIGN_SCALE).shape == (0, 5)


def test_out_of_range_and_nan_name_first_index():
    with pytest.raises(ValueError, match=r"scores\[2\] = 10.5 is outside the scale's range \[1, 10\]"):
        score_to_level_probs(np.array([1.0, 5.0, 10.5, 0.0]))
    with pytest.raises(ValueError, match=r"scores\[1\] = nan"):
        score_to_level_probs(torch.tensor([3.0, float("nan")]), QALIGN_SCALE)
    with pytest.raises(ValueError, match=r"scores\[0\] = 0.99"):
        score_to_level_probs([0.99, 5.1, 2])
    with pytest.raises(ValueError, match=r"std\[1\] = -1.0 must be positive"):
        score_to_level_probs([2.0, 3.0], QALIGN_SCALE, std=[0.5, -1.0])
    with pytest.raises(ValueError, match=r"one value per score \(2\), got shape \(3,\)"):
        score_to_level_probs([2.0, 3.0], QALIGN_SCALE, std=[0.5, 1.0, 2.0])
    np.testing.assert_allclose(score_to_level_probs([2.0, 3.0], QALIGN_SCALE, std=0.7),
                               score_to_level_probs([2.0, 3.0], QALIGN_SCALE, spread=0.7))
    with pytest.raises(ValueError, match="spread must be a positive"):
        score_to_level_probs([2.0], QALIGN_SCALE, spread=0.0)
    with pytest.raises(ValueError, match=r"must be 1-D"):
        score_to_level_probs(np.ones((2, 2)) * 3)


def test_level_scale_validation_and_properties():
    assert (APDD_SCALE.min, APDD_SCALE.max, APDD_SCALE.range, len(APDD_SCALE)) == (1.0, 10.0, 9.0, 5)
    assert APDD_SCALE.words == ("excellent", "good", "fair", "poor", "bad")
    assert QALIGN_SCALE.anchors == (5.0, 4.0, 3.0, 2.0, 1.0)
    with pytest.raises(ValueError, match="2 words but 3 anchors"):
        LevelScale(("a", "b"), (1, 2, 3))
    with pytest.raises(ValueError, match="at least 2 levels"):
        LevelScale(("a",), (1,))
    with pytest.raises(ValueError, match="anchors must be distinct"):
        LevelScale(("a", "b"), (1, 1))
    with pytest.raises(ValueError, match="words must be distinct"):
        LevelScale(("a", "a"), (1, 2))
    with pytest.raises(ValueError, match="finite"):
        LevelScale(("a", "b"), (1, float("inf")))
    with pytest.raises(AttributeError):
        APDD_SCALE.anchors = (1, 2)  # frozen


def test_probs_to_score_and_std_torch_differentiable():
    probs = torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0], [0.5, 0.0, 0.0, 0.0, 0.5]], dtype=torch.float64,
                         requires_grad=True)
    score = level_probs_to_score(probs, APDD_SCALE)
    std = level_probs_to_std(probs, APDD_SCALE)
    assert score.tolist() == [5.0, 5.5] and std.tolist() == [0.0, 4.5]
    (score.sum() + std.sum()).backward()
    assert torch.isfinite(probs.grad).all()
    np.testing.assert_allclose(level_probs_to_std(probs.detach().numpy(), APDD_SCALE), [0.0, 4.5])
    with pytest.raises(ValueError, match="must have 5 columns"):
        level_probs_to_score(np.ones((2, 4)) / 4, APDD_SCALE)


def test_one_rule_for_score_and_spread_everywhere():
    """Scorer read-out, training loss and level_probs_to_std agree, zero variance included (spread 0, finite grad)."""
    import torch

    from artquant_core.levels import expected_score_and_spread, level_probs_to_std
    from artquant_core.training.losses import expected_score

    anchors = torch.tensor(APDD_SCALE.anchors, dtype=torch.float64)
    probs = torch.tensor([[0, 0, 1.0, 0, 0], [0.1, 0.2, 0.4, 0.2, 0.1]], dtype=torch.float64, requires_grad=True)
    mu, spread = expected_score_and_spread(probs, anchors)
    assert spread[0].item() == 0.0 and mu[0].item() == APDD_SCALE.anchors[2]
    spread.sum().backward()
    assert torch.isfinite(probs.grad).all()
    for other in (expected_score(probs, anchors), (mu, level_probs_to_std(probs, APDD_SCALE))):
        torch.testing.assert_close(other[0], mu)
        torch.testing.assert_close(other[1], spread)
    numpy_spread = level_probs_to_std(probs.detach().numpy(), APDD_SCALE)
    assert abs(numpy_spread[1] - spread[1].item()) < 1e-12 and numpy_spread[0] == 0.0
