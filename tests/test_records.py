"""Records (JSON / JSONL, validation errors naming file, index, id, field) and the torch dataset."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from artquant_core.dataset import RecordDataset, collate_records
from artquant_core.levels import QALIGN_SCALE
from artquant_core.records import Record, load_records, write_records

CONV = [{"from": "human", "value": "<image>How would you rate this painting?"},
        {"from": "gpt", "value": "The quality of the painting is good."}]


def _score(rid="a", image="img/a.png", **kw):
    return {"id": rid, "image": image, "gt_score": 7.0, "level_probs": [0.2, 0.6, 0.2, 0, 0],
            "conversations": CONV, **kw}


def _desc(rid="a", image="img/a.png"):
    return {"id": rid, "image": image, "task_type": "description",
            "conversations": [CONV[0], {"from": "gpt", "value": "Perception: warm colours."}]}


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "img").mkdir()
    Image.new("RGB", (6, 4), (200, 10, 10)).save(tmp_path / "img" / "a.png")
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(tmp_path / "img" / "b.png")
    return tmp_path


def _write(folder, rows, name="records.json"):
    path = folder / name
    if name.endswith(".jsonl"):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        path.write_text(json.dumps(rows))
    return path


def test_load_json_list_score_and_description(folder):
    extra = _score(std=0.8, attributes={"colour": 6.5}, split="train")
    records = load_records(_write(folder, [extra, _desc()]))
    score, desc = records
    assert (score.id, score.task_type, score.gt_score, score.std) == ("a", "score", 7.0, 0.8)
    assert score.level_probs == [0.2, 0.6, 0.2, 0.0, 0.0]
    assert score.image == str(folder.resolve() / "img" / "a.png")
    assert score.attributes == {"colour": 6.5} and score.extra == {"split": "train"}
    assert score.answer.endswith("good.") and score.question.startswith("<image>")
    assert desc.task_type == "description" and desc.gt_score is None and desc.id == "a"


def test_jsonl_by_extension_and_by_content(folder):
    rows = [_score(), _desc(rid=3, image="img/b.png")]
    assert [r.id for r in load_records(_write(folder, rows, "r.jsonl"))] == ["a", "3"]
    assert [r.id for r in load_records(_write(folder, rows, "r_jsonl.txt"))] == ["a", "3"]


def test_image_root_and_absolute_paths(folder, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("records")
    path = _write(elsewhere, [_score(), _score(rid="b", image=str(folder / "img" / "b.png"))])
    with pytest.raises(ValueError, match=r"record 0 \(id 'a'\): field 'image': file not found"):
        load_records(path)
    records = load_records(path, image_root=folder)
    assert records[0].image == str(folder / "img" / "a.png") and records[1].image == str(folder / "img" / "b.png")
    assert load_records(path, check_images=False)[0].image.endswith("a.png")


def test_write_round_trip_relative_paths(folder):
    records = load_records(_write(folder, [_score(split="val"), _desc()]))
    for name in ("out.json", "out.jsonl"):
        out = write_records(records, folder / name)
        text = out.read_text()
        assert '"image": "img/a.png"' in text and str(folder) not in text
        assert load_records(out) == records
    assert json.loads((folder / "out.json").read_text())[1]["task_type"] == "description"
    assert len((folder / "out.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("change, field, problem", [
    (lambda r: r.pop("gt_score"), "gt_score", "missing"),
    (lambda r: r.pop("conversations"), "conversations", "missing"),
    (lambda r: r.pop("image"), "image", "missing"),
    (lambda r: r.update(gt_score="high"), "gt_score", "must be a number"),
    (lambda r: r.update(gt_score=True), "gt_score", "must be a number"),
    (lambda r: r.update(gt_score=float("nan")), "gt_score", "outside the scale's range"),
    (lambda r: r.update(gt_score=10.5), "gt_score", r"10.5 is outside the scale's range \[1, 10\]"),
    (lambda r: r.update(level_probs=[0.5, 0.5]), "level_probs", "list of 5 probabilities.*got 2"),
    (lambda r: r.update(level_probs=[0.5, 0.4, 0, 0, 0]), "level_probs", "sums to 0.9, not 1"),
    (lambda r: r.update(level_probs=[1.5, -0.5, 0, 0, 0]), "level_probs", r"entry 1 is negative"),
    (lambda r: r.update(level_probs=[float("nan"), 1, 0, 0, 0]), "level_probs", "entry 0 is nan"),
    (lambda r: r.update(conversations=[]), "conversations", "non-empty list"),
    (lambda r: r.update(conversations=[CONV[1], CONV[0]]), "conversations", "turn 0 must be .*human"),
    (lambda r: r.update(conversations=[CONV[0]]), "conversations", "alternate human/gpt"),
    (lambda r: r.update(conversations=[CONV[0], {"from": "gpt", "value": " "}]), "conversations",
     "empty answer"),
    (lambda r: r.update(task_type="caption"), "task_type", "must be one of"),
    (lambda r: r.update(std=0), "std", "positive finite"),
    (lambda r: r.update(attributes={"colour": "nice"}), "attributes", "'colour' must be a finite number"),
    (lambda r: r.update(image="img/missing.png"), "image", "file not found: .*missing.png"),
])
def test_validation_errors_name_file_index_id_field(folder, change, field, problem):
    bad = _score(rid="bad-7")
    change(bad)
    path = _write(folder, [_score(), _desc(), bad])
    with pytest.raises(ValueError, match=rf"records\.json: record 2 \(id 'bad-7'\): field '{field}': .*{problem}"):
        load_records(path)


def test_description_errors_and_other_file_errors(folder):
    desc = _desc(rid="d1")
    desc["conversations"][1] = {"from": "gpt", "value": ""}
    with pytest.raises(ValueError, match=r"record 0 \(id 'd1'\): field 'conversations': .*empty description"):
        load_records(_write(folder, [desc]))
    with pytest.raises(ValueError, match=r"record 0 \(id None\): field 'id': missing"):
        load_records(_write(folder, [{"image": "img/a.png", "conversations": CONV}]))
    with pytest.raises(ValueError, match=r"record 1 \(id None\): field 'record': must be a JSON object"):
        load_records(_write(folder, [_score(), [1, 2]]))
    (folder / "broken.jsonl").write_text(json.dumps(_score()) + "\n{oops\n")
    with pytest.raises(ValueError, match=r"broken\.jsonl: line 2 is not valid JSON"):
        load_records(folder / "broken.jsonl")
    (folder / "broken.json").write_text("[1, 2")
    with pytest.raises(ValueError, match=r"broken\.json: not valid JSON"):
        load_records(folder / "broken.json")
    with pytest.raises(FileNotFoundError, match="nothere.json"):
        load_records(folder / "nothere.json")


def test_scale_controls_range_and_length(folder):
    row = _score(gt_score=4.5)
    assert load_records(_write(folder, [row]), scale=QALIGN_SCALE)[0].gt_score == 4.5
    row["gt_score"] = 7.0
    with pytest.raises(ValueError, match=r"7.0 is outside the scale's range \[1, 5\]"):
        load_records(_write(folder, [row]), scale=QALIGN_SCALE)


def test_dataset_native_size_and_collate_list(folder):
    records = load_records(_write(folder, [_score(), _desc(image="img/b.png")]))
    dataset = RecordDataset(records)
    item = dataset[0]
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 4, 6)
    assert item["image"][:, 0, 0].tolist() == [200, 10, 10]
    assert dataset[1]["image"][:, 0, 0].tolist() == [255, 255, 255]   # transparent -> white
    batch = collate_records([dataset[0], dataset[1]])
    assert isinstance(batch["image"], list) and batch["id"] == ["a", "a"]
    assert batch["gt_score"][0] == 7.0 and torch.isnan(batch["gt_score"][1])
    assert isinstance(batch["level_probs"], list) and batch["task_type"] == ["score", "description"]


def test_dataset_square_resize_pads_with_mean_colour(folder):
    records = load_records(_write(folder, [_score(), _score(rid="b", image="img/b.png")]))
    loader = DataLoader(RecordDataset(records, image_size=12, pad_color=(0, 0, 255)), batch_size=2,
                        collate_fn=collate_records)
    batch = next(iter(loader))
    assert batch["image"].shape == (2, 3, 12, 12) and batch["image"].dtype == torch.uint8
    top, middle = batch["image"][0, :, 0, 6].tolist(), batch["image"][0, :, 6, 6].tolist()
    assert top == [0, 0, 255] and abs(middle[0] - 200) <= 2        # 6x4 padded top/bottom
    np.testing.assert_allclose(batch["level_probs"][0].numpy(), [0.2, 0.6, 0.2, 0, 0], atol=1e-7)


def test_dataset_bad_image_error_or_counted_skip(folder):
    (folder / "img" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    records = load_records(_write(folder, [_score(), _score(rid="broken", image="img/bad.png")]))
    with pytest.raises(ValueError, match=r"record 1 \(id 'broken'\): cannot read image .*bad\.png"):
        RecordDataset(records)[1]
    dataset = RecordDataset(records, skip_bad_images=True)
    with pytest.warns(UserWarning, match=r"skipping record 1 \(id 'broken'\)"):
        item = dataset[1]
    assert item["id"] == "a" and item["replaces"] == "broken"
    assert dataset.num_skipped == 1 and "bad.png" in dataset.skipped["broken"]
    assert collate_records([item, dataset[0]])["num_replaced"] == 1


def test_record_dataclass_defaults():
    record = Record(id="x", image="/tmp/x.png", conversations=CONV)
    assert record.task_type == "score" and record.to_dict()["conversations"] == CONV
    assert "task_type" not in record.to_dict()
