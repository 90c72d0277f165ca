"""scripts/ablate_descriptions: arm planning, the spread statistics and a tiny end-to-end run with curves."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from scripts.ablate_descriptions import (
    ARM_KINDS,
    main,
    parse_list,
    plan_arms,
    spread,
    srcc_standard_error,
    summarise,
)
from tests._training_fixtures import make_setup


def test_equal_score_arms_run_long_enough_to_see_as_many_score_examples():
    pool = {"score": 100, "description": 100}
    arms = {a.name: a for a in plan_arms(ARM_KINDS, 30, 1.0, [0.25, 4.0], pool)}
    assert set(arms) == {"score_only", "joint_equal_steps", "joint_equal_score_w0.25", "joint_equal_score_w4"}
    assert arms["joint_equal_steps"].max_steps == 30 and arms["joint_equal_score_w4"].max_steps == 60
    assert arms["joint_equal_score_w4"].description_weight == 4.0
    seen = {name: arm.score_examples(arm.max_steps, 8) for name, arm in arms.items()}
    assert seen["joint_equal_steps"] == seen["score_only"] / 2
    assert seen["joint_equal_score_w0.25"] == seen["score_only"] == 240
    # one description per three records: the joint pool is 3/4 score examples
    assert plan_arms(["joint_equal_score"], 30, 1.0, [1.0], {"score": 300, "description": 100})[0].max_steps == 40


def test_bad_arguments_are_refused_by_name():
    with pytest.raises(ValueError, match="--arms"):
        plan_arms(["joint"], 30, 1.0, [1.0], {"score": 1, "description": 1})
    with pytest.raises(ValueError, match="description records"):
        plan_arms(["joint_equal_steps"], 30, 1.0, [1.0], {"score": 1, "description": 0})
    with pytest.raises(ValueError, match="--seeds"):
        parse_list("0,one", int, "--seeds")
    with pytest.raises(ValueError, match="--description_weights"):
        parse_list(" , ", float, "--description_weights")


def test_spread_and_srcc_standard_error():
    stats = spread([0.6, 0.7, 0.8])
    assert stats["mean"] == pytest.approx(0.7) and stats["std"] == pytest.approx(0.1)
    assert (stats["min"], stats["max"], stats["n"]) == (0.6, 0.8, 3)
    assert spread([0.5])["std"] == 0.0
    assert srcc_standard_error(0.0, 503) == pytest.approx(math.sqrt(1 / 500))
    assert srcc_standard_error(0.7, 500) < srcc_standard_error(0.0, 500)  # tighter near |r| = 1
    assert 0.02 < srcc_standard_error(0.7, 500) < 0.03


def test_summary_pairs_seeds_and_keeps_the_steps_every_seed_reached():
    arms = plan_arms(["score_only", "joint_equal_steps"], 2, 1.0, [1.0], {"score": 10, "description": 10})

    def run(srcc: list[float]) -> dict:
        return {"steps": [1, 2][:len(srcc)], "srcc": srcc, "final": {"eval_srcc": srcc[-1]}, "wall_s": 1.0}

    runs = {"score_only": {"0": run([0.1, 0.5]), "1": run([0.2, 0.7])},
            "joint_equal_steps": {"0": run([0.3, 0.4]), "1": run([0.4])}}
    summary = summarise(arms, runs, batch_size=4, n_eval=500)
    assert summary["score_only"]["final_srcc"]["mean"] == pytest.approx(0.6)
    assert [p["step"] for p in summary["joint_equal_steps"]["curve"]] == [1]  # seed 1 stopped at step 1
    # paired by seed: (0.4 - 0.5) and (0.4 - 0.7)
    assert summary["joint_equal_steps"]["minus_score_only"]["mean"] == pytest.approx(-0.2)
    assert summary["joint_equal_steps"]["score_examples"] == summary["score_only"]["score_examples"] / 2 == 4


def test_tiny_ablation_writes_curves_summary_and_plot_and_reuses_finished_runs(tmp_path, capsys):
    setup = make_setup(tmp_path)
    data = Path(setup["data"])
    # the 24-painting draw's test split has 2 paintings, too few for an SRCC: validate on the training ones
    (data / "test.json").write_text((data / "train.json").read_text())
    out = tmp_path / "ablation"
    argv = ["--data", setup["data"], "--out", str(out), "--model", setup["base"], "--seeds", "3",
            "--arms", "score_only,joint_equal_score", "--description_weights", "2", "--max_steps", "2",
            "--batch_size", "4", "--eval_every", "1", "--max_train_samples", "16", "--max_eval_samples", "12"]
    assert main(argv) == 0
    report = json.loads((out / "ablation.json").read_text())
    assert (out / "ablation_curves.png").stat().st_size > 0
    assert report["settings"]["pool"] == {"score": 8, "description": 8}  # one description per painting
    runs = report["runs"]
    assert set(runs) == {"score_only", "joint_equal_score_w2"} and set(runs["score_only"]) == {"3"}
    assert runs["score_only"]["3"]["steps"] == [1, 2]  # the trainer's own validation, every step
    joint = runs["joint_equal_score_w2"]["3"]
    assert joint["steps"] == [1, 2, 3, 4] and joint["score_examples"][-1] == 8  # = score_only's 2 x 4
    assert joint["srcc"][-1] == joint["final"]["eval_srcc"]
    assert report["summary"]["joint_equal_score_w2"]["final_srcc"]["n"] == 1
    capsys.readouterr()
    assert main(argv) == 0
    assert capsys.readouterr().out.count("reusing") == 2
    assert json.loads((out / "ablation.json").read_text())["runs"] == runs
