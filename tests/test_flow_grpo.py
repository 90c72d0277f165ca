"""Flow-GRPO: the flow-matching SDE step and its log-probability, config refusals, and runs on the tiny SD3."""

import math

import pytest
import torch
from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler

from alignment.flow_sde import euler_step, sde_step_with_logprob
from tests.kill_resume import assert_kill_9_resume_is_exact, subprocess_env


def _scheduler(steps=6):
    s = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    s.set_timesteps(steps)
    return s


def _reference_step(x, v, t, t_next, a, schedule, t_cap):
    """Euler-Maruyama step of dx = [v - g^2/2 * score] dt + g dw written from the score of
    x_t = (1 - t) x0 + t eps (score = -(x - (1 - t) x0) / t^2 with x0 = x - t v), in float64."""
    x, v = x.double(), v.double()
    t, t_next = torch.tensor(t, dtype=torch.float64), torch.tensor(t_next, dtype=torch.float64)
    if schedule == "flow_grpo":
        g = a * math.sqrt(float(t) / (1 - (t_cap if float(t) >= 1 else float(t))))
    else:
        g = a
    x0 = x - t * v
    score = -(x - (1 - t) * x0) / t ** 2
    dt = t_next - t
    return x + (v - 0.5 * g ** 2 * score) * dt, g * math.sqrt(float(-dt))


