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
