"""Reward-gradient fine-tuning (DRaFT-K / AlignProp) on the tiny SD: refusal, gradients, learning, outputs, resume."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from alignment import RewardGradConfig, RewardGradTrainer
from artquant_core.config import parse_config
from artquant_core.tracking import read_metrics
from tests.kill_resume import assert_kill_9_resume_is_exact, subprocess_env

ROOT = Path(__file__).resolve().parents[1]


class Darkness:
    """1 - brightness: the opposite objective (a protocol-only reward)."""

    name = "darkness"
    differentiable = True

    def __init__(self):
        from reward import load_reward

        self.brightness = load_reward("brightness")

    def __call__(self, images, prompts=None):
        return 1.0 - self.brightness(images, prompts)


class Frozen:
    name = "frozen_metric"
    differentiable = False

    def __call__(self, images, prompts=None):
        return images.detach().float().mean(dim=(1, 2, 3))


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from alignment import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("rg") / "tiny_sd", seed=0, pretrained=False)


def config(tiny_sd, out, **kw) -> RewardGradConfig:
    base = dict(pretrained_model=tiny_sd, output_dir=str(out), num_epochs=2, sample_num_steps=3,
                truncated_backprop_steps=2, train_steps_per_epoch=1, train_batch_size=2,
                eval_prompts=["a painting of a horse", "a boat on the sea"], eval_every=1, checkpoint_every=1,
                prompts=["a painting of a cat", "a painting of a dog"], learning_rate=5e-2)
    base.update(kw)
    return RewardGradConfig(**base)


def _lora(trainer) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in trainer.setup.policy_unet().named_parameters() if "lora" in n}


# -------------------------------------------------------------- refusal and config errors
@pytest.mark.parametrize("spec, culprit", [("jpeg_compressibility", "jpeg_compressibility"),
                                           ("brightness*0.5+jpeg_compressibility*0.5", "jpeg_compressibility")])
def test_refuses_non_differentiable_reward_before_loading_anything(tmp_path, spec, culprit):
    cfg = config(str(tmp_path / "no_such_pipeline"), tmp_path / "out", reward=spec)
    with pytest.raises(ValueError, match=f"not differentiable.*{culprit}"):
        RewardGradTrainer(cfg)  # the missing pipeline folder would raise FileNotFoundError if it were loaded
    assert not (tmp_path / "out").exists()


def test_refuses_a_protocol_reward_flagged_non_differentiable(tmp_path):
    with pytest.raises(ValueError, match="frozen_metric"):
        RewardGradTrainer(config(str(tmp_path / "none"), tmp_path / "out"), reward=Frozen())


def test_unknown_reward_spec_and_missing_prompts_file_are_named(tmp_path):
    with pytest.raises(ValueError, match="reward: cannot load reward spec 'no_such_reward'"):
        RewardGradTrainer(config("tiny", tmp_path / "a", reward="no_such_reward"))
    with pytest.raises(FileNotFoundError, match="prompts.*missing.txt"):
        RewardGradTrainer(config("tiny", tmp_path / "b", prompts=[str(tmp_path / "missing.txt")]))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize("kw, message", [
    (dict(truncated_backprop_steps=5, sample_num_steps=3), "truncated_backprop_steps"),
    (dict(truncated_backprop_steps=0), "truncated_backprop_steps"),
    (dict(kl_coef=-0.1), "kl_coef"),
    (dict(guidance_scale=0.5), "guidance_scale"),
    (dict(resolution=60), "resolution"),
    (dict(sample_eta=1.5), "sample_eta"),
    (dict(mixed_precision="fp8"), "mixed_precision"),
    (dict(eval_rewards=["saturation"], eval_prompts=[]), "eval_rewards"),
])
def test_config_errors_name_the_field(tmp_path, kw, message):
    with pytest.raises(ValueError, match=message):
        config("tiny", tmp_path, **kw)
    if "truncated_backprop_steps" not in kw:  # the shared checks: DDPO's config refuses the same on construction
        from alignment import DDPOConfig

        with pytest.raises(ValueError, match=message):
            DDPOConfig(**{"sample_eta": 1.0, **kw})


def test_yaml_and_cli_keys_are_checked(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("reward: brightness\ntruncated_backprop_step: 2\n")
    with pytest.raises(ValueError, match="truncated_backprop_steps"):
        parse_config(RewardGradConfig, ["--config", str(y)])
    cfg = parse_config(RewardGradConfig, ["--truncated_backprop_steps", "3", "--prompts", "a", "b"])
    assert cfg.truncated_backprop_steps == 3 and cfg.prompts == ["a", "b"]


def test_cli_reports_a_non_differentiable_reward_in_one_line(tmp_path, capsys):
    from alignment.cli import main

    code = main(["reward-grad", "--reward", "jpeg_compressibility", "--output_dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err and "jpeg_compressibility" in err and "not differentiable" in err


# ----------------------------------------------------------------------------- gradients
def test_gradient_reaches_every_lora_matrix_only_and_checkpointing_is_exact(tiny_sd, tmp_path):
    grads = {}
    for ckpt in (True, False):
        trainer = RewardGradTrainer(config(tiny_sd, tmp_path / str(ckpt), gradient_checkpointing=ckpt))
        with torch.no_grad():  # move B off zero so that A's gradient is non-trivial too
            for n, p in trainer.setup.policy_unet().named_parameters():
                if "lora_B" in n:
                    p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) * 0.1)
        prompts, gen = trainer._micro_batch(0, 0, 0)
        images, _ = trainer.generate(prompts, gen)
        assert images.shape == (2, 3, 64, 64) and images.requires_grad
        (-trainer.setup.reward(images, prompts).mean()).backward()
        named = dict(trainer.setup.policy_unet().named_parameters())
        assert all(p.grad is None for n, p in named.items() if "lora" not in n)
        lora = {n: p.grad for n, p in named.items() if "lora" in n}
        assert lora and all(g is not None and g.abs().sum() > 0 for g in lora.values())
        grads[ckpt] = lora
    for name, g in grads[True].items():
        torch.testing.assert_close(g, grads[False][name], rtol=1e-4, atol=1e-9)


def test_gradient_flows_through_the_artquant_scorer_reward(tiny_sd, tmp_path):
    from artquant_core import build_tiny_scorer
    from reward import ArtQuantReward

    reward = ArtQuantReward(build_tiny_scorer(seed=0, pretrained=False))
    trainer = RewardGradTrainer(config(tiny_sd, tmp_path, sample_num_steps=2, truncated_backprop_steps=1,
                                       train_batch_size=1), reward=reward)
    prompts, gen = trainer._micro_batch(0, 0, 0)
    images, _ = trainer.generate(prompts, gen)
    values = reward(images, prompts)
    assert values.shape == (1,) and 0 <= float(values) <= 1
    (-values.mean()).backward()
    grads = [p.grad for n, p in trainer.setup.policy_unet().named_parameters() if "lora_B" in n]
    assert grads and all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0


def _record_grad_modes(trainer) -> list[bool]:
    """Whether autograd was on at each of the trainer's noise predictions, in call order (filled as it runs)."""
    seen, original = [], trainer.noise_prediction

    def spy(unet, latents, t, embeds):
        seen.append(torch.is_grad_enabled())
        return original(unet, latents, t, embeds)

    trainer.noise_prediction = spy
    return seen


