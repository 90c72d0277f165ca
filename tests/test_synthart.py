"""SynthArt: determinism, record format, score formula, descriptions, ceiling, pixel baseline, CLI."""

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.stats import spearmanr

from artquant_core import prompts
from artquant_core.baseline import (fit_pixel_baseline, pixel_baseline_srcc, pixel_baselines_srcc, pixel_features,
                                    thumbnail_features)
from artquant_core.levels import APDD_SCALE, level_probs_to_score
from artquant_core.records import load_records
from artquant_core.synthart import SCORE_NAMES, make_synthart, synthart_corpus
from artquant_core.synthart.attributes import derive_qualities, noiseless_scores, sample_latent
from artquant_core.synthart.dataset import synth_item
from artquant_core.synthart.descriptions import NEGATIVE_WORDS, POSITIVE_WORDS, polarity, where
from artquant_core.synthart.painter import render

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("sa") / "set"
    return Path(make_synthart(out, 40, seed=3))


def test_deterministic_per_seed_and_different_across_seeds(small, tmp_path):
    again = Path(make_synthart(tmp_path / "again", 40, seed=3))
    assert again.read_bytes() == small.read_bytes()
    for i in (0, 17, 39):
        name = f"images/{i:06d}.png"
        assert (again.parent / name).read_bytes() == (small.parent / name).read_bytes()
    other = Path(make_synthart(tmp_path / "other", 40, seed=4))
    a, b = json.loads(small.read_text()), json.loads(other.read_text())
    assert [r.get("gt_score") for r in a] != [r.get("gt_score") for r in b]
    assert (other.parent / "images/000000.png").read_bytes() != (small.parent / "images/000000.png").read_bytes()


def test_records_load_and_follow_the_format(small):
    records = load_records(small)
    assert len(records) == 80
    score = [r for r in records if r.task_type == "score"]
    desc = [r for r in records if r.task_type == "description"]
    assert len(score) == len(desc) == 40
    anchors = np.array(APDD_SCALE.anchors)
    for r in score:
        assert 1.0 <= r.gt_score <= 10.0
        assert set(r.attributes) == set(SCORE_NAMES)
        assert all(1.0 <= v <= 10.0 for v in r.attributes.values())
        assert r.attributes["overall"] == r.gt_score
        assert r.question.startswith("<image>\n") and r.question[len("<image>\n"):] in prompts.SCORE_QUESTIONS
        word = APDD_SCALE.words[int(np.argmin(np.abs(anchors - r.gt_score)))]
        assert r.answer == f"{prompts.ANSWER_PREFIX} {word}."
        assert level_probs_to_score(np.array([r.level_probs]))[0] == pytest.approx(r.gt_score, abs=1e-6)
        assert Path(r.image).is_file()
    for r in desc:
        assert r.question[len("<image>\n"):] in prompts.DESCRIPTION_QUESTIONS
        assert re.fullmatch(r"Perception: .+ Cognition: .+ Emotion: .+", r.answer)
    raw = json.loads(small.read_text())
    assert all(not Path(r["image"]).is_absolute() for r in raw)
    splits = {s: load_records(small.parent / f"{s}.json") for s in ("train", "val", "test")}
    assert {s: len(v) for s, v in splits.items()} == {"train": 64, "val": 8, "test": 8}
    ids = [r.id for v in splits.values() for r in v]
    assert sorted(ids) == sorted(r.id for r in records)
    assert all(r.extra["split"] == s for s, v in splits.items() for r in v)


def test_meta_reports_the_computed_noise_ceiling(small):
    meta = json.loads((small.parent / "synthart_meta.json").read_text())
    assert (meta["seed"], meta["n"], meta["size"]) == (3, 40, 64)
    assert "overall" in meta["formula"] and 0.3 <= meta["noise_sd"] <= 0.4
    test_ids = [r["id"] for r in json.loads((small.parent / "test.json").read_text()) if "gt_score" in r]
    idx = [int(i.rsplit("-", 1)[1]) for i in test_ids]
    items = [synth_item(3, i, None) for i in idx]
    expected = spearmanr([it["clean"]["overall"] for it in items], [it["scores"]["overall"] for it in items])
    assert meta["ceiling_srcc"] == pytest.approx(expected.statistic)


def test_size_is_configurable(tmp_path):
    from PIL import Image

    path = Path(make_synthart(tmp_path / "s", 3, seed=0, size=24))
    with Image.open(path.parent / "images/000001.png") as im:
        assert im.size == (24, 24) and im.mode == "RGB"


@pytest.mark.parametrize("kwargs, culprit", [({"n": 2}, "n"), ({"n": 10, "size": 8}, "size"),
                                              ({"n": 2.5}, "n")])
def test_bad_arguments_name_the_culprit(tmp_path, kwargs, culprit):
    with pytest.raises(ValueError, match=rf"^{culprit} "):
        make_synthart(tmp_path / "x", **kwargs)


