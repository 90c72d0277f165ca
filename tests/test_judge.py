"""The independent judge: a second shipped tiny scorer of the other VLM family (LLaVA).

The ``judge`` reward spec (parsing, composition, equality with ``ArtQuantReward`` on the
same scorer, the missing-weights error), the pre-training script's LLaVA path (smoke run
shipping to a temporary folder), and — when the real judge is shipped — its SRCC on a
fresh SynthArt draw of a seed neither scorer trained on.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from reward import ArtQuantReward, CompositeReward, load_reward
from reward.spec import known_rewards, parse_term, split_terms

JUDGE_FRESH_SEED = 4242  # neither the default scorer (1000, check 777) nor the judge (3000) trained on it


def _uint8_images(b: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (b, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    """A random-init tiny LLaVA scorer saved as ``<tmp>/tiny_scorer_llava`` (a stand-in package folder)."""
    from artquant_core.tiny import TinyScorerConfig, build_tiny_scorer

    root = tmp_path_factory.mktemp("pretrained")
    scorer = build_tiny_scorer(seed=5, pretrained=False,
                               config=TinyScorerConfig(family="llava", vision_layers=1, text_layers=1))
    scorer.save_pretrained(root / "tiny_scorer_llava")
    return root


@pytest.fixture
def shipped_here(monkeypatch, judge_dir):
    import artquant_core.tiny as tiny

    monkeypatch.setattr(tiny, "PRETRAINED_DIR", judge_dir)
    return judge_dir / "tiny_scorer_llava"


# --- the spec ---------------------------------------------------------------------------------

def test_judge_is_a_known_reward_and_splits_as_a_term():
    assert "judge" in known_rewards()
    assert split_terms("artquant+0.5*judge") == ["artquant", "0.5*judge"]
    assert split_terms("judge@composition*0.3+brightness") == ["judge@composition*0.3", "brightness"]
    assert [parse_term(t) for t in split_terms("artquant + 0.5*judge")] == [("artquant", 1.0), ("judge", 0.5)]
    with pytest.raises(ValueError, match="did you mean judge"):
        load_reward("judg")


@pytest.mark.parametrize("spec", ["judge:runs/x", "judge@", "judge@no spaces"])
def test_judge_refuses_a_path_or_a_bad_aspect(spec):
    with pytest.raises(ValueError, match="judge"):
        load_reward(spec)


def test_judge_scores_exactly_as_artquant_reward_on_its_scorer(shipped_here):
    from artquant_core.scorer import ArtQuantScorer

    images = _uint8_images(3)
    judge = load_reward("judge")
    assert isinstance(judge, ArtQuantReward) and judge.name == "judge" and judge.differentiable
    assert judge.scorer.family.name == "llava"
    values = judge(images)
    assert values.shape == (3,) and values.dtype == torch.float32
    assert bool(((values >= 0) & (values <= 1)).all())
    same = ArtQuantReward(ArtQuantScorer.from_pretrained(shipped_here))(images)
    assert torch.equal(values, same)

    aspect = load_reward("judge@composition")
    assert aspect.name == "judge@composition" and aspect.aspect == "composition"
    assert torch.equal(aspect(images), ArtQuantReward(ArtQuantScorer.from_pretrained(shipped_here),
                                                      aspect="composition")(images))


def test_judge_composes_with_the_other_rewards(shipped_here):
    images = _uint8_images(2, seed=1)
    comp = load_reward("brightness*0.2+0.5*judge+judge@composition")
    assert isinstance(comp, CompositeReward)
    parts = comp.components(images)
    assert set(parts) == {"brightness", "judge", "judge@composition", "total"}
    torch.testing.assert_close(parts["total"], 0.2 * parts["brightness"] + 0.5 * parts["judge"]
                               + parts["judge@composition"])
    torch.testing.assert_close(parts["judge"], load_reward("judge")(images))


def test_artquant_plus_judge(shipped_here):
    """``artquant+0.5*judge``: the default scorer and the judge side by side (two families)."""
    from artquant_core.tiny import TinyScorerConfig, build_tiny_scorer

    build_tiny_scorer(seed=1, pretrained=False,
                      config=TinyScorerConfig(vision_layers=1, text_layers=1)).save_pretrained(
        shipped_here.parent / "tiny_scorer")
    comp = load_reward("artquant+0.5*judge")
    parts = comp.components(_uint8_images(2, seed=2))
    assert set(parts) == {"artquant", "judge", "total"}
    assert comp.components_["artquant"][0].scorer.family.name == "qwen2_5_vl"
    assert comp.components_["judge"][0].scorer.family.name == "llava"
    torch.testing.assert_close(parts["total"], parts["artquant"] + 0.5 * parts["judge"])


def test_missing_judge_weights_name_the_folder(monkeypatch, tmp_path):
    import artquant_core.tiny as tiny

    monkeypatch.setattr(tiny, "PRETRAINED_DIR", tmp_path)
    folder = tmp_path / "tiny_scorer_llava"
    with pytest.raises(FileNotFoundError, match=re.escape(str(folder))):
        load_reward("judge")
    with pytest.raises(FileNotFoundError, match=re.escape(str(folder))):
        load_reward("brightness+0.5*judge")
    with pytest.raises(FileNotFoundError, match=re.escape(str(folder))):
        tiny.build_tiny_scorer(family="llava", pretrained=True)


# --- the pre-training script's LLaVA path ---------------------------------------------------------

def test_pretrain_script_trains_and_ships_the_llava_judge(monkeypatch, tmp_path):
    """Smoke run: the judge config, family llava, its own data seed; ships into the family folder
    (``PRETRAINED_DIR`` pointed at a temporary folder), which ``load_reward("judge")`` then loads."""
    import artquant_core.tiny as tiny
    from scripts import pretrain_tiny_scorer as script

    root = Path(__file__).resolve().parents[1]
    monkeypatch.setattr(tiny, "PRETRAINED_DIR", tmp_path / "pretrained")
    run = tmp_path / "run"
    rc = script.main(["--out", str(run), "--n-images", "120", "--config", str(root / "configs" / "pretrain_judge.yaml"),
                      "--family", "llava", "--data-seed", "3000", "--ship",
                      "--max_steps", "2", "--vision_warmup_steps", "2", "--vision_warmup_batch_size", "8",
                      "--per_device_train_batch_size", "4", "--eval_steps", "2", "--save_steps", "2",
                      "--max_eval_samples", "8", "--logging_steps", "1"])
    assert rc == 0
    shipped = tmp_path / "pretrained" / "tiny_scorer_llava"
    assert (shipped / "config.json").is_file() and not (tmp_path / "pretrained" / "tiny_scorer").exists()
    summary = json.loads((shipped / "training_summary.json").read_text())
    assert summary["family"] == "llava" and summary["data_seed"] == 3000 and summary["data"]["seed"] == 3000
    assert summary["fresh_seed"] == 777 and summary["fresh_n"] > 0 and "fresh_test_srcc" in summary
    assert summary["stages"]["vision_warmup"]["steps"] == 2 and summary["stages"]["joint"]["steps"] == 2
    assert summary["config"] == "pretrain_judge.yaml"
    judge = load_reward("judge")
    assert judge.scorer.family.name == "llava" and judge(_uint8_images(2)).shape == (2,)

    # --ship-only with --ship-dir: the same run, shipped elsewhere, nothing retrained.
    elsewhere = tmp_path / "elsewhere"
    assert script.main(["--out", str(run), "--n-images", "120", "--config", str(root / "configs" / "pretrain_judge.yaml"),
                        "--data-seed", "3000", "--ship-only", "--ship-dir", str(elsewhere)]) == 0
    assert json.loads((elsewhere / "training_summary.json").read_text())["family"] == "llava"

    # The run's SynthArt folder holds seed 3000: another --data-seed is refused, not silently reused.
    with pytest.raises(SystemExit, match="seed 3000"):
        script.main(["--out", str(run), "--n-images", "120", "--data-seed", "1000", "--ship-only",
                     "--ship-dir", str(tmp_path / "x")])


def test_pretrain_script_family_flag_sets_tiny_kwargs():
    from artquant_core.training import ScorerTrainingConfig
    from scripts.pretrain_tiny_scorer import set_family

    config = ScorerTrainingConfig(output_dir="/tmp/unused", model_name_or_path="tiny-random",
                                  tiny_kwargs="vision_layers=2,family=qwen2_5_vl")
    set_family(config, "llava")
    assert config.tiny_overrides() == {"vision_layers": 2, "family": "llava"}


def test_judge_config_is_the_llava_family():
    from artquant_core.config import parse_config
    from artquant_core.training import ScorerTrainingConfig

    root = Path(__file__).resolve().parents[1]
    config = parse_config(ScorerTrainingConfig, ["--config", str(root / "configs" / "pretrain_judge.yaml")],
                          output_dir="/tmp/unused")
    assert config.model_name_or_path == "tiny-random" and config.tiny_overrides()["family"] == "llava"


# --- the shipped judge ---------------------------------------------------------------------------

def _shipped_judge_folder() -> Path:
    from artquant_core.tiny import pretrained_folder

    return pretrained_folder("llava")


@pytest.mark.skipif(not (_shipped_judge_folder() / "config.json").exists(),
                    reason="the independent judge (artquant_core/pretrained/tiny_scorer_llava/) is not shipped")
def test_shipped_judge_ranks_a_fresh_draw(tmp_path):
    from artquant_core import make_synthart
    from artquant_core.images import load_image, pil_to_uint8_tensor
    from artquant_core.metrics import evaluate_scores
    from artquant_core.records import load_records
    from artquant_core.tiny import build_tiny_scorer

    summary = json.loads((_shipped_judge_folder() / "training_summary.json").read_text())
    assert summary["family"] == "llava"
    assert summary["data_seed"] not in (1000, JUDGE_FRESH_SEED)  # disjoint from the default scorer's draw
    fresh = make_synthart(tmp_path / "fresh", 300, seed=JUDGE_FRESH_SEED, size=64)
    records = [r for r in load_records(fresh) if r.task_type == "score"]
    images = torch.stack([pil_to_uint8_tensor(load_image(r.image)) for r in records])
    judge = build_tiny_scorer(family="llava", pretrained=True).eval()
    assert judge.family.name == "llava"
    with torch.no_grad():
        srcc = evaluate_scores(judge.score(images, batch_size=100).score, [r.gt_score for r in records])["srcc"]
    assert srcc >= 0.75, srcc