def test_no_gradient_flows_into_the_first_steps(tiny_sd, tmp_path):
    trainer = RewardGradTrainer(config(tiny_sd, tmp_path, sample_num_steps=3, truncated_backprop_steps=1))
    seen = _record_grad_modes(trainer)
    prompts, gen = trainer._micro_batch(0, 0, 0)
    trainer.generate(prompts, gen)
    # 2 steps without a graph, then the gradient step (checkpointed: its forward runs with grad enabled)
    assert seen[:2] == [False, False] and seen[2] is True


# ------------------------------------------------------------------------ learning, outputs
@pytest.mark.slow
def test_short_run_raises_brightness_and_darkness_lowers_it(tiny_sd, tmp_path):
    kw = dict(num_epochs=3, learning_rate=1e-2, truncated_backprop_steps=2, train_steps_per_epoch=2)  # LoRA
    up = RewardGradTrainer(config(tiny_sd, tmp_path / "up", **kw)).train()
    rows = [r for r in read_metrics(tmp_path / "up") if "eval_brightness_mean" in r]
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]
    first, last = rows[0]["eval_brightness_mean"], up["eval_brightness_mean"]
    assert last > first + 0.02, (first, last)
    assert all(b["eval_brightness_mean"] > a["eval_brightness_mean"] for a, b in zip(rows, rows[1:]))

    RewardGradTrainer(config(tiny_sd, tmp_path / "down", **kw), reward=Darkness()).train()
    down = [r for r in read_metrics(tmp_path / "down") if "eval_darkness_mean" in r]
    assert down[0]["eval_darkness_mean"] == pytest.approx(1 - first, abs=2e-6)  # same eval noise, same start
    assert down[-1]["eval_darkness_mean"] > down[0]["eval_darkness_mean"] + 0.02


