"""DDPO end to end on the tiny SD: outputs, checkpoints, LoRA loading, batching equivalence, KL, full FT."""

import json

import pytest
import torch

from alignment import DDPOTrainer
from artquant_core.tracking import read_metrics
from tests.ddpo_helpers import Brightness, Composite, tiny_config

REQUIRED = {"epoch", "reward_mean", "reward_std", "reward_min", "reward_max", "kl", "approx_kl", "clipfrac",
            "loss", "sample_s", "reward_s", "train_s", "samples_per_s", "peak_rss_mib"}


def test_short_run_writes_metrics_curve_grids_and_loadable_lora(tmp_path):
    out = tmp_path / "run"
    final = DDPOTrainer(tiny_config(out), reward=Composite()).train()
    rows = [r for r in read_metrics(out) if "step" in r]
    epochs = [r for r in rows if "reward_mean" in r]
    assert [r["epoch"] for r in epochs] == [0, 1]
    for r in epochs:
        assert REQUIRED <= set(r), REQUIRED - set(r)
        assert r["reward_bright_mean"] >= 0 and r["reward_red_mean"] >= 0
        assert r["eval_mix_mean"] == pytest.approx(r["eval_mix_mean"])  # eval at each epoch
        assert r["samples_per_s"] > 0 and r["reward_min"] <= r["reward_mean"] <= r["reward_max"]
    assert rows[-1]["epoch"] == 2 and "eval_mix_mean" in rows[-1]  # final evaluation
    assert final["eval_mix_mean"] == rows[-1]["eval_mix_mean"]
    assert (out / "reward_curve.png").stat().st_size > 1000
    assert sorted(p.name for p in (out / "eval").iterdir()) == [
        f"epoch_{e:04d}.{ext}" for e in range(3) for ext in ("json", "png")]
    for r in [r for r in rows if "eval_mix_mean" in r]:  # per-image scores behind each logged mean
        scores = json.loads((out / "eval" / f"epoch_{r['epoch']:04d}.json").read_text())
        assert len(scores["scores"]["mix"]) == len(scores["prompts"]) == 2
        assert sum(scores["scores"]["mix"]) / 2 == pytest.approx(r["eval_mix_mean"], abs=1e-9)
    ckpt = out / "checkpoint-2"
    assert {"pytorch_lora_weights.safetensors", "optimizer.pt", "trainer_state.json", "rng_state.json"} <= {
        p.name for p in ckpt.iterdir()}
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["epoch"] == 2 and state["stat_tracker"]["buffers"]

    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(out / "tiny_sd"))
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    pipe.load_lora_weights(str(ckpt), weight_name="pytorch_lora_weights.safetensors")
    lora_keys = [k for k in pipe.unet.state_dict() if "lora" in k]
    assert lora_keys
    # the trained adapter changes the model's output
    x = torch.randn(1, 4, 8, 8)
    emb = torch.randn(1, 77, 32)
    with torch.no_grad():
        with_lora = pipe.unet(x, 500, encoder_hidden_states=emb).sample
        pipe.unet.disable_lora()
        without = pipe.unet(x, 500, encoder_hidden_states=emb).sample
    assert not torch.allclose(with_lora, without)
    assert all(torch.equal(before[k], v) for k, v in pipe.unet.state_dict().items() if k in before)


def test_timestep_batched_gradient_equals_one_timestep_at_a_time(tmp_path):
    trainer = DDPOTrainer(tiny_config(tmp_path / "a", sample_num_steps=4, kl_coef=0.05), reward=Brightness())
    samples, _ = trainer.sample(0)
    params = trainer.setup.trainable_params
    with torch.no_grad():  # move off the zero-initialised LoRA B so every gradient is non-trivial
        for p in params:
            p.add_(0.05 * torch.randn_like(p))
    idx, cols = torch.tensor([0, 3]), torch.tensor([[0, 2, 3], [1, 0, 2]])
    grads = {}
    for chunk in (0, 1, 2):  # 0: all three timesteps in one call
        trainer.config.train_timestep_batch = chunk
        trainer.setup.optimizer.zero_grad(set_to_none=True)
        stats = trainer.backward_micro_batch(samples, idx, cols, accum=2, sync=True)
        assert len(stats["loss"]) == {0: 1, 1: 3, 2: 2}[chunk]
        grads[chunk] = torch.cat([p.grad.flatten() for p in params])
    assert grads[0].abs().max() > 1e-6
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(grads[2], grads[0], rtol=1e-4, atol=1e-7)


