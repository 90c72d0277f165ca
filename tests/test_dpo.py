"""Diffusion-DPO: the loss, the pairs file's checks, and runs on the tiny SD (sampled pairs, a pairs file, resume)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from alignment import DiffusionDPOConfig, DiffusionDPOTrainer
from alignment.dpo_loss import diffusion_dpo_loss
from alignment.preference_pairs import load_preference_pairs
from artquant_core.tracking import read_metrics


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from alignment import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("dpo") / "tiny_sd", seed=0, pretrained=False)


def config(tiny_sd, out, **kw) -> DiffusionDPOConfig:
    base = dict(pretrained_model=tiny_sd, output_dir=str(out), num_epochs=2, sample_num_steps=3, eval_every=1,
                checkpoint_every=1, prompts=["a painting of a cat", "a painting of a dog"], reward="brightness",
                eval_prompts=["a painting of a horse"], eval_num_per_prompt=2, samples_per_prompt=3,
                prompts_per_epoch=2, train_batch_size=2, learning_rate=1e-3, beta=500.0)
    base.update(kw)
    return DiffusionDPOConfig(**base)


# ---------------------------------------------------------------------------------------------- loss
def test_loss_matches_the_formula_and_rewards_denoising_the_chosen_image_better():
    err_w, err_l = torch.tensor([0.10, 0.30]), torch.tensor([0.20, 0.25])
    ref_w, ref_l = torch.tensor([0.15, 0.30]), torch.tensor([0.15, 0.30])
    loss, stats = diffusion_dpo_loss(err_w, err_l, ref_w, ref_l, beta=10.0)
    inside = -0.5 * 10.0 * ((err_w - err_l) - (ref_w - ref_l))
    assert float(loss) == pytest.approx(float(-torch.nn.functional.logsigmoid(inside).mean()), rel=1e-6)
    assert float(stats["implicit_acc"]) == pytest.approx(0.5)  # pair 0 ranked right, pair 1 wrong
    better, _ = diffusion_dpo_loss(err_w - 0.05, err_l, ref_w, ref_l, beta=10.0)
    worse, _ = diffusion_dpo_loss(err_w, err_l - 0.05, ref_w, ref_l, beta=10.0)
    assert float(better) < float(loss) < float(worse)
    # at the start (policy = reference) the loss is log 2 whatever the errors
    start, _ = diffusion_dpo_loss(ref_w, ref_l, ref_w, ref_l, beta=5000.0)
    assert float(start) == pytest.approx(np.log(2), rel=1e-6)


# ---------------------------------------------------------------------------------------- pairs file
def _image(path, value):
    Image.fromarray(np.full((40, 48, 3), value, dtype=np.uint8)).save(path)
    return path


def _pairs_file(folder, n=4, suffix=".json"):
    rows = []
    for i in range(n):
        _image(folder / f"bright{i}.png", 200 + i)
        _image(folder / f"dark{i}.png", 30 + i)
        rows.append({"prompt": f"a painting of a cat {i % 2}", "chosen": f"bright{i}.png", "rejected": f"dark{i}.png"})
    path = folder / f"pairs{suffix}"
    if suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    else:
        path.write_text(json.dumps(rows))
    return path


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_pairs_file_resolves_relative_paths(tmp_path, suffix):
    pairs = load_preference_pairs(_pairs_file(tmp_path, 3, suffix))
    assert len(pairs) == 3 and pairs[0].chosen == tmp_path / "bright0.png" and pairs[2].prompt == "a painting of a cat 0"


def test_bad_pairs_are_named_by_row_before_any_model_loads(tmp_path):
    path = _pairs_file(tmp_path, 2)
    rows = json.loads(path.read_text())
    rows[1]["rejected"] = "gone.png"
    path.write_text(json.dumps(rows))
    with pytest.raises(FileNotFoundError, match=r"row 1: rejected image not found: .*gone.png"):
        DiffusionDPOTrainer(DiffusionDPOConfig(pairs_file=str(path), pretrained_model=str(tmp_path / "no_model")))
    rows[1] = {"prompt": "a cat", "chosen": "bright0.png"}
    path.write_text(json.dumps(rows))
    with pytest.raises(ValueError, match="row 1: missing or empty rejected"):
        load_preference_pairs(path)
    path.write_text('{"prompt": "a cat"}')  # one object: read as a one-row file
    with pytest.raises(ValueError, match="row 0: missing or empty chosen, rejected"):
        load_preference_pairs(path)
    path.write_text('[["a cat", "a.png", "b.png"]]')
    with pytest.raises(ValueError, match="row 0: expected an object"):
        load_preference_pairs(path)
    with pytest.raises(ValueError, match="beta must be > 0"):
        DiffusionDPOConfig(beta=0.0)
    with pytest.raises(ValueError, match="samples_per_prompt must be >= 2"):
        DiffusionDPOConfig(samples_per_prompt=1)


# ------------------------------------------------------------------------------------------ runs
def test_sampled_pairs_run_logs_checkpoints_and_resumes_exactly(tiny_sd, tmp_path):
    whole = DiffusionDPOTrainer(config(tiny_sd, tmp_path / "whole"))
    final = whole.train()
    rows = [r for r in read_metrics(tmp_path / "whole") if "loss" in r]
    assert len(rows) == 2 and all(r["num_pairs"] == 2 for r in rows)
    assert rows[0]["loss"] == pytest.approx(np.log(2), abs=1e-3)  # the first step starts at the reference
    assert all(r["pair_reward_margin"] > 0 for r in rows) and "eval_brightness_mean" in final
    assert (tmp_path / "whole" / "checkpoint-2" / "pytorch_lora_weights.safetensors").is_file()

    DiffusionDPOTrainer(config(tiny_sd, tmp_path / "cut", num_epochs=1)).train()
    resumed = DiffusionDPOTrainer(config(tiny_sd, tmp_path / "cut", resume_from="latest"))
    resumed.train()
    a = {n: p for n, p in whole.setup.policy_unet().named_parameters() if "lora" in n}
    b = {n: p for n, p in resumed.setup.policy_unet().named_parameters() if "lora" in n}
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_pairs_file_training_learns_the_preference(tiny_sd, tmp_path):
    """On a file of bright-over-dark pairs the policy comes to denoise the chosen images better than the
    reference does, relative to the rejected ones: the loss falls below log 2, the implicit accuracy rises."""
    pairs = _pairs_file(tmp_path, 4)
    cfg = config(tiny_sd, tmp_path / "run", pairs_file=str(pairs), num_epochs=6, eval_every=0, checkpoint_every=0,
                 train_num_inner_epochs=2, learning_rate=5e-3)
    DiffusionDPOTrainer(cfg).train()
    rows = [r for r in read_metrics(tmp_path / "run") if "loss" in r]
    assert all(r["num_pairs"] == 4 for r in rows)
    assert np.mean([r["loss"] for r in rows[-2:]]) < np.log(2) - 0.02, [r["loss"] for r in rows]
    assert np.mean([r["implicit_acc"] for r in rows[-2:]]) > 0.6, [r["implicit_acc"] for r in rows]
