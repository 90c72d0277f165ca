"""Saving, loading, LoRA adapters, bad checkpoint folders and the ``score`` command."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from artquant_core.scorer import ArtQuantScorer
from artquant_core.tiny import build_tiny_scorer
from tests._scorer_helpers import FAMILIES, painting

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", params=FAMILIES)
def saved(request, tmp_path_factory):
    scorer = build_tiny_scorer(seed=1, pretrained=False, family=request.param)
    folder = tmp_path_factory.mktemp(request.param) / "scorer"
    scorer.save_pretrained(folder)
    return scorer, folder


def test_save_load_round_trip_is_exact(saved):
    scorer, folder = saved
    loaded = ArtQuantScorer.from_pretrained(folder)
    a, b = scorer.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert loaded.family.name == scorer.family.name and loaded.scale == scorer.scale
    assert torch.equal(loaded.level_token_ids, scorer.level_token_ids)
    images = [painting(64, 64), painting(90, 130, seed=1)]
    assert torch.equal(scorer.score(images).score, loaded.score(images).score)
    meta = json.loads((folder / "artquant_scorer.json").read_text())
    assert meta["level_words"] == ["excellent", "good", "fair", "poor", "bad"] and meta["family"] == scorer.family.name


def test_saved_folder_is_a_plain_transformers_checkpoint(saved):
    from transformers import AutoModelForImageTextToText

    scorer, folder = saved
    assert (folder / "model.safetensors").exists()
    model = AutoModelForImageTextToText.from_pretrained(folder, use_safetensors=True)
    assert all(torch.equal(v, scorer.model.state_dict()[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors", "preprocessor_config.json"])
def test_missing_file_is_named(saved, tmp_path, missing):
    import shutil

    _, folder = saved
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / missing).unlink()
    with pytest.raises(FileNotFoundError, match=f"{broken}.*missing {missing}"):
        ArtQuantScorer.from_pretrained(broken)


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ArtQuantScorer.from_pretrained(tmp_path / "nowhere")


def test_lora_adapter_saves_as_adapter_and_merged(saved, tmp_path):
    from peft import LoraConfig, get_peft_model

    base, folder = saved
    scorer = ArtQuantScorer.from_pretrained(folder)
    target = r".*(language_model|text_model)\.layers.*\.(q_proj|v_proj)"
    scorer.model = get_peft_model(scorer.model, LoraConfig(r=4, lora_alpha=8, target_modules=target,
                                                           init_lora_weights=False))
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    expected = scorer.score(x).score
    assert not torch.allclose(expected, base.score(x).score)
    scorer.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").exists()
    assert not (tmp_path / "adapter" / "model.safetensors").exists()
    assert torch.allclose(ArtQuantScorer.from_pretrained(tmp_path / "adapter").score(x).score, expected, atol=1e-6)
    scorer.save_pretrained(tmp_path / "merged", merge_lora=True)
    assert (tmp_path / "merged" / "model.safetensors").exists()
    assert hasattr(scorer.model, "peft_config")  # merging a copy leaves the live model wrapped
    assert torch.allclose(ArtQuantScorer.from_pretrained(tmp_path / "merged").score(x).score, expected, atol=1e-5)


def test_cli_score_json(saved, tmp_path):
    scorer, folder = saved
    if scorer.family.name != "qwen2_5_vl":
        pytest.skip("the command is family-agnostic; one family keeps the suite fast")
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"img{i}.png")
        painting(64, 80, seed=i).save(paths[-1])
    cmd = [sys.executable, "-m", "alignment.cli", "score", "--model", str(folder), *map(str, paths),
           "--format", "json", "--describe", "--max-new-tokens", "3", "--aspect", "composition"]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    rows = json.loads(run.stdout)
    assert [r["image"] for r in rows] == [str(p) for p in paths]
    expected = scorer.score([painting(64, 80, seed=i) for i in range(2)], aspect="composition").score
    assert [r["score"] for r in rows] == pytest.approx(expected.tolist(), abs=1e-5)
    assert all(isinstance(r["description"], str) and set(r["level_probs"]) == set(scorer.scale.words) for r in rows)


def test_cli_missing_image_is_one_line_error(saved, tmp_path):
    scorer, folder = saved
    if scorer.family.name != "qwen2_5_vl":
        pytest.skip("the command is family-agnostic; one family keeps the suite fast")
    cmd = [sys.executable, "-m", "alignment.cli", "score", "--model", str(folder), str(tmp_path / "nope.png")]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and "nope.png does not exist" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_lora_over_an_in_memory_base_saves_the_base_too(tmp_path):
    from peft import LoraConfig, get_peft_model

    scorer = build_tiny_scorer(seed=2, pretrained=False)
    scorer.model = get_peft_model(scorer.model, LoraConfig(r=2, lora_alpha=4, init_lora_weights=False,
                                                           target_modules=r".*language_model.*\.(q_proj|v_proj)"))
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    scorer.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "base_model" / "model.safetensors").exists()
    loaded = ArtQuantScorer.from_pretrained(tmp_path / "adapter")
    assert torch.allclose(loaded.score(x).score, scorer.score(x).score, atol=1e-6)


def test_plain_vlm_folder_without_scorer_file_loads_with_defaults(saved, tmp_path):
    """The path real checkpoints take: family from config.model_type, APDD scale, ArtQuant prompts."""
    import shutil

    scorer, folder = saved
    plain = tmp_path / "plain"
    shutil.copytree(folder, plain)
    (plain / "artquant_scorer.json").unlink()
    loaded = ArtQuantScorer.from_pretrained(plain)
    assert loaded.family.name == scorer.family.name
    assert loaded.scale.anchors == (10.0, 7.5, 5.0, 3.5, 1.0)
    assert loaded.answer_prefix == "The quality of the painting is"


def test_local_paths_and_hub_ids_are_told_apart():
    from artquant_core.scorer_io import _is_local

    assert not _is_local("Qwen/Qwen2.5-VL-7B-Instruct") and not _is_local("llava-hf/llava-1.5-7b-hf")
    assert _is_local("./scorer") and _is_local("/abs/scorer") and _is_local("runs/a/scorer")