def test_steps_per_call_follow_the_latent_budget(tmp_path):
    """Unset train_timestep_batch: 5 steps per call on the tiny SD's 8x8 latents, 1 at 32x32; set: as given."""
    trainer = DDPOTrainer(tiny_config(tmp_path, sample_num_steps=10), reward=Brightness())
    small = {"latents": torch.zeros(2, 11, 4, 8, 8)}
    large = {"latents": torch.zeros(2, 11, 4, 32, 32)}
    assert trainer.config.train_timestep_batch is None and trainer.config.guidance_scale > 1
    assert trainer.steps_per_call(small, batch=2, k=10) == 5 and trainer.steps_per_call(large, batch=2, k=10) == 1
    assert trainer.steps_per_call(small, batch=2, k=3) == 3
    trainer.config.train_timestep_batch = 4
    assert trainer.steps_per_call(large, batch=2, k=10) == 4
    trainer.config.train_timestep_batch = 0
    assert trainer.steps_per_call(large, batch=2, k=10) == 10


def test_the_last_steps_are_sampled_but_not_trained_with_train_skip_last_steps(tmp_path):
    trainer = DDPOTrainer(tiny_config(tmp_path, sample_num_steps=4, train_skip_last_steps=1), reward=Brightness())
    samples, _ = trainer.sample(0)
    assert samples["timesteps"].shape[0] == 4 and samples["log_probs"].shape[1] == 4  # all four sampled
    trained = []
    original = trainer.chunk_loss

    def recording(samples, idx, cols):
        trained.append(cols.clone())
        return original(samples, idx, cols)

    trainer.chunk_loss = recording
    trainer._train_inner(samples, epoch=0, inner=0)
    cols = torch.cat([c.flatten() for c in trained])
    # every sample trained on steps 0-2 (train_timestep_fraction 1), never on the last
    assert sorted(set(cols.tolist())) == [0, 1, 2] and len(cols) == 3 * samples["latents"].shape[0]


def test_kl_to_reference_and_full_finetuning(tmp_path):
    final = DDPOTrainer(tiny_config(tmp_path / "kl", num_epochs=1, eval_every=0, kl_coef=0.1, learning_rate=1e-2,
                                    train_num_inner_epochs=2), reward=Brightness()).train()
    assert final["kl"] > 0 and final["kl"] < 1e3
    out = tmp_path / "full"
    DDPOTrainer(tiny_config(out, num_epochs=1, eval_every=0, use_lora=False, kl_coef=0.1),
                reward=Brightness()).train()
    assert list((out / "checkpoint-1" / "unet").glob("*.safetensors"))


def test_log_with_sends_metrics_and_eval_grids_to_an_accelerate_tracker(tmp_path, monkeypatch):
    import accelerate.tracking

    from tests.test_infra import _FakeTracker

    monkeypatch.setitem(accelerate.tracking.LOGGER_TYPE_TO_CLASS, "tensorboard", _FakeTracker)
    _FakeTracker.sent = []
    DDPOTrainer(tiny_config(tmp_path, num_epochs=1, log_with="tensorboard"), reward=Brightness()).train()
    logged = [e for e in _FakeTracker.sent if e[0] == "log"]
    assert [e[1] for e in logged] == [0, 1] and "reward_mean" in logged[0][2]
    images = [e for e in _FakeTracker.sent if e[0] == "images"]
    assert [e[1] for e in images] == [0, 1] and list(images[0][2]) == ["eval/brightness"]
    assert _FakeTracker.sent[-1] == ("finish",)
