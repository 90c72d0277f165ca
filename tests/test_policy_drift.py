"""scripts.policy_drift: the KL of a DDPO checkpoint's policy to its starting model, step by step."""

import pytest

from scripts.policy_drift import policy_drift


def _preset(tmp_path, sd) -> str:
    preset = tmp_path / "preset.yaml"
    preset.write_text(f"pretrained_model: {sd}\nreward: brightness\nprompts: [a red apple, a blue boat]\n"
                      "eval_prompts: []\nsample_num_steps: 3\nsample_batch_size: 2\nsample_num_batches_per_epoch: 1\n"
                      "train_batch_size: 2\nlearning_rate: 0.01\ntrain_skip_last_steps: 1\n"
                      "per_prompt_stat_tracking: false\nresolution: 64\n")
    return str(preset)


def test_drift_is_zero_at_the_start_and_grows_with_training(tmp_path):
    from alignment import DDPOConfig, DDPOTrainer, build_tiny_sd
    from artquant_core.config import parse_config

    sd = build_tiny_sd(tmp_path / "sd", pretrained=False)
    preset = _preset(tmp_path, sd)
    runs = {}
    for epochs in (1, 3):
        out = tmp_path / f"run{epochs}"
        DDPOTrainer(parse_config(DDPOConfig, ["--config", preset], output_dir=str(out), num_epochs=epochs,
                                 checkpoint_every=1)).train()
        runs[epochs] = policy_drift(out / f"checkpoint-{epochs}", preset, n=4)
    for result in runs.values():
        assert len(result["kl_per_step"]) == 3  # every recorded step
        assert all(v >= 0 for v in result["kl_per_step"])
        assert result["kl_mean_trained"] == pytest.approx(sum(result["kl_per_step"][:2]) / 2)
    assert 0 < runs[1]["kl_mean_trained"] < runs[3]["kl_mean_trained"]


def test_a_folder_that_is_no_checkpoint_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope: not a DDPO checkpoint folder"):
        policy_drift(tmp_path / "nope", "configs/ddpo_painter.yaml")
