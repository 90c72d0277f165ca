"""Per-image evaluation scores and the paired change between two evaluations."""

import json
import math
import subprocess
import sys

import pytest

from alignment.eval_scores import compare_evaluations, paired_change, save_eval_scores


def test_paired_change_numbers():
    before, after = [0.1, 0.2, 0.3, 0.4], [0.2, 0.25, 0.5, 0.4]
    r = paired_change(before, after)
    diffs = [0.1, 0.05, 0.2, 0.0]
    mean = sum(diffs) / 4
    se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 3 / 4)
    assert r["change"] == pytest.approx(mean) and r["se"] == pytest.approx(se)
    assert r["z"] == pytest.approx(mean / se) and r["improved_fraction"] == 0.75
    assert r["before"] == pytest.approx(0.25) and r["after"] == pytest.approx(0.3375)
    # a shift shared by every image has no spread: infinitely sure, with its sign
    assert paired_change([1.0, 2.0], [0.5, 1.5])["z"] == -math.inf
    with pytest.raises(ValueError, match="equally long"):
        paired_change([1.0, 2.0], [1.0])


def test_compare_first_and_last_evaluation(tmp_path):
    prompts = ["a", "a", "b"]
    save_eval_scores(tmp_path, 0, prompts, {"r": [0.1, 0.2, 0.3], "watch": [1.0, 1.0, 1.0]})
    save_eval_scores(tmp_path, 5, prompts, {"r": [0.15, 0.2, 0.35], "watch": [0.9, 1.0, 0.8]})
    save_eval_scores(tmp_path, 10, prompts, {"r": [0.3, 0.3, 0.4], "watch": [0.5, 0.5, 0.5]})
    result = compare_evaluations(tmp_path)
    assert (result["first"], result["last"]) == (0, 10)
    assert result["rewards"]["r"]["change"] == pytest.approx(0.4 / 3)
    assert result["rewards"]["watch"]["change"] == pytest.approx(-0.5)
    assert compare_evaluations(tmp_path, first=0, last=5)["rewards"]["r"]["change"] == pytest.approx(0.1 / 3)
    out = subprocess.run([sys.executable, "-m", "alignment.eval_scores", str(tmp_path), "--last", "5"],
                         capture_output=True, text=True, check=True).stdout
    assert "epoch 0 → 5" in out and "r: 0.2000 → 0.2333, change +0.0333" in out


def test_bad_files_and_mismatches_are_named(tmp_path):
    with pytest.raises(ValueError, match="3 scores for 2 images"):
        save_eval_scores(tmp_path, 0, ["a", "b"], {"r": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match="fewer than two evaluations"):
        compare_evaluations(tmp_path)
    save_eval_scores(tmp_path, 0, ["a", "b"], {"r": [1.0, 2.0]})
    save_eval_scores(tmp_path, 1, ["a", "c"], {"r": [1.0, 2.0]})
    with pytest.raises(ValueError, match="different prompts"):
        compare_evaluations(tmp_path)
    (tmp_path / "eval" / "epoch_0001.json").write_text(json.dumps({"prompts": []}))
    with pytest.raises(ValueError, match="epoch_0001.json: not an evaluation scores file"):
        compare_evaluations(tmp_path)


def test_held_out_changes_flag_reward_hacking_only_when_the_judge_falls(tmp_path):
    from alignment.eval_scores import hacking_note, held_out_changes

    prompts = [f"p{i}" for i in range(8)]
    base = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    rise = [b + 0.1 + 0.01 * (i % 2) for i, b in enumerate(base)]
    fall = [b - 0.1 - 0.01 * (i % 3) for i, b in enumerate(base)]
    save_eval_scores(tmp_path, 0, prompts, {"artquant": base, "judge": base, "brightness": base})
    assert held_out_changes(tmp_path, 0, "artquant", ["judge"]) == {}  # nothing to compare with yet
    save_eval_scores(tmp_path, 5, prompts, {"artquant": rise, "judge": rise, "brightness": fall})
    honest = held_out_changes(tmp_path, 5, "artquant", ["judge", "brightness"])
    assert honest["reward_hacking"] == 0.0  # brightness falling is no judge falling
    assert abs(honest["eval_artquant_change"] - 0.105) < 1e-9 and honest["eval_brightness_change"] < -0.1
    save_eval_scores(tmp_path, 10, prompts, {"artquant": rise, "judge": fall, "brightness": base})
    hacked = held_out_changes(tmp_path, 10, "artquant", ["judge", "brightness"])
    assert hacked["reward_hacking"] == 1.0 and hacked["eval_judge_change"] < 0
    assert "from epoch 10 " in hacking_note([{"epoch": 5, "reward_hacking": 0.0}, {"epoch": 10, **hacked}])
    # a flag that came and went is named as such, not as lasting from its first epoch
    came_and_went = [{"epoch": 4, "reward_hacking": 0.0}, {"epoch": 8, **hacked}, {"epoch": 12, "reward_hacking": 0.0}]
    assert "at epoch 8, clear at 12 (" in hacking_note(came_and_went)
    assert "at epochs 8, 16 (" in hacking_note(came_and_went + [{"epoch": 16, **hacked}])
    # rows without an evaluation (training rows) do not break a run of flags
    assert "from epoch 8 " in hacking_note([{"epoch": 8, **hacked}, {"epoch": 9, "loss": 0.1}, {"epoch": 12, **hacked}])
    assert hacking_note([{"epoch": 5, **honest}]) == ""
    # without a judge among the watched rewards there is no verdict at all
    assert "reward_hacking" not in held_out_changes(tmp_path, 10, "artquant", ["brightness"])
