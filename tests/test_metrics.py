"""evaluate_scores against scipy, the logistic fit, the scatter plot and ``artquant eval --pred``."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import pearsonr, spearmanr

from artquant_core.metrics import evaluate_scores, logistic4
from artquant_core.scatter import plot_score_scatter
from alignment.cli import main as cli


@pytest.fixture
def noisy_pairs():
    rng = np.random.default_rng(0)
    gt = rng.uniform(1, 10, 200)
    u = (gt - 0.5) / 10  # gt = 10.5 / (1 + exp(-(pred - 5) / 2)) + 0.5 before noise: exactly logistic
    pred = 5 + 2 * np.log(u / (1 - u)) + rng.normal(0, 0.2, gt.size)
    return pred, gt


def test_equals_scipy_and_logistic_improves_plcc(noisy_pairs):
    pred, gt = noisy_pairs
    m = evaluate_scores(pred, gt)
    assert abs(m["srcc"] - spearmanr(pred, gt).statistic) <= 1e-9
    assert abs(m["plcc"] - pearsonr(pred, gt).statistic) <= 1e-9
    assert m["mse"] == pytest.approx(np.mean((pred - gt) ** 2), abs=1e-12)
    assert m["mae"] == pytest.approx(np.mean(np.abs(pred - gt)), abs=1e-12)
    assert m["n"] == 200 and m["logistic_fit_ok"]
    assert m["plcc_logistic"] > m["plcc"] + 0.005
    np.testing.assert_allclose(m["logistic_params"], [10.5, 0.5, 5.0, 2.0], atol=0.15)  # recovered
    fitted = logistic4(pred, *m["logistic_params"])
    assert abs(m["plcc_logistic"] - pearsonr(fitted, gt).statistic) <= 1e-12
    assert np.abs(fitted - gt).mean() < np.abs(pred - gt).mean()   # mapped onto the gt scale


def test_negative_correlation_and_torch_input():
    gt = np.linspace(1, 10, 50)
    pred = torch.tensor(-gt ** 1.5, dtype=torch.float32)
    m = evaluate_scores(pred, gt)
    assert m["srcc"] == pytest.approx(-1.0)
    assert m["plcc_logistic"] < -0.99 and m["logistic_fit_ok"]   # sign follows the fitted curve


def test_fit_failure_falls_back_to_plain_plcc():
    # Three points: the 4-parameter fit is degenerate or exact; either way a finite PLCC is reported.
    m = evaluate_scores([1.0, 2.0, 3.0], [1.0, 3.0, 2.0])
    assert m["srcc"] == pytest.approx(0.5) and m["plcc"] == pytest.approx(0.5)
    assert np.isfinite(m["plcc_logistic"])
    if not m["logistic_fit_ok"]:
        assert m["plcc_logistic"] == m["plcc"] and m["logistic_params"] is None


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="pred has 3 values but gt has 4"):
        evaluate_scores([1, 2, 3], [1, 2, 3, 4])
    with pytest.raises(ValueError, match=r"gt\[1\] is nan"):
        evaluate_scores([1, 2, 3], [1, float("nan"), 3])
    with pytest.raises(ValueError, match=r"pred\[2\] is inf"):
        evaluate_scores([1, 2, float("inf")], [1, 2, 3])
    with pytest.raises(ValueError, match="need at least 3 items to compute correlations, got 2"):
        evaluate_scores([1, 2], [1, 2])
    with pytest.raises(ValueError, match="pred is constant"):
        evaluate_scores([5, 5, 5], [1, 2, 3])
    with pytest.raises(ValueError, match="gt is constant"):
        evaluate_scores([1, 2, 3], [4, 4, 4])


def test_scatter_png(tmp_path, noisy_pairs):
    pred, gt = noisy_pairs
    path = plot_score_scatter(pred, gt, tmp_path / "s" / "scatter.png", title="test")
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (520, 500)
        assert np.asarray(img.convert("L")).std() > 5   # something was drawn


def _records(folder, n=12, seed=1):
    rng = np.random.default_rng(seed)
    conv = [{"from": "human", "value": "<image>Rate it."}, {"from": "gpt", "value": "It is fair."}]
    rows, gt = [], {}
    for i in range(n):
        gt[f"r{i}"] = float(np.round(rng.uniform(1, 10), 3))
        rows.append({"id": f"r{i}", "image": f"img/{i}.png", "gt_score": gt[f"r{i}"], "conversations": conv})
        rows.append({"id": f"r{i}", "image": f"img/{i}.png", "task_type": "description",
                     "conversations": [conv[0], {"from": "gpt", "value": "Perception: calm."}]})
    (folder / "records.json").write_text(json.dumps(rows))
    return folder / "records.json", gt


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_eval_command_on_predictions(tmp_path, capsys, fmt):
    records, gt = _records(tmp_path)
    pred = {k: v * 0.5 + 1 + (0.3 if i % 3 == 0 else 0) for i, (k, v) in enumerate(gt.items())}
    pred["unrelated"] = 3.0
    path = tmp_path / f"pred.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps([{"id": k, "score": v} for k, v in pred.items()]))
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps({"id": k, "score": v}) + "\n" for k, v in pred.items()))
    else:
        path.write_text("id,score\n" + "".join(f"{k},{v}\n" for k, v in pred.items()))
    assert cli(["eval", "--pred", str(path), "--gt", str(records), "--out", str(tmp_path / "out")]) == 0
    printed = json.loads(capsys.readouterr().out)
    ids = list(gt)
    expected = spearmanr([pred[i] for i in ids], [gt[i] for i in ids]).statistic
    assert printed["n"] == 12 and abs(printed["srcc"] - expected) <= 1e-9
    assert json.loads((tmp_path / "out" / "metrics.json").read_text()) == printed
    assert (tmp_path / "out" / "scatter.png").stat().st_size > 1000


def test_eval_command_errors(tmp_path, capsys):
    records, gt = _records(tmp_path)
    path = tmp_path / "pred.jsonl"
    path.write_text("".join(json.dumps({"id": k, "score": v}) + "\n" for k, v in list(gt.items())[:-2]))
    assert cli(["eval", "--pred", str(path), "--gt", str(records), "--out", str(tmp_path / "o")]) == 1
    assert "no prediction for 2 of 12 score records: 'r10', 'r11'" in capsys.readouterr().err
    path.write_text(json.dumps([{"id": "r0", "score": "high"}]))
    assert cli(["eval", "--pred", str(path), "--gt", str(records), "--out", str(tmp_path / "o")]) == 1
    assert "prediction 0 (id 'r0'): score 'high' is not a finite number" in capsys.readouterr().err
    assert cli(["eval", "--gt", str(records)]) == 2  # a usage error: the command line is incomplete
    assert "exactly one of --pred FILE or --model PATH" in capsys.readouterr().err


def test_eval_command_model_hook_scores_images_in_batches(tmp_path, capsys, monkeypatch):
    """The --model path: loads the scorer lazily and scores the records' images in batches.

    A stand-in scorer module (mean brightness as the score) keeps this test independent of the
    real model; the real scorer is exercised by the scorer's own tests.
    """
    import sys
    import types

    from artquant_core.levels import APDD_SCALE

    records, gt = _records(tmp_path)
    (tmp_path / "img").mkdir()
    for i, value in enumerate(gt.values()):
        Image.new("RGB", (8, 8), (int(value * 20),) * 3).save(tmp_path / "img" / f"{i}.png")
    calls = []

    class FakeScorer:
        @classmethod
        def from_pretrained(cls, path):
            calls.append(("load", path))
            return cls()

        def to(self, device):
            return self

        def eval(self):
            return self

        def score(self, images, aspect=None):
            calls.append(("score", len(images), aspect))
            batch = torch.stack([torch.from_numpy(np.asarray(im, dtype=np.float32)).mean() for im in images])
            return types.SimpleNamespace(score=1 + 9 * batch / 255, level_probs=None, std=None)

    monkeypatch.setitem(sys.modules, "artquant_core.scorer", types.SimpleNamespace(ArtQuantScorer=FakeScorer))
    out = tmp_path / "model_out"
    assert cli(["eval", "--model", "m/", "--data", str(records), "--out", str(out), "--batch-size", "5",
                "--aspect", "colour"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert calls[0] == ("load", "m/") and [c[1] for c in calls[1:]] == [5, 5, 2]
    assert calls[1][2] == "colour"
    assert metrics["n"] == 12 and metrics["srcc"] == pytest.approx(1.0)
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == list(gt) and APDD_SCALE.min <= rows[0]["score"] <= APDD_SCALE.max