@pytest.mark.parametrize("schedule", ["flow_grpo", "constant"])
def test_sde_step_matches_a_float64_reference(schedule):
    sched = _scheduler()
    gen = torch.Generator().manual_seed(0)
    x, v, noise = (torch.randn(3, 4, 5, 5, generator=gen) for _ in range(3))
    idx = torch.tensor([0, 2, 5])  # the first step (t = 1), a middle one, the last (t_next = 0)
    step = sde_step_with_logprob(sched, v, idx, x, 0.7, noise_schedule=schedule, variance_noise=noise)
    t_cap = float(sched.sigmas[1])
    for b, i in enumerate(idx.tolist()):
        mean, std = _reference_step(x[b], v[b], float(sched.sigmas[i]), float(sched.sigmas[i + 1]), 0.7,
                                    schedule, t_cap)
        torch.testing.assert_close(step.mean[b].double(), mean, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(step.prev_sample[b].double(), mean + std * noise[b].double(), rtol=1e-5,
                                   atol=1e-5)
        ref_lp = torch.distributions.Normal(mean, std).log_prob(step.prev_sample[b].double()).mean()
        torch.testing.assert_close(step.log_prob[b].double(), ref_lp, rtol=1e-5, atol=1e-5)


def test_small_noise_is_the_euler_step_and_euler_is_the_scheduler_step():
    sched = _scheduler(4)
    x, v = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    step = sde_step_with_logprob(sched, v, 1, x, 1e-6)
    expected = sched.step(v, sched.timesteps[1], x, return_dict=False)[0]
    torch.testing.assert_close(step.mean, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(euler_step(sched, v, 1, x), expected, rtol=1e-6, atol=1e-6)


def test_log_prob_is_highest_at_the_mean_and_scores_given_samples():
    sched = _scheduler()
    x, v = torch.randn(4, 4, 6, 6), torch.randn(4, 4, 6, 6)
    drawn = sde_step_with_logprob(sched, v, 2, x, 0.7, generator=torch.Generator().manual_seed(1))
    at_mean = sde_step_with_logprob(sched, v, 2, x, 0.7, prev_sample=drawn.mean)
    assert (at_mean.log_prob > drawn.log_prob).all()
    again = sde_step_with_logprob(sched, v, 2, x, 0.7, prev_sample=drawn.prev_sample)
    torch.testing.assert_close(again.log_prob, drawn.log_prob)
    # the drawn sample's squared error is about one variance per element: log p ~ -1/2 - log(std sqrt(2 pi))
    expected = -0.5 - torch.log(drawn.std.flatten()[0]) - 0.5 * math.log(2 * math.pi)
    assert drawn.log_prob.mean().item() == pytest.approx(expected.item(), abs=0.1)


def test_noise_level_and_scheduler_are_refused_by_name():
    sched = _scheduler()
    x = torch.randn(1, 4, 2, 2)
    for bad in (0.0, -0.1):
        with pytest.raises(ValueError, match="noise_level must be > 0"):
            sde_step_with_logprob(sched, x, 0, x, bad)
    ddim = DDIMScheduler()
    ddim.set_timesteps(4)
    with pytest.raises(ValueError, match="FlowMatchEulerDiscreteScheduler.*got DDIMScheduler"):
        sde_step_with_logprob(ddim, x, 0, x, 0.7)
    with pytest.raises(ValueError, match="noise_schedule"):
        sde_step_with_logprob(sched, x, 0, x, 0.7, noise_schedule="cosine")


# ------------------------------------------------------------------ config and model refusals
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from alignment import FlowGRPOConfig, FlowGRPOTrainer  # noqa: E402
from artquant_core.tracking import read_metrics  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_sd3(tmp_path_factory):
    from alignment.tiny_sd3 import build_tiny_sd3

    return build_tiny_sd3(tmp_path_factory.mktemp("fg") / "tiny_sd3", seed=0)


def config(tiny_sd3, out, **kw) -> FlowGRPOConfig:
    base = dict(pretrained_model=tiny_sd3, output_dir=str(out), num_epochs=2, sample_num_steps=4, group_size=2,
                sample_batch_size=4, train_batch_size=2, max_sequence_length=8, eval_every=1, eval_num_per_prompt=1,
                eval_prompts=["a painting of a horse", "a boat on the sea"], checkpoint_every=1, sde_window_size=2,
                sde_window_start=1, learning_rate=1e-2, clip_range=0.2, reward="brightness",
                prompts=["a painting of a cat", "a painting of a dog"])
    base.update(kw)
    return FlowGRPOConfig(**base)


@pytest.mark.parametrize("kw, message", [
    (dict(noise_level=0.0), "noise_level must be > 0"),
    (dict(noise_level=-1.0), "noise_level must be > 0"),
    (dict(noise_schedule="cosine"), "noise_schedule must be one of"),
    (dict(sde_window_size=5), r"sde_window_size must be in \[1, sample_num_steps=4\]"),
    (dict(sde_window_size=2, sde_window_start=3), "sde_window_start=3 puts the SDE window outside"),
    (dict(sde_window_start=-1), "sde_window_start=-1"),
    (dict(group_size=3), "multiple of group_size"),
    (dict(group_size=1, sample_batch_size=4), "group_size must be >= 2"),
])
def test_config_errors_name_the_field(tmp_path, kw, message):
    with pytest.raises(ValueError, match=message):
        config("tiny-sd3", tmp_path, **kw)


def test_a_non_flow_scheduler_is_refused_naming_the_expected_class(tiny_sd3, tmp_path):
    import shutil

    ddim = tmp_path / "ddim_sd3"
    shutil.copytree(tiny_sd3, ddim)
    for name in ("model_index.json", "scheduler/scheduler_config.json"):
        path = ddim / name
        path.write_text(path.read_text().replace("FlowMatchEulerDiscreteScheduler", "DDIMScheduler"))
    with pytest.raises(ValueError, match="needs a FlowMatchEulerDiscreteScheduler.*got DDIMScheduler"):
        FlowGRPOTrainer(config(str(ddim), tmp_path / "run"))


# ------------------------------------------------------------------ runs on the tiny SD3
def _lora(trainer) -> dict[str, torch.Tensor]:
    from alignment.lora import lora_state_dict

    return lora_state_dict(trainer.setup.policy_unet())


def test_two_epochs_write_metrics_and_a_diffusers_lora_and_resume_exactly(tiny_sd3, tmp_path):
    out = tmp_path / "whole"
    whole = FlowGRPOTrainer(config(tiny_sd3, out))
    final = whole.train()
    rows = [r for r in read_metrics(out) if "reward_mean" in r]
    assert [r["epoch"] for r in rows] == [0, 1]
    for r in rows:
        assert {"reward_mean", "loss", "clipfrac", "approx_kl", "kl", "eval_brightness_mean", "sample_s",
                "train_s"} <= set(r)
        assert r["reward_min"] < r["reward_max"]  # G different images per prompt
    assert "eval_brightness_mean" in final and (out / "reward_curve.png").is_file()
    ckpt = out / "checkpoint-2"
    assert json.loads((ckpt / "trainer_state.json").read_text())["epoch"] == 2

    # the LoRA loads into StableDiffusion3Pipeline (diffusers format) and reproduces the trained transformer
    from diffusers import StableDiffusion3Pipeline

    pipe = StableDiffusion3Pipeline.from_pretrained(tiny_sd3, text_encoder_3=None, tokenizer_3=None)
    pipe.load_lora_weights(str(ckpt), weight_name="pytorch_lora_weights.safetensors")
    x, emb, pooled, t = torch.randn(2, 16, 8, 8), torch.randn(2, 24, 64), torch.randn(2, 64), torch.tensor([900., 20.])
    ours_model = whole.setup.policy_unet().eval()
    kw = dict(hidden_states=x, timestep=t, encoder_hidden_states=emb, pooled_projections=pooled, return_dict=False)
    with torch.no_grad():
        ours, loaded = ours_model(**kw)[0], pipe.transformer(**kw)[0]
        pipe.transformer.disable_lora()
        base = pipe.transformer(**kw)[0]
    torch.testing.assert_close(loaded, ours, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(loaded, base)

    # resume from checkpoint-1 of a 1-epoch run == the uninterrupted 2-epoch run
    FlowGRPOTrainer(config(tiny_sd3, tmp_path / "cut", num_epochs=1)).train()
    resumed = FlowGRPOTrainer(config(tiny_sd3, tmp_path / "cut", resume_from=str(tmp_path / "cut" / "checkpoint-1")))
    resumed.train()
    a, b = _lora(whole), _lora(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda r: {k: v for k, v in r.items() if not k.endswith("_s") and k != "peak_rss_mib"}
    assert [strip(r) for r in rows][1] == strip([r for r in read_metrics(tmp_path / "cut") if "reward_mean" in r][1])


# ------------------------------------------------------------------ processes: kill -9, accelerate
def _cli(tiny_sd3, out, *extra):
    return [sys.executable, "-m", "alignment.cli", "flow-grpo", "--pretrained_model", tiny_sd3, "--output_dir",
            str(out), "--sample_num_steps", "4", "--group_size", "2", "--sample_batch_size", "4",
            "--train_batch_size", "2", "--max_sequence_length", "8", "--sde_window_size", "2",
            "--sde_window_random", "true", "--eval_prompts", "a boat on the sea", "--eval_every", "2",
            "--checkpoint_every", "1", "--learning_rate", "0.01", "--clip_range", "0.2",
            "--prompts", "a painting of a cat", "a painting of a dog", *extra]


def _env():
    return subprocess_env()


@pytest.mark.slow
def test_kill_9_then_resume_latest_gives_the_uninterrupted_weights(tiny_sd3, tmp_path):
    out = assert_kill_9_resume_is_exact(lambda out, *extra: _cli(tiny_sd3, out, *extra), tmp_path)
    epochs = [r["epoch"] for r in read_metrics(out) if "reward_mean" in r]
    assert epochs == [0, 1, 2, 3]


@pytest.mark.slow
def test_two_processes_keep_identical_weights(tiny_sd3, tmp_path):
    """Gradients are averaged across processes (accelerate's DDP, gloo on CPU), accumulation included."""
    from safetensors.torch import load_file

    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           str(ROOT / "tests" / "ddp_sync_worker.py"), "flow_grpo", str(tiny_sd3), str(tmp_path)]
    done = subprocess.run(cmd, env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1))
    assert rank0.keys() == rank1.keys() and len(rank0) > 0
    for name in rank0:
        torch.testing.assert_close(rank0[name], rank1[name], rtol=0, atol=1e-6, msg=name)
    assert any(float(t.abs().max()) > 0 for n, t in rank0.items() if "lora_B" in n)  # it trained
