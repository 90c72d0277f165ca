import json

import numpy as np
import pytest

from alignment import PerPromptStatTracker


def test_falls_back_to_batch_statistics_until_min_count():
    tr = PerPromptStatTracker(buffer_size=4, min_count=3)
    r = np.array([1.0, 2.0, 3.0, 10.0])
    adv = tr.update(["a", "a", "b", "b"], r)
    np.testing.assert_allclose(adv, (r - r.mean()) / (r.std() + 1e-6))
    adv = tr.update(["a", "b"], np.array([3.0, 5.0]))  # a has 3 now -> per-prompt stats
    buf_a = np.array([1.0, 2.0, 3.0])
    assert adv[0] == pytest.approx((3.0 - buf_a.mean()) / (buf_a.std() + 1e-6))
    buf_b = np.array([3.0, 10.0, 5.0])
    assert adv[1] == pytest.approx((5.0 - buf_b.mean()) / (buf_b.std() + 1e-6))


def test_buffer_is_bounded_and_state_round_trips_through_json():
    tr = PerPromptStatTracker(buffer_size=2, min_count=1)
    tr.update(["a"] * 3, np.array([1.0, 2.0, 3.0]))
    assert list(tr.buffers["a"]) == [2.0, 3.0]
    state = json.loads(json.dumps(tr.state_dict()))
    tr2 = PerPromptStatTracker()
    tr2.load_state_dict(state)
    x = np.array([4.0, 0.0])
    np.testing.assert_allclose(tr.update(["a", "c"], x), tr2.update(["a", "c"], x))


def test_bad_arguments():
    with pytest.raises(ValueError):
        PerPromptStatTracker(buffer_size=0)
    with pytest.raises(ValueError, match="2 prompts for 3"):
        PerPromptStatTracker().update(["a", "b"], np.zeros(3))


def test_group_advantages_normalise_each_group_by_its_own_mean_and_std():
    from alignment.stat_tracking import group_advantages

    # group "a": 1, 3 -> mean 2, std 1; group "b": 2, 4, 9 -> mean 5, std sqrt(26/3); group "c": all equal
    r = np.array([1.0, 2.0, 3.0, 4.0, 0.1, 9.0, 0.1, 0.1])
    ids = ["a", "b", "a", "b", "c", "b", "c", "c"]
    adv = group_advantages(r, ids)
    std_b = np.sqrt(((2 - 5) ** 2 + (4 - 5) ** 2 + (9 - 5) ** 2) / 3)
    np.testing.assert_allclose(adv[[0, 2]], [-1 / (1 + 1e-6), 1 / (1 + 1e-6)])
    np.testing.assert_allclose(adv[[1, 3, 5]], np.array([-3.0, -1.0, 4.0]) / (std_b + 1e-6))
    assert np.isfinite(adv).all() and np.abs(adv[[4, 6, 7]]).max() < 1e-9  # identical rewards: 0, not NaN
    assert adv.dtype == np.float64 and group_advantages(r, ids, eps=1.0)[0] == pytest.approx(-0.5)
    with pytest.raises(ValueError, match="2 group ids for 3"):
        group_advantages(np.zeros(3), ["a", "b"])


def test_group_advantages_equal_a_tracker_cleared_every_epoch_bit_for_bit():
    """Flow-GRPO's advantages before group_advantages: a tracker of unbounded buffers, min_count 1, cleared."""
    from alignment.stat_tracking import group_advantages

    rng = np.random.default_rng(0)
    rewards = rng.normal(size=64).astype(np.float32)  # gathered rewards are float32
    prompts = [f"prompt {i}" for i in rng.integers(0, 6, size=64)]
    tracker = PerPromptStatTracker(buffer_size=10 ** 9, min_count=1)
    assert np.array_equal(group_advantages(rewards, prompts), tracker.update(prompts, rewards))
