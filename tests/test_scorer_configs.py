"""The shipped scorer presets name real checkpoints of the supported families."""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PRESETS = {
    "scorer_qwen2_5_vl_7b.yaml": "Qwen/Qwen2.5-VL-7B-Instruct",
    "scorer_qwen2_5_vl_3b.yaml": "Qwen/Qwen2.5-VL-3B-Instruct",
    "scorer_llava_1_5_7b.yaml": "llava-hf/llava-1.5-7b-hf",
}


@pytest.mark.parametrize("name,checkpoint", PRESETS.items())
def test_preset_names_a_real_checkpoint(name, checkpoint):
    config = yaml.safe_load((ROOT / "configs" / name).read_text())
    assert config["model_name_or_path"] == checkpoint
    assert config["use_lora"] is True and config["lora_rank"] == 128 and config["lora_alpha"] == 256


@pytest.mark.parametrize("name", PRESETS)
def test_preset_parses_as_training_config(name):
    training = pytest.importorskip("artquant_core.training", reason="scorer training not merged yet")
    from artquant_core.config import parse_config

    # bf16 presets are for GPUs; TrainingArguments refuses bf16 on a CPU-only machine, so parse them with it off
    import torch

    cpu_only = [] if torch.cuda.is_available() else ["--bf16", "false"]
    config = parse_config(training.ScorerTrainingConfig, ["--config", str(ROOT / "configs" / name), *cpu_only])
    assert config.model_name_or_path == PRESETS[name]


@pytest.mark.parametrize("name", sorted(set(PRESETS) | {"scorer_llava_1_5_7b_lora.yaml", "scorer_qwen2_5_vl_7b_lora.yaml"}))
def test_reference_recipes_train_the_vision_tower(name):
    # the reference (DeQA-Score / ArtQuant on mPLUG-Owl2) trains its vision encoder and abstractor
    # (freeze_vision_model False, tune_visual_abstractor True); with LoRA here that is train_vision_tower
    text = (ROOT / "configs" / name).read_text()
    assert "reference recipe" in text
    assert yaml.safe_load(text)["train_vision_tower"] is True