def test_rater_picks_the_attribute_that_becomes_gt_score(small, tmp_path):
    comp = Path(make_synthart(tmp_path / "comp", 40, seed=3, rater="composition"))
    a, b = json.loads(small.read_text()), json.loads(comp.read_text())
    scored = [(x, y) for x, y in zip(a, b) if "gt_score" in x]
    # same paintings and attributes, only the target and its level answer change
    assert all(x["attributes"] == y["attributes"] and x["image"] == y["image"] for x, y in scored)
    assert all(y["gt_score"] == y["attributes"]["composition"] for _, y in scored)
    assert all(x["gt_score"] == x["attributes"]["overall"] for x, _ in scored)
    assert [x["gt_score"] for x, _ in scored] != [y["gt_score"] for _, y in scored]
    assert json.loads((comp.parent / "synthart_meta.json").read_text())["rater"] == "composition"
    with pytest.raises(ValueError, match="rater must be one of .*got 'beauty'"):
        make_synthart(tmp_path / "bad", 5, rater="beauty")


def test_out_dir_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ValueError, match="out_dir"):
        make_synthart(f, 5)


def test_score_formula_rewards_thirds_placement_and_penalises_blur():
    rng = np.random.default_rng(0)
    for _ in range(50):
        lat = sample_latent(rng)
        thirds = derive_qualities(dataclasses.replace(lat, grid_x=1, grid_y=3))
        edge = derive_qualities(dataclasses.replace(lat, grid_x=0, grid_y=4))
        assert noiseless_scores(thirds)["composition"] > noiseless_scores(edge)["composition"]
        if abs(thirds.balance - edge.balance) < 1e-9:
            assert noiseless_scores(thirds)["overall"] > noiseless_scores(edge)["overall"]
        sharp = derive_qualities(dataclasses.replace(lat, sharpness=1.0, clean=1.0))
        blurred = derive_qualities(dataclasses.replace(lat, sharpness=0.0))
        assert noiseless_scores(sharp)["overall"] > noiseless_scores(blurred)["overall"]
        assert noiseless_scores(sharp)["technical_execution"] > noiseless_scores(blurred)["technical_execution"]
        assert all(1.0 <= v <= 10.0 for v in noiseless_scores(lat).values())


def test_moving_the_subject_leaves_global_colour_statistics_alone():
    rng = np.random.default_rng(1)
    lat = dataclasses.replace(sample_latent(rng), clutter=0, sec_x=0.8, sec_y=0.75, sharpness=1.0, clean=1.0)
    images = []
    for gx, gy in ((0, 0), (1, 1), (2, 2), (3, 1)):
        moved = derive_qualities(dataclasses.replace(lat, grid_x=gx, grid_y=gy))
        images.append(render(moved, 64, np.random.default_rng(5)))
    feats = np.stack([pixel_features(im)[:24] for im in images])  # the RGB histograms
    # only the background the subject hides changes (its area is about 6 % of the frame)
    assert np.abs(feats - feats[0]).max() < 0.06
    assert len({im.tobytes() for im in images}) == 4


def test_descriptions_are_varied_short_and_consistent_with_the_score():
    items = [synth_item(11, i, None) for i in range(300)]
    texts = [it["description"] for it in items]
    sentences = {s for t in texts for s in re.split(r"(?<=\.)\s+", t)}
    assert len(sentences) >= 100
    words = [len(t.split()) for t in texts]
    assert 35 <= np.mean(words) <= 85 and max(words) <= 100
    assert all(where(it["latent"]) in it["description"] for it in items)
    scores = np.array([it["scores"]["overall"] for it in items])
    pol = np.array([polarity(t) for t in texts])
    low, high = pol[scores < np.percentile(scores, 33)], pol[scores > np.percentile(scores, 67)]
    assert high.mean() > low.mean() + 0.4
    assert spearmanr(pol, scores).statistic > 0.5
    assert not POSITIVE_WORDS & NEGATIVE_WORDS


def test_corpus_holds_every_prompt_and_answer():
    corpus = synthart_corpus(n=50, seed=0)
    text = "\n".join(corpus)
    for q in prompts.SCORE_QUESTIONS + prompts.DESCRIPTION_QUESTIONS + tuple(prompts.ATTRIBUTE_QUESTIONS.values()):
        assert q in text
    for w in APDD_SCALE.words:
        assert f"{prompts.ANSWER_PREFIX} {w}." in corpus
        assert f"{prompts.attribute_answer_prefix('composition')} {w}." in corpus
    assert sum(t.startswith("Perception:") for t in corpus) == 50
    assert corpus == synthart_corpus(n=50, seed=0)


def test_prompt_constants():
    assert len(prompts.SCORE_QUESTIONS) == 10
    assert prompts.SCORE_QUESTIONS[0] == "How would you rate the quality of this painting?"
    assert prompts.ANSWER_PREFIX == "The quality of the painting is"
    assert set(prompts.ATTRIBUTE_QUESTIONS) == set(prompts.ATTRIBUTES) == set(SCORE_NAMES) - {"overall"}
    assert prompts.score_question("theme") == prompts.ATTRIBUTE_QUESTIONS["theme"]
    with pytest.raises(ValueError, match="colour"):
        prompts.attribute_answer_prefix("colour")


