"""Scorer training end to end: outputs, collator masks, bad input, atomic checkpoints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from artquant_core.config import parse_config
from tests._training_fixtures import make_setup, run_child, run_training, train_args


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return make_setup(tmp_path_factory.mktemp("training"))


@pytest.fixture(scope="module")
def trained(setup, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    return out, run_training(setup, out)


def test_training_writes_every_output_and_the_scorer_reloads(trained):
    from artquant_core.scorer import ArtQuantScorer
    from artquant_core.tracking import read_metrics

    out, metrics = trained
    assert metrics["global_step"] == 6 and -1 <= metrics["eval_srcc"] <= 1
    for name in ("metrics.jsonl", "loss_curve.png", "scatter.png", "final_metrics.json"):
        assert (out / name).is_file(), name
    rows = [r for r in read_metrics(out) if "step" in r]
    losses = [r for r in rows if "loss" in r]
    assert [r["step"] for r in losses] == [1, 2, 3, 4, 5, 6]
    assert all(k in losses[0] for k in ("loss_answer", "loss_kl", "loss_description", "loss_pair"))
    assert [r["step"] for r in rows if "eval_srcc" in r] == [3, 6, 6]  # periodic + final
    checkpoints = sorted(p.name for p in out.glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    for ckpt in checkpoints:
        files = {p.name for p in (out / ckpt).iterdir()}
        assert any("model" in f and f.endswith(".safetensors") for f in files), files
        assert {"optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"} <= files
    assert not (out / ".staging").exists()
    scorer = ArtQuantScorer.from_pretrained(out)
    state = scorer.model.state_dict()
    final = ArtQuantScorer.from_pretrained(out / "checkpoint-6").model.state_dict()
    assert all(torch.equal(final[k], state[k]) for k in final)
    initial = ArtQuantScorer.from_pretrained(out / "checkpoint-2").model.state_dict()
    assert any(not torch.equal(final[k], initial[k]) for k in final)  # it did train
    preds = json.loads((out / "eval_predictions.json").read_text())
    images = torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8)
    assert scorer.score(images).score.shape == (2,) and len(preds["pred"]) == 12


def test_collator_masks_the_level_token_out_of_the_ce(setup):
    from artquant_core.records import load_records
    from artquant_core.scorer import ArtQuantScorer
    from artquant_core.training.data import ExampleDataset, ScorerCollator, build_examples

    scorer = ArtQuantScorer.from_pretrained(setup["base"])
    examples = build_examples(load_records(setup["train"]), ["score", "description", "attributes"], scorer.scale,
                              setup["data"], attributes_per_record=1)
    tasks = {e.task for e in examples}
    assert tasks == {"score", "description"} and any(e.aspect for e in examples)
    ds = ExampleDataset(examples)
    picks = [0, 1, 2, next(i for i, e in enumerate(examples) if e.task == "description")]
    batch = ScorerCollator(scorer)([ds[i] for i in picks])
    full = scorer.encode(torch.stack([ds[i]["image"] for i in picks]), [examples[i].question for i in picks],
                         [examples[i].answer for i in picks])
    for row, i in enumerate(picks):
        ex = examples[i]
        pos = int(batch["level_positions"][row])
        answer_mask = full["labels"][row] != -100
        if ex.task == "score":
            assert int(batch["input_ids"][row, pos]) in batch["level_ids"][row].tolist()
            assert full["labels"][row, pos] != -100 and batch["labels"][row, pos] == -100
            # every other answer token keeps its CE label
            kept = (batch["labels"][row] != -100).sum()
            assert int(kept) == int(answer_mask.sum()) - 1
            assert batch["level_targets"][row].sum() == pytest.approx(1.0, abs=1e-4)
            word = scorer.scale.words[int(torch.tensor(ex.target).argmax())]
            assert ex.answer.endswith(f" {word}.")
        else:
            assert pos == -1 and torch.equal(batch["labels"][row], full["labels"][row])
    assert batch["task_ids"].tolist()[3] == 1


def _records(tmp_path: Path, setup, mutate) -> str:
    rows = json.loads(Path(setup["train"]).read_text())
    for r in rows:
        r["image"] = str(Path(setup["data"]) / r["image"])
    mutate(rows)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(rows))
    return str(path)


def test_score_record_without_score_and_description_without_text_are_named(setup, tmp_path):
    from artquant_core.records import Record
    from artquant_core.levels import APDD_SCALE
    from artquant_core.training.data import build_examples

    rec = Record(id="no-score", image="x.png", conversations=[{"from": "human", "value": "q"}])
    with pytest.raises(ValueError, match=r"record 0 \(id 'no-score'\).*gt_score"):
        build_examples([rec], ["score"], APDD_SCALE, tmp_path, source="f.json")
    desc = Record(id="d1", image="x.png", task_type="description",
                  conversations=[{"from": "human", "value": "q"}, {"from": "gpt", "value": "  "}])
    with pytest.raises(ValueError, match=r"id 'd1'.*description text"):
        build_examples([desc], ["description"], APDD_SCALE, tmp_path, source="f.json")
    # through the whole entry point: the records loader or the example builder names the record
    from artquant_core.training import ScorerTrainingConfig, train_scorer

    bad = _records(tmp_path, setup, lambda rows: rows[0].pop("gt_score"))
    config = parse_config(ScorerTrainingConfig, train_args(setup, tmp_path / "o", train_data=bad))
    with pytest.raises(ValueError, match="record 0"):
        train_scorer(config)


def test_a_records_std_shapes_its_soft_label(tmp_path):
    import numpy as np

    from artquant_core.levels import APDD_SCALE, score_to_level_probs
    from artquant_core.records import Record
    from artquant_core.training.data import build_examples

    def record(rid, std=None, level_probs=None):
        return Record(id=rid, image="x.png", gt_score=6.0, std=std, level_probs=level_probs,
                      conversations=[{"from": "human", "value": "<|image|>q"}])

    rows = [record("narrow", std=0.6), record("wide", std=2.5), record("none"),
            record("given", std=2.5, level_probs=[0.0, 0.5, 0.5, 0.0, 0.0])]
    narrow, wide, none, given = (np.array(e.target) for e in build_examples(rows, ["score"], APDD_SCALE, tmp_path))
    anchors = np.array(APDD_SCALE.anchors)
    for label in (narrow, wide, none):
        assert label @ anchors == pytest.approx(6.0, abs=1e-6)  # every label keeps the score as its mean

    def entropy(p):
        return float(-(p[p > 0] * np.log(p[p > 0])).sum())

    # same score, different std: different labels, the wider one flatter
    assert not np.allclose(narrow, wide) and entropy(wide) > entropy(narrow) and wide.max() < narrow.max()
    # no std: exactly what it was before (the default spread)
    assert np.allclose(none, score_to_level_probs(np.array([6.0]), APDD_SCALE)[0], atol=1e-12)
    # a record's own level_probs still win over its std
    assert np.allclose(given, [0.0, 0.5, 0.5, 0.0, 0.0])


def test_unreadable_image_is_named_or_skipped_and_counted(setup, tmp_path):
    from artquant_core.training import ScorerTrainingConfig, train_scorer

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    bad = _records(tmp_path, setup, lambda rows: [r.update(image=str(broken)) for r in rows[::3]])
    args = train_args(setup, tmp_path / "o", train_data=bad, max_steps=2, eval_strategy="no", save_steps=100,
                      tasks="score")
    with pytest.raises(ValueError, match=r"broken\.png"):
        train_scorer(parse_config(ScorerTrainingConfig, args))
    metrics = train_scorer(parse_config(ScorerTrainingConfig, args + ["--skip_bad_images", "true",
                                                                     "--output_dir", str(tmp_path / "o2")]))
    assert metrics["global_step"] == 2


def test_bad_config_key_lists_close_matches(setup, tmp_path):
    from artquant_core.training import ScorerTrainingConfig

    with pytest.raises(ValueError, match="did you mean.*lora_rank"):
        parse_config(ScorerTrainingConfig, ["--lora_rnak", "8"])
    cfg = tmp_path / "c.yaml"
    cfg.write_text("kl_wieght: 2\n")
    with pytest.raises(ValueError, match="kl_weight"):
        parse_config(ScorerTrainingConfig, ["--config", str(cfg)])
    with pytest.raises(ValueError, match="unknown task"):
        ScorerTrainingConfig(output_dir=str(tmp_path), tasks="score,ranking")
    result = run_child("from alignment.cli import main; raise SystemExit(main(['train-scorer', '--kl_wieght', '2']))")
    assert result.returncode == 2 and "kl_weight" in result.stderr  # an unknown key: usage error


def test_partial_or_incomplete_checkpoints_are_never_resumed(trained, tmp_path):
    from artquant_core.training import ScorerTrainingConfig
    from artquant_core.training.train import resolve_resume

    src, _ = trained
    out = tmp_path / "run"
    out.mkdir()
    shutil.copytree(src / "checkpoint-2", out / "checkpoint-2")
    shutil.copytree(src / "checkpoint-4", out / ".staging" / "checkpoint-4")  # cut off before its rename
    config = ScorerTrainingConfig(output_dir=str(out))
    assert resolve_resume(config, True) == str(out / "checkpoint-2")
    (out / "checkpoint-2" / "optimizer.pt").unlink()
    with pytest.raises(FileNotFoundError, match=r"checkpoint-2 is missing optimizer\.pt"):
        resolve_resume(config, True)
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        resolve_resume(ScorerTrainingConfig(output_dir=str(tmp_path / "empty")), True)


def test_lora_training_saves_an_adapter_that_reloads(setup, tmp_path):
    from artquant_core.scorer import ArtQuantScorer
    from artquant_core.training import ScorerTrainingConfig, train_scorer

    out = tmp_path / "lora"
    args = train_args(setup, out, max_steps=2, save_steps=2, eval_strategy="no", use_lora="true", lora_rank=4,
                      lora_alpha=8, train_vision_tower="true", tasks="score")
    train_scorer(parse_config(ScorerTrainingConfig, args))
    assert (out / "checkpoint-2" / "adapter_model.safetensors").is_file()
    assert (out / "adapter_model.safetensors").is_file()
    tuned = ArtQuantScorer.from_pretrained(out)
    base = ArtQuantScorer.from_pretrained(setup["base"])
    images = torch.randint(0, 255, (3, 3, 32, 32), dtype=torch.uint8)
    assert not torch.allclose(tuned.score(images).score, base.score(images).score)


def test_shipped_configs_parse():
    from artquant_core.training import ScorerTrainingConfig

    root = Path(__file__).resolve().parents[1] / "configs"
    qwen = parse_config(ScorerTrainingConfig, ["--config", str(root / "scorer_qwen2_5_vl_7b_lora.yaml"),
                                               "--bf16", "false"])  # bf16 needs a GPU here
    assert (qwen.lora_rank, qwen.lora_alpha, qwen.learning_rate, qwen.per_device_train_batch_size,
            qwen.gradient_accumulation_steps, qwen.num_train_epochs, qwen.warmup_steps) == (128, 256, 2e-5, 4, 4, 3, 0.03)
    assert qwen.use_lora and qwen.gradient_checkpointing and qwen.lr_scheduler_type.value == "cosine"
    for name in ("scorer_llava_1_5_7b_lora.yaml", "scorer_tiny.yaml", "pretrain_tiny.yaml"):
        parse_config(ScorerTrainingConfig, ["--config", str(root / name), "--bf16", "false"])
