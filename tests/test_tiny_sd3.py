"""The tiny Stable Diffusion 3 (flow matching, no T5): built offline, loads, generates, deterministic per seed."""

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline

from alignment.tiny_sd3 import build_tiny_sd3


def _load(path):
    return StableDiffusion3Pipeline.from_pretrained(path, text_encoder_3=None, tokenizer_3=None)


def test_tiny_sd3_loads_generates_and_is_deterministic_per_seed(tmp_path):
    pipe = _load(build_tiny_sd3(tmp_path / "a", seed=0))
    assert isinstance(pipe.scheduler, FlowMatchEulerDiscreteScheduler)
    assert pipe.text_encoder_3 is None and pipe.tokenizer_3 is None
    assert pipe.transformer.config.in_channels == 16 and pipe.vae.config.latent_channels == 16
    n_params = sum(p.numel() for m in (pipe.transformer, pipe.vae, pipe.text_encoder, pipe.text_encoder_2)
                   for p in m.parameters())
    assert 1e5 < n_params < 5e6

    def generate(p):
        return p("a painting of a cat", num_inference_steps=2, height=64, width=64, output_type="pt",
                 generator=torch.Generator().manual_seed(0)).images

    images = generate(pipe)
    assert images.shape == (1, 3, 64, 64) and torch.isfinite(images).all()
    assert images.std() > 0.01  # not a flat grey: image rewards have something to move
    same = _load(build_tiny_sd3(tmp_path / "b", seed=0))
    other = _load(build_tiny_sd3(tmp_path / "c", seed=1))
    torch.testing.assert_close(generate(same), images, rtol=0, atol=0)
    a, b = (dict(p.transformer.named_parameters())["pos_embed.proj.weight"] for p in (pipe, other))
    assert not torch.equal(a, b)


def test_tiny_sd3_command_writes_the_folder(tmp_path, capsys):
    from alignment.cli import main

    assert main(["tiny-sd3", "--out", str(tmp_path / "sd3"), "--seed", "2"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "sd3")
    assert (tmp_path / "sd3" / "model_index.json").is_file()
    assert (tmp_path / "sd3" / "transformer").is_dir() and not (tmp_path / "sd3" / "text_encoder_3").exists()
