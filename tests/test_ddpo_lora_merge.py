"""Sampling with the LoRA folded into the base weights: same policy, no drift, PPO ratio stays 1."""

import torch

from alignment import DDPOTrainer
from alignment.ddim import ddim_step_full
from alignment.lora import adapters_disabled, lora_merged, lora_state_dict
from alignment.sampling import guided_noise_pred
from tests.ddpo_helpers import Brightness, tiny_config


def _trainer(tmp_path, **kw):
    trainer = DDPOTrainer(tiny_config(tmp_path / "run", eval_prompts=[], **kw), reward=Brightness())
    torch.manual_seed(1)
    with torch.no_grad():  # a trained-looking adapter: lora_B starts at zero, so merging would be a no-op
        for p in trainer.setup.trainable_params:
            p.add_(torch.randn_like(p) * 0.02)
    return trainer


def test_merged_unet_matches_unmerged_forward_and_is_restored_exactly(tmp_path):
    trainer = _trainer(tmp_path)
    unet = trainer.setup.policy_unet().eval()
    before = {n: p.detach().clone() for n, p in unet.named_parameters()}
    x = torch.randn(2, 4, 8, 8)
    t = torch.tensor([500, 20])
    emb = torch.randn(2, 77, unet.config.cross_attention_dim)
    with torch.no_grad():
        plain = unet(x, t, encoder_hidden_states=emb).sample
        with lora_merged(unet):
            merged = unet(x, t, encoder_hidden_states=emb).sample
            changed = [n for n, p in unet.named_parameters() if "lora" not in n and not torch.equal(p, before[n])]
        with adapters_disabled(unet):
            base_only = unet(x, t, encoder_hidden_states=emb).sample
    assert changed and all(n.endswith("base_layer.weight") for n in changed)  # really merged, only projections
    assert (plain - base_only).abs().max() > 1e-3  # the adapter matters, so the agreement below means something
    torch.testing.assert_close(merged, plain, rtol=1e-5, atol=1e-5)
    for n, p in unet.named_parameters():  # bit-for-bit restored; adapters trainable again
        assert torch.equal(p, before[n]), n
    assert all(p.requires_grad for p in trainer.setup.trainable_params)


def test_recorded_log_probs_equal_the_training_forward(tmp_path):
    """The PPO ratio exp(new - old) must start at 1: merged sampling's log-probs vs the unmerged training
    forward on the same latents, for the same weights, agree to 1e-5 (the clip range is 1e-4)."""
    trainer = _trainer(tmp_path, sample_num_steps=4)
    s, cfg = trainer.setup, trainer.config
    adapter_before = {k: v.clone() for k, v in lora_state_dict(s.policy_unet()).items()}
    samples, _ = trainer.sample(0)
    for k, v in lora_state_dict(s.policy_unet()).items():
        assert torch.equal(v, adapter_before[k]), k
    n, steps = samples["log_probs"].shape
    x_t = samples["latents"][:, :-1].flatten(0, 1)
    x_prev = samples["latents"][:, 1:].flatten(0, 1)
    t = samples["timesteps"].repeat(n)
    emb = samples["prompt_embeds"].repeat_interleave(steps, dim=0)
    s.unet.train()
    with torch.no_grad():
        pred = guided_noise_pred(s.unet, x_t, t, emb, s.negative_embeds, cfg.guidance_scale)
        new = ddim_step_full(s.scheduler, pred, t, x_t, cfg.sample_eta, prev_sample=x_prev).log_prob.view(n, steps)
    torch.testing.assert_close(new, samples["log_probs"], rtol=0, atol=1e-5)


def test_half_precision_weights_are_not_merged(tmp_path):
    trainer = _trainer(tmp_path)
    assert trainer.setup.sampling_policy().__class__.__name__ != "nullcontext"
    trainer.setup.policy_unet().to(torch.bfloat16)
    assert trainer.setup.sampling_policy().__class__.__name__ == "nullcontext"
