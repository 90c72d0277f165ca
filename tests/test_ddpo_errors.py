"""Bad input is refused, naming the culprit, before any work; non-finite rewards stop a step cleanly."""

import hashlib

import pytest
import torch

from alignment import DDPOConfig, DDPOTrainer
from artquant_core.config import parse_config
from tests.ddpo_helpers import Brightness, tiny_config


def _refused(tmp_path, exc, match, reward_obj=Brightness(), **kw):
    out = tmp_path / "run"
    with pytest.raises(exc, match=match):
        DDPOTrainer(tiny_config(out, **kw), reward=reward_obj)
    assert not (out / "tiny_sd").exists()  # nothing was built or loaded


def test_eta_zero(tmp_path):
    _refused(tmp_path, ValueError, "sample_eta must be > 0.*log-probability", sample_eta=0.0)


def test_batch_sizes_that_do_not_divide(tmp_path):
    _refused(tmp_path, ValueError, r"batch sizes do not divide.*2\*3\*1 = 6.*= 4",
             sample_batch_size=2, sample_num_batches_per_epoch=3, train_batch_size=2,
             train_gradient_accumulation_steps=2)


def test_missing_and_empty_prompt_files(tmp_path):
    _refused(tmp_path, FileNotFoundError, "prompts: prompts file not found.*nope.txt",
             prompts=[str(tmp_path / "nope.txt")])
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    _refused(tmp_path, ValueError, "prompts: prompts file .*empty.txt is empty", prompts=[str(empty)])
    _refused(tmp_path, FileNotFoundError, "eval_prompts: prompts file not found", eval_prompts=str(tmp_path / "x.txt"))


def test_prompts_file_is_read(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("a red cat\n\na blue dog\n")
    from alignment.prompts import load_prompts

    assert load_prompts([str(f)], "prompts") == ["a red cat", "a blue dog"]
    assert load_prompts(str(f), "prompts") == ["a red cat", "a blue dog"]


def test_unknown_reward_specs(tmp_path):
    _refused(tmp_path, ValueError, "reward: cannot load reward spec 'brightnes'.*brightness", reward_obj=None,
             reward="brightnes")
    _refused(tmp_path, ValueError, "eval_rewards: cannot load reward spec 'nope'", eval_rewards=["nope"])


def test_pretrained_folder_that_is_not_a_pipeline(tmp_path):
    folder = tmp_path / "notapipe"
    folder.mkdir()
    _refused(tmp_path, ValueError, "notapipe.*not a diffusers pipeline", pretrained_model=str(folder))
    _refused(tmp_path, FileNotFoundError, "no such folder", pretrained_model=str(tmp_path / "missing"))


def test_other_values_named():
    for key, value, match in [("train_timestep_fraction", 0.0, "train_timestep_fraction"),
                              ("train_skip_last_steps", 10, r"train_skip_last_steps must be in \[0, sample_num_steps = 10\)"),
                              ("train_skip_last_steps", -1, "train_skip_last_steps"),
                              ("mixed_precision", "fp8", "mixed_precision"), ("clip_range", 0.0, "clip_range"),
                              ("log_with", "no_such_tracker", "log_with: unknown tracker")]:
        with pytest.raises(ValueError, match=match):
            DDPOConfig(**{key: value}).validate()


def test_yaml_config_and_overrides(tmp_path):
    import yaml

    y = tmp_path / "c.yaml"
    y.write_text(yaml.safe_dump({"num_epochs": 3, "prompts": ["a cat", "a dog"], "eval_rewards": ["brightness"]}))
    cfg = parse_config(DDPOConfig, ["--config", str(y), "--learning_rate", "1e-3", "--resume_from", "latest"])
    assert cfg.num_epochs == 3 and cfg.prompts == ["a cat", "a dog"] and cfg.learning_rate == 1e-3
    assert cfg.resume_from == "latest" and cfg.eval_rewards == ["brightness"]
    with pytest.raises(ValueError, match="did you mean learning_rate"):
        parse_config(DDPOConfig, ["--learning_rat", "1"])
    for argv in (["--eval_rewards", "artquant,brightness"], ["--eval_rewards", "artquant", "brightness"],
                 ["--eval_rewards", '["artquant", "brightness"]']):
        assert parse_config(DDPOConfig, argv).eval_rewards == ["artquant", "brightness"], argv
    # a whole prompt list as one JSON / YAML string (commas inside prompts stay)
    cfg = parse_config(DDPOConfig, ["--prompts", '["a cat, oil", "a dog"]', "--eval_prompts", "[a horse, a boat]"])
    assert cfg.prompts == ["a cat, oil", "a dog"] and cfg.eval_prompts == ["a horse", "a boat"]
    assert parse_config(DDPOConfig, ["--prompts", "a cat, oil"]).prompts == ["a cat, oil"]
    for bad in ('["a cat", 3]', '["a cat", "a dog]'):
        with pytest.raises(ValueError, match="prompts"):
            parse_config(DDPOConfig, ["--prompts", bad])


class NaNAtEpoch:
    name = "brightness"
    differentiable = False

    def __init__(self, bad_call):
        self.calls, self.bad_call = 0, bad_call

    def __call__(self, images, prompts=None):
        self.calls += 1
        r = images.float().mean(dim=(1, 2, 3))
        if self.calls >= self.bad_call:
            r[1] = float("nan")
        return r


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_non_finite_reward_stops_with_its_name_and_keeps_the_checkpoint(tmp_path):
    out = tmp_path / "run"
    cfg = tiny_config(out, num_epochs=3, eval_every=0, checkpoint_every=1)
    # epoch 0 scores 2 batches; the third call (epoch 1) returns NaN
    trainer = DDPOTrainer(cfg, reward=NaNAtEpoch(bad_call=3))
    before = {}
    real_save = trainer.save_checkpoint

    def save_and_remember(epoch):
        real_save(epoch)
        before.update(_digest(out / f"checkpoint-{epoch}"))

    trainer.save_checkpoint = save_and_remember
    with pytest.raises(FloatingPointError, match=r"reward 'brightness' returned a non-finite value \(nan\) for sample 1"):
        trainer.train()
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1"]
    assert _digest(out / "checkpoint-1") == before


def test_non_finite_loss_is_named(tmp_path):
    trainer = DDPOTrainer(tiny_config(tmp_path / "run", eval_every=0), reward=Brightness())
    samples, _ = trainer.sample(0)
    samples["advantages"][0] = float("nan")
    with pytest.raises(FloatingPointError, match="non-finite ddpo loss"):
        trainer.backward_micro_batch(samples, torch.tensor([0, 1]), torch.tensor([[0, 1], [1, 2]]), 1, True)


def test_shipped_configs_parse_and_validate():
    sd15 = parse_config(DDPOConfig, ["--config", "configs/ddpo_sd15.yaml"])
    assert (sd15.sample_num_steps, sd15.sample_eta, sd15.guidance_scale) == (50, 1.0, 5.0)
    assert (sd15.learning_rate, sd15.clip_range, sd15.adv_clip_max, sd15.per_prompt_buffer_size) == (3e-4, 1e-4, 5.0, 16)
    assert sd15.use_lora and sd15.mixed_precision == "bf16" and sd15.train_timestep_batch == 10
    sd15.validate(num_processes=8)
    tiny = parse_config(DDPOConfig, ["--config", "configs/ddpo_tiny.yaml", "--num_epochs", "2"])
    assert tiny.pretrained_model == "tiny" and tiny.num_epochs == 2
    tiny.validate()