def test_outputs_and_checkpoint_loadable_by_stable_diffusion_pipeline(tiny_sd, tmp_path):
    out = tmp_path / "run"
    trainer = RewardGradTrainer(config(tiny_sd, out, eval_rewards=["jpeg_compressibility"]))
    final = trainer.train()
    rows = [r for r in read_metrics(out) if "step" in r]
    epochs = [r for r in rows if "reward_mean" in r]
    assert [r["epoch"] for r in epochs] == [0, 1]
    for r in epochs:
        assert {"reward_mean", "reward_std", "reward_min", "reward_max", "loss", "grad_norm", "sample_s",
                "reward_s", "train_s", "samples_per_s", "peak_rss_mib", "eval_brightness_mean",
                "eval_jpeg_compressibility_mean"} <= set(r)
        assert r["loss"] == pytest.approx(-r["reward_mean"], abs=1e-6) and r["grad_norm"] > 0
    assert rows[-1]["epoch"] == 2 and final["eval_brightness_mean"] == rows[-1]["eval_brightness_mean"]
    assert (out / "reward_curve.png").stat().st_size > 1000
    assert len(list((out / "eval").glob("epoch_*.png"))) == 3
    scores = json.loads((out / "eval" / "epoch_0002.json").read_text())["scores"]
    assert set(scores) == {"brightness", "jpeg_compressibility"}
    assert sum(scores["brightness"]) / len(scores["brightness"]) == pytest.approx(final["eval_brightness_mean"])
    ckpt = out / "checkpoint-2"
    assert json.loads((ckpt / "trainer_state.json").read_text())["epoch"] == 2

    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd)
    pipe.load_lora_weights(str(ckpt), weight_name="pytorch_lora_weights.safetensors")
    x, emb = torch.randn(2, 4, 8, 8), torch.randn(2, 77, 32)
    t = torch.tensor([500, 20])
    trainer.setup.policy_unet().eval()
    with torch.no_grad():
        ours = trainer.setup.policy_unet()(x, t, encoder_hidden_states=emb).sample
        loaded = pipe.unet(x, t, encoder_hidden_states=emb).sample
        pipe.unet.disable_lora()
        base = pipe.unet(x, t, encoder_hidden_states=emb).sample
    torch.testing.assert_close(loaded, ours, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(loaded, base)


@pytest.mark.parametrize("randomized", [False, True])
def test_resume_from_latest_equals_uninterrupted(tiny_sd, tmp_path, randomized):
    kw = dict(num_epochs=3, eval_prompts=["a painting of a horse"], sample_eta=0.5)
    if randomized:  # AlignProp's randomized truncation: K drawn per update, the same after a resume
        kw.update(truncated_backprop_min=1, truncated_backprop_steps=3, train_steps_per_epoch=2)
    whole = RewardGradTrainer(config(tiny_sd, tmp_path / "whole", **kw))
    whole.train()
    RewardGradTrainer(config(tiny_sd, tmp_path / "cut", **{**kw, "num_epochs": 2})).train()
    resumed = RewardGradTrainer(config(tiny_sd, tmp_path / "cut", resume_from="latest", **kw))
    resumed.train()
    a, b = _lora(whole), _lora(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.global_step == whole.global_step == 3 * kw.get("train_steps_per_epoch", 1)
    rows_a = [r for r in read_metrics(tmp_path / "whole") if "step" in r]
    rows_b = [r for r in read_metrics(tmp_path / "cut") if "step" in r]
    assert [r["step"] for r in rows_b] == [0, 1, 2, 3]
    strip = lambda r: {k: v for k, v in r.items() if not k.endswith("_s") and k not in ("samples_per_s", "peak_rss_mib")}
    assert [strip(r) for r in rows_a] == [strip(r) for r in rows_b]


def test_randomized_truncation_draws_k_per_update_in_range(tiny_sd, tmp_path):
    trainer = RewardGradTrainer(config(tiny_sd, tmp_path, sample_num_steps=4, truncated_backprop_steps=4,
                                       truncated_backprop_min=2))
    drawn = [trainer._truncation(epoch, update) for epoch in range(10) for update in range(3)]
    assert set(drawn) == {2, 3, 4}  # every K of the range, nothing outside it
    assert drawn == [trainer._truncation(epoch, update) for epoch in range(10) for update in range(3)]
    seen = _record_grad_modes(trainer)
    prompts, gen = trainer._micro_batch(0, 0, 0)
    trainer.generate(prompts, gen, k=2)
    assert seen[:4] == [False, False, True, True]  # 2 graph-free steps, then 2 gradient steps
    with pytest.raises(ValueError, match="truncated_backprop_min"):
        config(tiny_sd, tmp_path, truncated_backprop_steps=2, truncated_backprop_min=3)


# ------------------------------------------------------------------ processes: kill -9, accelerate
def _cli(tiny_sd, out, *extra):
    return [sys.executable, "-m", "alignment.cli", "reward-grad", "--pretrained_model", tiny_sd, "--output_dir", str(out),
            "--sample_num_steps", "3", "--truncated_backprop_steps", "2", "--train_steps_per_epoch", "1",
            "--train_batch_size", "2", "--eval_prompts", "a boat on the sea", "--checkpoint_every", "1",
            "--learning_rate", "0.05", "--prompts", "a painting of a cat", "a painting of a dog", *extra]


def _env():
    return subprocess_env()


@pytest.mark.slow
def test_kill_9_then_resume_latest_gives_the_uninterrupted_weights(tiny_sd, tmp_path):
    out = assert_kill_9_resume_is_exact(lambda out, *extra: _cli(tiny_sd, out, *extra), tmp_path)
    assert [r["step"] for r in read_metrics(out) if "step" in r] == [0, 1, 2, 3, 4]


def test_ddpo_and_reward_grad_evaluate_the_same_held_out_noise(tiny_sd, tmp_path):
    """Same seed, same base model: their first evaluations score identical images, whatever their batch sizes."""
    from alignment import DDPOConfig, DDPOTrainer
    from alignment.eval_scores import load_eval_scores

    shared = dict(pretrained_model=tiny_sd, num_epochs=1, sample_num_steps=3, eval_every=1, seed=3,
                  eval_prompts=["a painting of a horse", "a boat on the sea", "a red apple"], eval_num_per_prompt=3,
                  prompts=["a painting of a cat"], reward="brightness", sample_eta=1.0)
    RewardGradTrainer(RewardGradConfig(output_dir=str(tmp_path / "rg"), truncated_backprop_steps=1,
                                       train_steps_per_epoch=1, train_batch_size=1, **shared)).train()
    DDPOTrainer(DDPOConfig(output_dir=str(tmp_path / "ddpo"), sample_batch_size=2, sample_num_batches_per_epoch=1,
                           train_batch_size=2, **shared)).train()
    rg = load_eval_scores(tmp_path / "rg" / "eval" / "epoch_0000.json")
    ddpo = load_eval_scores(tmp_path / "ddpo" / "eval" / "epoch_0000.json")
    assert rg["prompts"] == ddpo["prompts"] and len(rg["prompts"]) == 9
    torch.testing.assert_close(torch.tensor(rg["scores"]["brightness"]), torch.tensor(ddpo["scores"]["brightness"]),
                               rtol=1e-5, atol=1e-6)
    assert len(set(rg["scores"]["brightness"])) == 9  # distinct noise per image


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["reward_grad"])  # Flow-GRPO's in test_flow_grpo.py; DDPO and DPO use the
# same accelerate pattern (prepare, no_sync on all micro-batches but the last), so these two stand for them
def test_two_processes_keep_identical_weights(tiny_sd, tmp_path, kind):
    """Gradients are averaged across processes (accelerate's DDP), accumulation and checkpointing included."""
    from safetensors.torch import load_file

    out = tmp_path / kind
    out.mkdir()
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           str(ROOT / "tests" / "ddp_sync_worker.py"), kind, str(tiny_sd), str(out)]
    done = subprocess.run(cmd, env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = load_file(str(out / "rank0.safetensors")), load_file(str(out / "rank1.safetensors"))
    assert rank0.keys() == rank1.keys() and len(rank0) > 0
    for name in rank0:
        torch.testing.assert_close(rank0[name], rank1[name], rtol=0, atol=1e-6, msg=name)
    assert any(float(t.abs().max()) > 0 for n, t in rank0.items() if "lora_B" in n)  # it trained
