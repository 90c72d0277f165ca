"""Every shipped config file loads, and every key in it is a real field of what it configures."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))


def _config_class(path: Path):
    """Which dataclass a YAML preset configures, by its name."""
    name = path.name
    if name.startswith(("scorer_", "pretrain_")):
        from artquant_core.training import ScorerTrainingConfig

        return ScorerTrainingConfig
    if name.startswith("ddpo_"):
        from alignment.ddpo_config import DDPOConfig

        return DDPOConfig
    if name.startswith("reward_grad_"):
        from alignment.reward_grad_config import RewardGradConfig

        return RewardGradConfig
    if name.startswith("flow_grpo_"):
        from alignment.flow_grpo_config import FlowGRPOConfig

        return FlowGRPOConfig
    if name.startswith("dpo_"):
        from alignment.dpo_config import DiffusionDPOConfig

        return DiffusionDPOConfig
    if name.startswith("demo"):
        from alignment.demo.config import DemoConfig

        return DemoConfig
    raise AssertionError(f"{path}: no rule says which config class this file is for; add one to this test")


def test_there_are_presets_of_every_kind():
    names = {p.relative_to(ROOT / "configs").as_posix() for p in CONFIGS}
    for expected in ("demo.yaml", "demo_quick.yaml", "ddpo_sd15.yaml", "reward_grad_sd15.yaml",
                     "accelerate/single_gpu.yaml", "accelerate/multi_gpu.yaml", "accelerate/deepspeed_zero2.yaml",
                     "accelerate/multi_node.yaml"):
        assert expected in names, expected
    assert any(n.startswith("scorer_qwen2_5_vl") for n in names) and any(n.startswith("scorer_llava") for n in names)


@pytest.mark.parametrize("path", [p for p in CONFIGS if "accelerate" not in p.parts], ids=lambda p: p.name)
def test_training_preset_keys_are_fields(path):
    from artquant_core.config import load_yaml_config

    cls = _config_class(path)
    values = load_yaml_config(path, cls)  # raises on any key that is not a field, naming it
    assert values, f"{path} is empty"
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in values.items():
        default = fields[key].default
        if isinstance(default, bool):
            assert isinstance(value, bool), f"{path}: {key} should be true/false, got {value!r}"
        elif isinstance(default, (int, float)) and not isinstance(default, bool) and value is not None:
            assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{path}: {key}={value!r}"


@pytest.mark.parametrize("path", [p for p in CONFIGS
                                  if p.name.startswith(("ddpo_", "reward_grad_", "flow_grpo_", "dpo_", "demo"))],
                         ids=lambda p: p.name)
def test_dataclass_presets_build(path):
    """Plain-dataclass presets go through the real parser (types converted, checks run)."""
    from artquant_core.config import parse_config

    config = parse_config(_config_class(path), ["--config", str(path)])
    if hasattr(config, "validate") and not path.name.startswith("demo"):
        config.validate()  # again, as a trainer does at start (construction already ran it)


def test_demo_presets_match_the_code():
    """configs/demo*.yaml are the presets `artquant demo [--quick]` uses, key for key."""
    from alignment.demo.config import QUICK_PRESET, DemoConfig

    defaults = DemoConfig().run_settings()
    assert yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text()) == defaults
    assert yaml.safe_load((ROOT / "configs" / "demo_quick.yaml").read_text()) == {**defaults, **QUICK_PRESET}


def _accelerate_launch_keys() -> set[str]:
    from accelerate.commands.launch import launch_command_parser

    return {a.dest for a in launch_command_parser()._actions}


@pytest.mark.parametrize("path", [p for p in CONFIGS if "accelerate" in p.parts], ids=lambda p: p.name)
def test_accelerate_config_matches_schema(path):
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.utils import DistributedType

    config = ClusterConfig.from_yaml_file(str(path))  # refuses unknown top-level keys
    assert config.distributed_type in {t.value for t in DistributedType} or isinstance(config.distributed_type,
                                                                                     DistributedType)
    assert config.num_processes >= config.num_machines >= 1
    # nested DeepSpeed / FSDP keys become `accelerate launch` arguments of the same name
    launch_keys = _accelerate_launch_keys()
    for nested in (config.deepspeed_config, config.fsdp_config):
        for key in nested or {}:
            assert key in launch_keys, f"{path}: {key!r} is not an accelerate launch option"
    if config.num_machines > 1:
        assert config.main_process_ip and config.main_process_port
