"""The embedded tiny SD pipeline, prompt encoding and the trajectory sampler."""

import torch
from diffusers import StableDiffusionPipeline

from alignment import build_tiny_sd
from alignment.sampling import PromptEncoder, guided_noise_pred, sample_trajectories
from alignment.tiny_sd import build_clip_vocab


def test_tiny_sd_loads_and_generates_64px(tmp_path):
    path = build_tiny_sd(tmp_path / "sd", seed=0, pretrained=False)
    pipe = StableDiffusionPipeline.from_pretrained(path)
    n_params = sum(p.numel() for m in (pipe.unet, pipe.vae, pipe.text_encoder) for p in m.parameters())
    assert 5e5 < n_params < 5e6
    assert pipe.unet.config.block_out_channels == [32, 64] or tuple(pipe.unet.config.block_out_channels) == (32, 64)
    assert pipe.unet.config.cross_attention_dim == 32
    out = pipe(["a red cat"], num_inference_steps=3, output_type="pt", guidance_scale=5.0,
               generator=torch.Generator().manual_seed(0))
    assert out.images.shape == (1, 3, 64, 64)
    assert torch.isfinite(out.images).all()
    # deterministic per seed
    again = StableDiffusionPipeline.from_pretrained(build_tiny_sd(tmp_path / "sd2", seed=0, pretrained=False))
    a = dict(pipe.unet.named_parameters())["conv_in.weight"]
    assert torch.equal(a, dict(again.unet.named_parameters())["conv_in.weight"])


def test_tokenizer_encodes_known_words_as_single_tokens(tmp_path):
    vocab, merges = build_clip_vocab(["painting", "sunset"])
    assert "painting</w>" in vocab and "sunset</w>" in vocab and len(merges) > 5
    pipe = StableDiffusionPipeline.from_pretrained(build_tiny_sd(tmp_path / "sd", pretrained=False))
    ids = pipe.tokenizer("a painting of a sunset").input_ids
    assert ids[0] == pipe.tokenizer.bos_token_id and ids[-1] == pipe.tokenizer.eos_token_id
    assert len(ids) == 2 + 5
    assert pipe.tokenizer("zebra!").input_ids[1:-1]  # unknown words fall back to bytes


def test_tiny_sd_folder_is_identical_when_built_by_separate_processes(tmp_path):
    """Hash-ordered tie-breaking in a BPE trainer once gave each process its own tokenizer."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    builders = []
    for name in ("a", "b"):  # side by side: two interpreters, each with its own hash seed
        code = f"from alignment import build_tiny_sd; build_tiny_sd({str(tmp_path / name)!r}, seed=0, pretrained=False)"
        builders.append(subprocess.Popen([sys.executable, "-c", code], cwd=root, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}))
    for builder in builders:
        _, err = builder.communicate(timeout=300)
        assert builder.returncode == 0, err[-2000:]
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert any(f.name == "merges.txt" for f in files) and any(f.suffix == ".safetensors" for f in files)
    differ = [str(f) for f in files if (tmp_path / "a" / f).read_bytes() != (tmp_path / "b" / f).read_bytes()]
    assert not differ, differ


def test_sampler_records_a_reproducible_trajectory(tmp_path):
    pipe = StableDiffusionPipeline.from_pretrained(build_tiny_sd(tmp_path / "sd", pretrained=False))
    enc = PromptEncoder(pipe.tokenizer, pipe.text_encoder)
    pe, ne = enc(["a red cat", "a blue dog"]), enc([""])
    assert len(enc._cache) == 3 and torch.equal(enc(["a red cat"])[0], pe[0])
    kw = dict(num_steps=4, guidance_scale=5.0, eta=1.0, resolution=64)
    tr = sample_trajectories(pipe.unet, pipe.scheduler, pipe.vae, pe, ne, generator=torch.Generator().manual_seed(0), **kw)
    assert tr.latents.shape == (2, 5, 4, 8, 8) and tr.log_probs.shape == (2, 4)
    assert tr.images.shape == (2, 3, 64, 64) and 0 <= tr.images.min() and tr.images.max() <= 1
    assert not tr.latents.is_inference()
    tr2 = sample_trajectories(pipe.unet, pipe.scheduler, pipe.vae, pe, ne, generator=torch.Generator().manual_seed(0), **kw)
    assert torch.equal(tr.latents, tr2.latents) and torch.equal(tr.log_probs, tr2.log_probs)
    # the recorded log-probs are those of the recorded steps under the same guided prediction
    from alignment import ddim_step_with_logprob

    i = 1
    t = tr.timesteps[i]
    pred = guided_noise_pred(pipe.unet, tr.latents[:, i], t, pe, ne, 5.0)
    _, lp = ddim_step_with_logprob(pipe.scheduler, pred, t, tr.latents[:, i], 1.0, prev_sample=tr.latents[:, i + 1])
    torch.testing.assert_close(lp, tr.log_probs[:, i], rtol=1e-4, atol=1e-4)
    # per-sample timesteps in one batch (timestep-batched training) give the same log-probs
    x = torch.cat([tr.latents[:, 0], tr.latents[:, 2]])
    ts = torch.cat([tr.timesteps[0].expand(2), tr.timesteps[2].expand(2)])
    pred = guided_noise_pred(pipe.unet, x, ts, pe.repeat(2, 1, 1), ne, 5.0)
    _, lp = ddim_step_with_logprob(pipe.scheduler, pred, ts, x, 1.0,
                                   prev_sample=torch.cat([tr.latents[:, 1], tr.latents[:, 3]]))
    torch.testing.assert_close(lp, torch.cat([tr.log_probs[:, 0], tr.log_probs[:, 2]]), rtol=1e-4, atol=1e-4)
