"""Vision warm-up: score regression on the vision tower before joint training (from-scratch models)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from artquant_core.config import parse_config
from tests._training_fixtures import TINY, make_setup, run_training


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return make_setup(tmp_path_factory.mktemp("warmup"))


def _brightness_images(folder: Path, n: int, size: int = 32) -> tuple[list[str], torch.Tensor]:
    """Flat-grey images with noise; the target is their mean brightness (trivially learnable)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths, values = [], []
    for i in range(n):
        level = rng.uniform(20, 235)
        pixels = np.clip(level + rng.normal(0, 10, (size, size, 3)), 0, 255).astype(np.uint8)
        path = folder / f"{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
        values.append(pixels.mean() / 25.5)
    return paths, torch.tensor(values, dtype=torch.float32)[:, None]


def test_warmup_targets_collect_score_and_attributes_and_skip_descriptions(setup):
    from artquant_core.records import load_records
    from artquant_core.training.vision_warmup import warmup_targets

    records = load_records(setup["train"])
    paths, names, targets = warmup_targets(records, Path(setup["train"]).parent)
    scored = [r for r in records if r.task_type != "description"]
    assert len(paths) == len(scored) == targets.shape[0] and all(Path(p).is_file() for p in paths)
    assert names[0] == "overall" and "composition" in names and "overall" not in names[1:]
    assert torch.allclose(targets[:, 0], torch.tensor([r.gt_score for r in scored], dtype=torch.float32))
    k = names.index("composition")
    assert targets[0, k].item() == pytest.approx(scored[0].attributes["composition"], abs=1e-5)
    descriptions = [r for r in records if r.task_type == "description"]
    with pytest.raises(ValueError, match="score records"):
        warmup_targets(descriptions, ".")


def test_warmup_trains_only_the_vision_side_and_lowers_the_loss(tmp_path):
    from artquant_core.tiny import TinyScorerConfig, build_tiny_scorer
    from artquant_core.training.vision_warmup import vision_warmup

    scorer = build_tiny_scorer(seed=0, pretrained=False, config=TinyScorerConfig(**TINY))
    paths, targets = _brightness_images(tmp_path / "img", 64)
    targets = torch.cat([targets, torch.full_like(targets, float("nan"))], 1)  # a column nobody has: masked
    before = {k: v.clone() for k, v in scorer.model.state_dict().items()}
    flags = {n: p.requires_grad for n, p in scorer.model.named_parameters()}
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    history = vision_warmup(scorer, paths, targets, steps=60, learning_rate=3e-3, batch_size=16, progress=False)
    assert torch.equal(torch.rand(1), expected_next)  # global RNG untouched
    assert [h["step"] for h in history] == list(range(1, 61))
    assert all(np.isfinite(h["loss"]) for h in history)
    first, last = np.mean([h["loss"] for h in history[:10]]), np.mean([h["loss"] for h in history[-10:]])
    assert last < 0.5 * first, (first, last)
    after = scorer.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("visual" in k for k in changed), sorted(changed)[:5]
    assert any("merger" in k for k in changed)  # the projector the language model reads trains too
    assert {n: p.requires_grad for n, p in scorer.model.named_parameters()} == flags


def test_warmup_rejects_mixed_image_sizes_naming_them(tmp_path):
    from artquant_core.tiny import TinyScorerConfig, build_tiny_scorer
    from artquant_core.training.vision_warmup import vision_warmup

    scorer = build_tiny_scorer(seed=0, pretrained=False, config=TinyScorerConfig(**TINY))
    small, _ = _brightness_images(tmp_path / "a", 1, size=32)
    large, _ = _brightness_images(tmp_path / "b", 1, size=48)
    with pytest.raises(ValueError, match="one size"):
        vision_warmup(scorer, small + large, torch.ones(2, 1), steps=1, batch_size=8, progress=False)
    with pytest.raises(ValueError, match="2 images for 3 target rows"):
        vision_warmup(scorer, small + large, torch.ones(3, 1), steps=1, progress=False)


def test_train_scorer_runs_the_warmup_once_and_keeps_it(setup, tmp_path):
    from safetensors.torch import load_file

    from artquant_core.scorer import ArtQuantScorer
    from artquant_core.training.vision_warmup import load_vision_weights

    out = tmp_path / "out"
    warm = dict(eval_strategy="no", vision_warmup_steps=5, vision_warmup_batch_size=4)
    run_training(setup, out, max_steps=2, save_steps=2, **warm)
    log = json.loads((out / "vision_warmup" / "vision_warmup.json").read_text())
    assert log["targets"][0] == "overall" and len(log["history"]) == 5 and log["n_images"] > 0
    assert (out / "vision_warmup" / "vision.safetensors").is_file()
    # resume: the checkpoint holds the warmed-up tower, the warm-up is not run again
    stamp = (out / "vision_warmup" / "vision_warmup.json").stat().st_mtime_ns
    run_training(setup, out, resume=True, max_steps=3, save_steps=2, **warm)
    assert (out / "vision_warmup" / "vision_warmup.json").stat().st_mtime_ns == stamp
    # killed before the first checkpoint: a fresh start reuses the saved warm-up instead of redoing it
    again = tmp_path / "again"
    run_training(setup, again, max_steps=1, save_steps=5, **warm)
    shutil.rmtree(again / "checkpoint-1", ignore_errors=True)
    for f in again.glob("model*.safetensors"):
        f.unlink()
    stamp = (again / "vision_warmup" / "vision_warmup.json").stat().st_mtime_ns
    run_training(setup, again, max_steps=1, save_steps=5, **warm)
    assert (again / "vision_warmup" / "vision_warmup.json").stat().st_mtime_ns == stamp
    # same seed, same data: the warm-up is deterministic
    first, second = (load_file(str(d / "vision_warmup" / "vision.safetensors")) for d in (out, again))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    scorer = ArtQuantScorer.from_pretrained(setup["base"])
    assert load_vision_weights(scorer, again / "vision_warmup") == len(first)
    assert torch.equal(dict(scorer.model.named_parameters())[next(iter(first))], first[next(iter(first))])
    with pytest.raises(ValueError, match="other settings"):
        run_training(setup, again, max_steps=1, save_steps=5,
                                                                   eval_strategy="no", vision_warmup_steps=6,
                                                                   vision_warmup_batch_size=4)


def test_bad_warmup_settings_are_named():
    from artquant_core.training import ScorerTrainingConfig

    with pytest.raises(ValueError, match="vision_warmup_steps"):
        parse_config(ScorerTrainingConfig, ["--vision_warmup_steps", "-1", "--output_dir", "/tmp/x"])


def test_freeze_vision_tower_keeps_the_encoder_and_trains_the_projector(setup, tmp_path):
    from artquant_core.scorer import ArtQuantScorer
    from artquant_core.training import ScorerTrainingConfig

    out = tmp_path / "frozen"
    run_training(setup, out, max_steps=2, save_steps=2,
                                                                eval_strategy="no", freeze_vision_tower="true")
    before = ArtQuantScorer.from_pretrained(setup["base"]).model.state_dict()
    after = ArtQuantScorer.from_pretrained(out).model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert not any("visual" in k and "merger" not in k for k in changed), sorted(changed)
    assert any("merger" in k for k in changed) and any("language_model" in k for k in changed)
    with pytest.raises(ValueError, match="freeze_vision_tower"):
        parse_config(ScorerTrainingConfig, ["--freeze_vision_tower", "true", "--use_lora", "true",
                                            "--output_dir", str(tmp_path)])
