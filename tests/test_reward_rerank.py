"""``artquant rerank``: folder mode and pipeline mode, contact sheet + JSON, bad arguments."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from reward.rerank import best_of_n, write_rerank_report
from reward.simple import Brightness
from alignment.cli import main as cli


def _write_folder(folder, values):
    folder.mkdir(parents=True, exist_ok=True)
    for i, v in enumerate(values):
        Image.new("RGB", (24 + 8 * (i % 2), 24), (v, v, v)).save(folder / f"img_{i:02d}.png")
    return folder


def test_folder_mode_groups_sorted_files_and_writes_sheet_and_json(tmp_path, capsys):
    folder = _write_folder(tmp_path / "imgs", [10, 200, 90, 30, 250, 40])
    out = tmp_path / "out"
    code = cli(["rerank", "--reward", "brightness*2+jpeg_compressibility*0", "--images", str(folder),
                "--n", "3", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "rerank.json").read_text())
    assert report["n"] == 3 and report["num_images"] == 6
    assert [g["best_name"] for g in report["groups"]] == ["img_01.png", "img_04.png"]
    first = report["groups"][0]["candidates"]
    assert [c["name"] for c in first] == ["img_00.png", "img_01.png", "img_02.png"]
    assert first[1]["components"]["brightness"] == pytest.approx(200 / 255, abs=1e-6)
    assert first[1]["score"] == pytest.approx(2 * 200 / 255, abs=1e-5)
    assert set(first[0]["components"]) == {"brightness", "jpeg_compressibility", "total"}
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.size[0] > 3 * 128 and sheet.size[1] > 2 * 128  # 3 columns, 2 rows
    # The best image of row 0 (column 1) is framed in red.
    arr = np.asarray(sheet.convert("RGB")).astype(int)
    red = (arr[..., 0] > 200) & (arr[..., 1] < 60) & (arr[..., 2] < 60)
    assert red.sum() > 100
    assert "img_01.png" in capsys.readouterr().out


def test_folder_mode_default_is_one_group(tmp_path):
    folder = _write_folder(tmp_path / "imgs", [50, 60, 250, 40, 10])
    out = tmp_path / "out"
    assert cli(["rerank", "--reward", "brightness", "--images", str(folder), "--out", str(out)]) == 0
    report = json.loads((out / "rerank.json").read_text())
    assert len(report["groups"]) == 1 and report["groups"][0]["best_index"] == 2
    assert "components" not in report["groups"][0]["candidates"][0]


@pytest.mark.parametrize("args, message, code", [
    (["--images", "{tmp}/imgs", "--n", "2"], "5 files .* cannot be split into groups of --n 2", 1),
    (["--images", "{tmp}/nowhere"], "not a folder", 1),
    (["--images", "{tmp}/empty"], "no image files", 1),
    (["--pipeline", "{tmp}/imgs", "--prompt", "a", "--n", "2"], "no diffusers pipeline", 1),
    (["--pipeline", "{tmp}/imgs", "--n", "2"], "needs at least one --prompt", 2),  # usage error
    (["--images", "{tmp}/imgs", "--n", "0"], "--n: must be >= 1", 2),
])
def test_bad_arguments_exit_with_the_culprit(tmp_path, capsys, args, message, code):
    _write_folder(tmp_path / "imgs", [1, 2, 3, 4, 5])
    (tmp_path / "empty").mkdir()
    argv = ["rerank", "--reward", "brightness", "--out", str(tmp_path / "out")] + [a.format(tmp=tmp_path) for a in args]
    assert cli(argv) == code
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("artquant rerank: error:")
    assert __import__("re").search(message, err), err


def test_unknown_reward_spec_is_one_line_error(tmp_path, capsys):
    _write_folder(tmp_path / "imgs", [1, 2])
    assert cli(["rerank", "--reward", "brightnes", "--images", str(tmp_path / "imgs"),
                "--out", str(tmp_path / "out")]) == 1
    assert "unknown reward 'brightnes'" in capsys.readouterr().err


def test_write_report_for_tensor_images(tmp_path):
    images = torch.stack([torch.full((3, 16, 16), v) for v in (0.1, 0.7, 0.3, 0.2)])
    result = best_of_n(images, ["p0", "p1"], Brightness(), 2)
    paths = write_rerank_report(result, images, tmp_path, "brightness", group_labels=["p0", "p1"])
    report = json.loads(paths["json"].read_text())
    assert [g["best_index"] for g in report["groups"]] == [1, 2]
    assert [g["prompt"] for g in report["groups"]] == ["p0", "p1"]
    assert Image.open(paths["contact_sheet"]).size[1] > 2 * 128


@pytest.mark.slow
def test_pipeline_mode_samples_n_per_prompt_and_keeps_the_best(tmp_path):
    # The tiny SD builder belongs to the alignment package (tests may import it; reward may not).
    tiny_sd = pytest.importorskip("alignment.tiny_sd", reason="alignment.tiny_sd (branch ddpo) not merged yet")
    pipeline = tiny_sd.build_tiny_sd(tmp_path / "sd", seed=0, pretrained=False)
    out = tmp_path / "out"
    code = cli(["rerank", "--reward", "brightness+saturation*0.5", "--pipeline", pipeline,
                "--prompt", "a red house", "--prompt", "a blue sea", "--n", "3", "--steps", "2",
                "--seed", "7", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "rerank.json").read_text())
    assert report["n"] == 3 and len(report["groups"]) == 2
    assert [g["prompt"] for g in report["groups"]] == ["a red house", "a blue sea"]
    for g, group in enumerate(report["groups"]):
        scores = [c["score"] for c in group["candidates"]]
        assert group["best_index"] == 3 * g + int(np.argmax(scores))
        for c in group["candidates"]:
            parts = c["components"]
            assert c["score"] == pytest.approx(parts["brightness"] + 0.5 * parts["saturation"], abs=1e-5)
    best = sorted((out / "best").iterdir())
    assert [p.name for p in best] == ["prompt00_best.png", "prompt01_best.png"]
    # The kept image is the best candidate: its brightness matches the JSON (8-bit PNG rounding).
    kept = torch.from_numpy(np.array(Image.open(best[0]))).permute(2, 0, 1)[None]
    winner = report["groups"][0]["candidates"][report["groups"][0]["best_index"]]
    assert float(Brightness()(kept)) == pytest.approx(winner["components"]["brightness"], abs=3e-3)
    assert Image.open(out / "contact_sheet.png").size[1] > 2 * 128