def test_pixel_baseline_stays_well_below_the_noise_ceiling(tmp_path):
    path = make_synthart(tmp_path / "b", 800, seed=7)
    meta = json.loads((tmp_path / "b/synthart_meta.json").read_text())
    both = pixel_baselines_srcc(path)  # global statistics, and with the 4x4 colour thumbnail
    result = both["global"]
    assert result["n_train"] == 640 and result["n_test"] == 80
    assert meta["ceiling_srcc_all"] > 0.93
    assert 0.1 < result["srcc"] < 0.7
    assert result["srcc"] < meta["ceiling_srcc_all"] - 0.25
    assert both["spatial"]["features"] == "spatial" and both["spatial"]["srcc"] < meta["ceiling_srcc_all"] - 0.25


def test_pixel_baseline_fits_what_global_statistics_can_see(tmp_path):
    # a target that *is* a global statistic (mean brightness) is fitted almost perfectly
    rng = np.random.default_rng(0)
    images = [np.full((16, 16, 3), v, dtype=np.uint8) + rng.integers(0, 20, (16, 16, 3), dtype=np.uint8)
              for v in rng.integers(0, 200, 60)]
    records = []
    for i, im in enumerate(images):
        from PIL import Image

        Image.fromarray(im).save(tmp_path / f"{i}.png")
        records.append({"image": str(tmp_path / f"{i}.png"), "gt_score": 1 + 9 * im.mean() / 255})
    model = fit_pixel_baseline(records[:40])
    pred = model.predict(images[40:])
    assert spearmanr(pred, [r["gt_score"] for r in records[40:]]).statistic > 0.95


def test_thumbnail_is_the_exact_area_average():
    image = np.zeros((8, 8, 3))
    image[:4, :4] = 1.0  # top-left quadrant white
    thumb = thumbnail_features(image).reshape(4, 4, 3)
    assert np.allclose(thumb[:2, :2], 1.0) and np.allclose(thumb[2:], 0.0) and np.allclose(thumb[:, 2:], 0.0)
    # sizes that do not divide by 4: a pixel counts by its overlap with each cell, so the mean is kept
    rng = np.random.default_rng(1)
    odd = rng.integers(0, 256, (10, 7, 3)).astype(np.uint8)
    assert thumbnail_features(odd).reshape(16, 3).mean(0) == pytest.approx(odd.mean((0, 1)) / 255, abs=1e-12)
    assert np.allclose(thumbnail_features(np.full((9, 13, 3), 51, np.uint8)), 0.2)
    with pytest.raises(ValueError, match="3x3 is smaller than the 4x4 grid"):
        thumbnail_features(np.zeros((3, 3, 3)))


def test_spatial_baseline_learns_where_things_are_and_the_global_one_cannot(tmp_path):
    # the score is the horizontal position of a white square on a noisy grey ground: every global
    # statistic is the same wherever the square sits, a 4x4 colour thumbnail sees it move
    rng = np.random.default_rng(0)
    records = []
    for i in range(240):
        image = (118 + rng.integers(0, 20, (16, 16, 3))).astype(np.uint8)
        row, col = rng.integers(0, 13, 2)
        image[row:row + 4, col:col + 4] = 255
        Image.fromarray(image).save(tmp_path / f"{i}.png")
        split = "train" if i < 140 else "val" if i < 180 else "test"
        records.append({"id": str(i), "image": f"{i}.png", "gt_score": 1 + 9 * col / 12, "split": split})
    path = tmp_path / "records.json"
    path.write_text(json.dumps(records))
    blind, spatial = (pixel_baseline_srcc(path, features=name) for name in ("global", "spatial"))
    assert spatial["srcc"] > 0.9 and abs(blind["srcc"]) < 0.4, (blind["srcc"], spatial["srcc"])
    with pytest.raises(ValueError, match="unknown baseline feature set 'layout'; known: global, spatial"):
        pixel_baseline_srcc(path, features="layout")
    model = fit_pixel_baseline(records[:140], tmp_path, features="spatial")
    assert model.features == "spatial" and len(model.predict([tmp_path / "0.png"])) == 1


def test_cli_writes_the_data_set_and_reports_bad_arguments(tmp_path):
    cmd = [sys.executable, "-m", "alignment.cli", "synthart"]
    ok = subprocess.run(cmd + ["--out", str(tmp_path / "d"), "--n", "6", "--seed", "2", "--size", "32"],
                        cwd=ROOT, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "records.json" in ok.stdout and "ceiling_srcc=" in ok.stdout and "n=6" in ok.stdout
    assert len(load_records(tmp_path / "d/records.json")) == 12
    (tmp_path / "f").write_text("x")
    for args, culprit in ((["--n", "2"], "--n"), (["--n", "5", "--size", "8"], "--size")):
        bad = subprocess.run(cmd + ["--out", str(tmp_path / "e")] + args, cwd=ROOT, capture_output=True, text=True)
        assert bad.returncode == 2 and culprit in bad.stderr  # a bad value: usage error
    bad = subprocess.run(cmd + ["--out", str(tmp_path / "f"), "--n", "5"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 1 and "--out" in bad.stderr
