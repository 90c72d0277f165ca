"""The painter: SynthArt captions, its prompt files, the training stages and the shipped pipeline."""

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from artquant_core.levels import APDD_SCALE
from artquant_core.records import load_records, write_records
from artquant_core.synthart import make_synthart
from artquant_core.synthart.attributes import SHAPES
from artquant_core.synthart.captions import caption_vocabulary, colour_name, position_phrase
from artquant_core.synthart.dataset import synth_item
from artquant_core.synthart.descriptions import NEGATIVE_WORDS, POSITIVE_WORDS

ROOT = Path(__file__).resolve().parents[1]
PAINTER_DIR = ROOT / "alignment" / "pretrained" / "tiny_painter"
needs_painter = pytest.mark.skipif(not (PAINTER_DIR / "model_index.json").is_file(),
                                   reason="shipped painter not in this checkout")


# ---------------------------------------------------------------- captions

def test_captions_are_deterministic_content_only_and_use_the_caption_vocabulary():
    captions = [synth_item(5, i, None)["caption"] for i in range(300)]
    assert captions == [synth_item(5, i, None)["caption"] for i in range(300)]
    assert captions != [synth_item(6, i, None)["caption"] for i in range(300)]
    vocabulary = set(caption_vocabulary())
    quality_words = set(APDD_SCALE.words) | set(POSITIVE_WORDS) | set(NEGATIVE_WORDS) | {
        "blurry", "noisy", "sharp", "tilted", "level", "balanced", "cluttered", "harmonious", "score"}
    for text in captions:
        words = set(text.replace(",", "").split())
        assert words <= vocabulary, words - vocabulary
        assert not words & quality_words, text
    assert len(set(captions)) > 250  # they describe the paintings, not a template


def test_caption_names_the_drawn_shape_position_and_horizon():
    for i in range(50):
        item = synth_item(2, i, None)
        lat, text = item["latent"], item["caption"]
        assert text.split(",")[0].split()[2] == lat.shape
        assert position_phrase(lat.grid_x, lat.grid_y) in text
        expected = "high" if lat.horizon < 0.45 else "low" if lat.horizon > 0.55 else "middle"
        assert text.endswith(f"{expected} horizon")


def test_position_phrase_hides_placement_quality_and_colour_names():
    # an edge cell (0) and a third cell (1) read the same: the caption never gives away composition quality
    assert position_phrase(0, 0) == position_phrase(1, 1) == "on the upper left"
    assert position_phrase(2, 2) == "in the centre" and position_phrase(4, 2) == "on the right"
    assert colour_name((0.9, 0.1, 0.1)) == "red" and colour_name((0.1, 0.2, 0.9)) == "blue"
    assert colour_name((0.2, 0.05, 0.05)) == "dark red" and colour_name((0.5, 0.5, 0.5)) == "grey"


def test_records_carry_the_caption_through_load_and_write(tmp_path):
    path = make_synthart(tmp_path / "sa", 6, seed=11)
    raw = json.loads(Path(path).read_text())
    assert all(isinstance(r["caption"], str) and r["caption"] for r in raw)
    assert raw[0]["caption"] == raw[1]["caption"] == synth_item(11, 0, None)["caption"]
    records = load_records(path)
    assert records[0].extra["caption"] == raw[0]["caption"]
    write_records(records, tmp_path / "copy.json")
    assert [r["caption"] for r in json.loads((tmp_path / "copy.json").read_text())] == [r["caption"] for r in raw]


# ---------------------------------------------------------------- prompt files

def test_prompt_files_are_disjoint_held_out_combinations_and_reproducible(tmp_path):
    from artquant_core.synthart.captions import is_held_out, main_subject, painter_prompts
    from scripts.make_painter_prompts import main

    train = (ROOT / "configs/prompts/painter_train.txt").read_text().splitlines()
    held_out = (ROOT / "configs/prompts/painter_eval.txt").read_text().splitlines()
    assert len(train) >= 128 and len(held_out) >= 32
    assert not set(train) & set(held_out)
    train_combos = {main_subject(t) for t in train}
    assert not train_combos & {main_subject(t) for t in held_out}
    assert all(is_held_out(t) for t in held_out) and not any(is_held_out(t) for t in train)
    # every shape appears in both files: only the combination is held out
    assert {main_subject(t)[1] for t in held_out} == set(SHAPES) == {main_subject(t)[1] for t in train}
    main(["--out-dir", str(tmp_path)])
    assert (tmp_path / "painter_train.txt").read_text().splitlines() == train
    assert (tmp_path / "painter_eval.txt").read_text().splitlines() == held_out
    assert painter_prompts() == (train, held_out)


# ---------------------------------------------------------------- training stages

def test_latent_normalisation_keeps_the_decoder_exact_and_whitens_latents():
    from alignment import painter_training as pt
    from alignment.tiny_sd import painter_architecture, tiny_sd_pipeline

    vae = tiny_sd_pipeline(painter_architecture(), seed=0).vae.eval()
    images = torch.from_numpy(np.stack([synth_item(0, i, 64)["pixels"] for i in range(12)]))
    x = pt.uint8_to_vae_input(images)
    with torch.no_grad():
        z = vae.encode(x).latent_dist.mean
        before = vae.decode(z).sample
        stats = pt.normalise_latents(vae, z)
        z_new = vae.encode(x).latent_dist.mean
        after = vae.decode(z_new).sample
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(z_new.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(z_new.std(dim=(0, 2, 3)), torch.ones(4), atol=1e-3, rtol=0)
    assert len(stats["latent_channel_std"]) == 4
    # the pipelines decode latents / scaling_factor: whitened latents must be decoded as they are
    assert vae.config.scaling_factor == 1.0 and vae.config.shift_factor is None


def test_texture_loss_asks_for_grain_of_the_right_strength_not_the_same_noise_nor_stripes():
    """Independent noise of the target's strength satisfies the texture term (where pixel errors grow); a
    smooth reconstruction, weaker noise, or vertical stripes as strong as the noise do not."""
    import torch.nn.functional as F

    from alignment.painter_training import texture_loss

    gen = torch.Generator().manual_seed(0)
    smooth = torch.linspace(-0.5, 0.5, 64).view(1, 1, 1, 64).expand(4, 3, 64, 64)
    noisy = smooth + 0.3 * torch.randn(smooth.shape, generator=gen)
    other_noise = smooth + 0.3 * torch.randn(smooth.shape, generator=gen)
    too_little = smooth + 0.1 * torch.randn(smooth.shape, generator=gen)
    columns = torch.arange(64).view(1, 1, 1, 64)
    stripes = smooth + 0.3 * (1 - 2 * (columns % 2)).float()  # neighbours differ by 0.6 across, 0 down
    assert texture_loss(noisy, noisy) == 0.0
    assert texture_loss(other_noise, noisy) < 0.5 * texture_loss(too_little, noisy)
    assert texture_loss(too_little, noisy) < texture_loss(smooth, noisy)
    assert texture_loss(stripes, noisy) > 2 * texture_loss(other_noise, noisy)
    # squared error prefers the smooth picture: that is why a decoder trained on it draws no noise
    assert F.mse_loss(smooth, noisy) < 0.6 * F.mse_loss(other_noise, noisy)


@needs_painter
def test_painter_script_fine_tunes_a_given_vae_with_the_texture_term(tmp_path, capsys):
    from safetensors.torch import load_file

    from scripts.pretrain_tiny_sd import main

    threads = torch.get_num_threads()
    common = ["--n-images", "8", "--vae-steps", "1", "--vae-batch", "2", "--vae-lr", "1e-7", "--unet-steps", "1",
              "--unet-batch", "2", "--threads", "1", "--vae-texture-weight", "3"]
    try:
        assert main(["--out", str(tmp_path / "run"), *common, "--vae-init", str(PAINTER_DIR / "vae")]) == 0
        shipped = load_file(PAINTER_DIR / "vae" / "diffusion_pytorch_model.safetensors")
        tuned = load_file(tmp_path / "run" / "painter" / "vae" / "diffusion_pytorch_model.safetensors")
        for name in ("encoder.conv_in.weight", "decoder.conv_out.weight"):  # one step at lr 1e-7 from the shipped VAE
            assert torch.allclose(tuned[name], shipped[name], atol=1e-5), name
        summary = json.loads((tmp_path / "run" / "painter" / "training_summary.json").read_text())
        assert summary["vae"]["init"] == str(PAINTER_DIR / "vae") and summary["vae"]["texture_weight"] == 3.0

        with pytest.raises(SystemExit):
            main(["--out", str(tmp_path / "a"), *common, "--vae-init", str(PAINTER_DIR / "vae"),
                  "--vae-initial-std", "0.02"])
        assert "goes with neither --vae-from" in capsys.readouterr().err
        with pytest.raises(SystemExit):
            main(["--out", str(tmp_path / "a"), *common, "--vae-init", str(PAINTER_DIR / "vae"),
                  "--vae-from", str(PAINTER_DIR / "vae")])
        assert "goes with neither --vae-from" in capsys.readouterr().err
        with pytest.raises(SystemExit):
            main(["--out", str(tmp_path / "b"), *common, "--vae-init", str(tmp_path / "nothing")])
        assert "no diffusion_pytorch_model.safetensors there" in capsys.readouterr().err
    finally:
        torch.set_num_threads(threads)


def test_vae_initial_posterior_std_is_set_on_a_fresh_start_only(tmp_path):
    from alignment import painter_training as pt
    from alignment.tiny_sd import painter_architecture, tiny_sd_pipeline

    images = torch.from_numpy(np.stack([synth_item(0, i, 64)["pixels"] for i in range(4)]))
    cfg = pt.PainterStageConfig(steps=1, batch_size=2, learning_rate=1e-6, bf16=False)
    vae = tiny_sd_pipeline(painter_architecture(), seed=0).vae
    with torch.no_grad():
        assert float(vae.encode(pt.uint8_to_vae_input(images)).latent_dist.std.mean()) > 0.5  # random init: ~1
    pt.train_vae(vae, images, cfg, tmp_path / "stage", log=lambda row: None, initial_posterior_std=0.02)
    with torch.no_grad():
        std = vae.encode(pt.uint8_to_vae_input(images)).latent_dist.std
    torch.testing.assert_close(std, torch.full_like(std, 0.02), rtol=0.05, atol=0)
    # a resumed stage keeps its trained spread: the option only shapes the start
    with torch.no_grad():
        vae.quant_conv.bias[4:] = 0.0
    pt.train_vae(vae, images, pt.PainterStageConfig(steps=1, batch_size=2, learning_rate=1e-6, bf16=False),
                 tmp_path / "stage", log=lambda row: None, initial_posterior_std=0.5)
    with torch.no_grad():
        resumed = vae.encode(pt.uint8_to_vae_input(images)).latent_dist.std
    torch.testing.assert_close(resumed, std, rtol=0.05, atol=0)


def test_unet_training_keeps_a_frozen_text_encoder_unchanged(tmp_path):
    from alignment import painter_training as pt
    from alignment.tiny_sd import painter_architecture, tiny_sd_pipeline

    pipe = tiny_sd_pipeline(painter_architecture(), seed=0)
    latents = torch.randn(8, 4, 16, 16)
    captions = [synth_item(0, i, 64)["caption"] for i in range(8)]
    cfg = pt.PainterStageConfig(steps=3, batch_size=4, learning_rate=1e-3, warmup_steps=1, bf16=False)
    encoder_before = {k: v.clone() for k, v in pipe.text_encoder.state_dict().items()}
    unet_before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    pt.train_unet(pipe.unet, pipe.text_encoder, pipe.tokenizer, latents, torch.zeros_like(latents), captions,
                  pipe.scheduler, cfg, tmp_path / "frozen", log=lambda row: None, train_text_encoder=False)
    assert all(torch.equal(v, encoder_before[k]) for k, v in pipe.text_encoder.state_dict().items())
    assert not all(torch.equal(v, unet_before[k]) for k, v in pipe.unet.state_dict().items())
    assert not pipe.text_encoder.training
    # the default trains both
    pt.train_unet(pipe.unet, pipe.text_encoder, pipe.tokenizer, latents, torch.zeros_like(latents), captions,
                  pipe.scheduler, cfg, tmp_path / "joint", log=lambda row: None)
    assert not all(torch.equal(v, encoder_before[k]) for k, v in pipe.text_encoder.state_dict().items())


def test_a_stage_past_its_deadline_checkpoints_logs_and_resumes(tmp_path):
    """A run split into calls of limited length: past its deadline a stage saves, logs and returns after the step
    it is in; the next call continues from that checkpoint to the end."""
    import time

    from alignment import painter_training as pt
    from alignment.tiny_sd import painter_architecture, tiny_sd_pipeline

    pipe = tiny_sd_pipeline(painter_architecture(), seed=0)
    latents = torch.randn(8, 4, 16, 16)
    captions = [synth_item(0, i, 64)["caption"] for i in range(8)]
    rows = []
    late = pt.PainterStageConfig(steps=3, batch_size=2, learning_rate=1e-3, warmup_steps=1, bf16=False,
                                 checkpoint_every=100, deadline=time.time() - 1.0)
    result, _ = pt.train_unet(pipe.unet, pipe.text_encoder, pipe.tokenizer, latents, torch.zeros_like(latents),
                              captions, pipe.scheduler, late, tmp_path, log=rows.append)
    assert result["steps"] == 1 and not result["complete"]
    assert (tmp_path / "checkpoint-1").is_dir() and [r["step"] for r in rows] == [1]
    on_time = pt.PainterStageConfig(steps=3, batch_size=2, learning_rate=1e-3, warmup_steps=1, bf16=False,
                                    checkpoint_every=100, deadline=time.time() + 3600.0)
    result, _ = pt.train_unet(pipe.unet, pipe.text_encoder, pipe.tokenizer, latents, torch.zeros_like(latents),
                              captions, pipe.scheduler, on_time, tmp_path, log=rows.append)
    assert result["steps"] == 3 and result["complete"] and [r["step"] for r in rows] == [1, 3]


@needs_painter
def test_painter_script_starts_from_a_finished_painter_vae_and_names_a_wrong_one(tmp_path, capsys):
    from diffusers import AutoencoderKL
    from safetensors.torch import load_file

    from scripts.pretrain_tiny_sd import main

    threads = torch.get_num_threads()
    common = ["--n-images", "8", "--unet-steps", "1", "--unet-batch", "2", "--threads", "1"]
    try:
        assert main(["--out", str(tmp_path / "run"), *common, "--vae-from", str(PAINTER_DIR / "vae")]) == 0
        assert "its stage skipped" in capsys.readouterr().out
        assert not (tmp_path / "run" / "vae_stage").exists()
        shipped = load_file(PAINTER_DIR / "vae" / "diffusion_pytorch_model.safetensors")
        painted = load_file(tmp_path / "run" / "painter" / "vae" / "diffusion_pytorch_model.safetensors")
        assert shipped.keys() == painted.keys() and all(torch.equal(shipped[k], painted[k]) for k in shipped)
        summary = json.loads((tmp_path / "run" / "painter" / "training_summary.json").read_text())
        assert summary["vae"] == {"from": str(PAINTER_DIR / "vae")} and "deadline" not in summary["unet"]

        with pytest.raises(SystemExit):
            main(["--out", str(tmp_path / "a"), *common, "--vae-from", str(tmp_path / "nothing")])
        assert "expected a diffusers AutoencoderKL folder" in capsys.readouterr().err
        AutoencoderKL.from_pretrained(PAINTER_DIR / "vae").save_pretrained(tmp_path / "sd_scaled")
        config = json.loads((tmp_path / "sd_scaled" / "config.json").read_text())
        (tmp_path / "sd_scaled" / "config.json").write_text(json.dumps({**config, "scaling_factor": 0.18215}))
        with pytest.raises(SystemExit):
            main(["--out", str(tmp_path / "b"), *common, "--vae-from", str(tmp_path / "sd_scaled")])
        assert "scaling_factor 0.18215, not 1.0" in capsys.readouterr().err
        (tmp_path / "sd_scaled" / "config.json").write_text(json.dumps({**config, "latent_channels": 8}))
        with pytest.raises(SystemExit):
            main(["--out", str(tmp_path / "c"), *common, "--vae-from", str(tmp_path / "sd_scaled")])
        assert "latent_channels 8, this run's UNet expects 4" in capsys.readouterr().err
    finally:
        torch.set_num_threads(threads)


def test_painter_script_resumes_exactly_from_its_checkpoints(tmp_path):
    """A run stopped mid-VAE (step 2 of 4), then mid-UNet (5 of 6), and continued ends with the same weights as one uninterrupted run."""
    from safetensors.torch import load_file

    common = ["--n-images", "48", "--vae-steps", "4", "--vae-batch", "4", "--unet-steps", "6", "--unet-batch", "4",
              "--threads", "1", "--checkpoint-every", "100"]
    from scripts.pretrain_tiny_sd import main

    def run(out, *extra):
        """One invocation of the script (in this process: each builds its models and state from the run folder
        alone, as a fresh process would; ``--threads 1`` is undone afterwards)."""
        threads = torch.get_num_threads()
        stdout = io.StringIO()
        try:
            with contextlib.redirect_stdout(stdout):
                assert main(["--out", str(out), *common, *extra]) == 0
        finally:
            torch.set_num_threads(threads)
        return stdout.getvalue()

    run(tmp_path / "whole")
    assert "stopped in the VAE stage" in run(tmp_path / "parts", "--stop-at-step", "2")
    assert (tmp_path / "parts" / "vae_stage" / "checkpoint-2").is_dir()
    assert "stopped in the UNet stage" in run(tmp_path / "parts", "--stop-at-step", "5")
    assert not (tmp_path / "parts" / "painter").exists()
    run(tmp_path / "parts")
    for part in ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
                 "text_encoder/model.safetensors"):
        a = load_file(tmp_path / "whole" / "painter" / part)
        b = load_file(tmp_path / "parts" / "painter" / part)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part
    summary = json.loads((tmp_path / "parts" / "painter" / "training_summary.json").read_text())
    assert summary["unet"]["steps"] == 6 and summary["data"]["n_images"] == 48
    assert json.loads((tmp_path / "parts" / "painter" / "vae" / "config.json").read_text())["scaling_factor"] == 1.0
    assert {"command", "machine", "wall_minutes_this_invocation"} <= summary.keys()


def test_a_run_folder_vae_saved_with_sd_scaling_is_decoded_at_scale_one(tmp_path, capsys):
    """Run folders written before normalise_latents set the scale keep SD's 0.18215 in vae/config.json."""
    from alignment.tiny_sd import painter_architecture, tiny_sd_pipeline
    from scripts.pretrain_tiny_sd import load_run_vae

    vae = tiny_sd_pipeline(painter_architecture(), seed=0).vae
    assert vae.config.scaling_factor == 0.18215
    vae.save_pretrained(tmp_path / "vae")
    loaded = load_run_vae(tmp_path)
    assert loaded.config.scaling_factor == 1.0 and "scaling_factor 0.18215 -> 1.0" in capsys.readouterr().out
    for name, weight in vae.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], weight), name


def test_painter_script_takes_cross_attention_levels_and_keeps_them_for_its_folder(tmp_path, capsys):
    from scripts.pretrain_tiny_sd import main

    threads = torch.get_num_threads()
    common = ["--out", str(tmp_path / "run"), "--n-images", "16", "--vae-steps", "1", "--vae-batch", "2",
              "--unet-steps", "1", "--unet-batch", "2", "--threads", "1"]
    try:
        assert main([*common, "--unet-cross-attention", "1,1,1"]) == 0
        config = json.loads((tmp_path / "run" / "painter" / "unet" / "config.json").read_text())
        assert config["down_block_types"] == ["CrossAttnDownBlock2D"] * 3
        summary = json.loads((tmp_path / "run" / "painter" / "training_summary.json").read_text())
        assert summary["architecture"]["unet_cross_attention"] == [True, True, True]
        with pytest.raises(SystemExit):  # the folder's checkpoints were trained with 1,1,1
            main([*common, "--unet-cross-attention", "0,1,1"])
        assert "architecture.json" in capsys.readouterr().err
        with pytest.raises(SystemExit):
            main(["--out", str(tmp_path / "other"), "--unet-cross-attention", "1,1"])
        assert "2 values for a UNet of 3 levels" in capsys.readouterr().err
        with pytest.raises(SystemExit):
            main(["--out", str(tmp_path / "other"), "--unet-cross-attention", "1,2,1"])
        assert "expected a comma list of 0/1" in capsys.readouterr().err
    finally:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------- shipped painter, API, CLI

def test_painter_script_takes_the_zero_snr_v_schedule_and_keeps_it_for_its_folder(tmp_path, capsys):
    from diffusers import DDIMScheduler

    from alignment.tiny_sd import NOISE_SCHEDULES
    from scripts.pretrain_tiny_sd import NOISE_SCHEDULES as SCRIPT_CHOICES, main

    assert SCRIPT_CHOICES == NOISE_SCHEDULES  # the script keeps its own copy so that --help stays fast
    threads = torch.get_num_threads()
    common = ["--out", str(tmp_path / "run"), "--n-images", "16", "--vae-steps", "1", "--vae-batch", "2",
              "--unet-steps", "2", "--unet-batch", "2", "--threads", "1"]
    try:
        assert main([*common, "--noise-schedule", "zero-snr-v"]) == 0
        scheduler = DDIMScheduler.from_pretrained(tmp_path / "run" / "painter", subfolder="scheduler")
        assert scheduler.config.prediction_type == "v_prediction"
        assert scheduler.alphas_cumprod[-1] < 1e-6  # zero terminal SNR: the last latent is pure noise
        scheduler.set_timesteps(20)
        assert int(scheduler.timesteps[0]) == 999  # "trailing": sampling starts at the last timestep
        summary = json.loads((tmp_path / "run" / "painter" / "training_summary.json").read_text())
        assert summary["architecture"]["noise_schedule"] == "zero-snr-v"
        assert summary["unet"]["final_v_mse"] > 0
        rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
        assert any("v_mse" in r for r in rows) and not any("noise_mse" in r for r in rows)
        with pytest.raises(SystemExit):  # the folder's checkpoints predict v
            main([*common, "--noise-schedule", "sd"])
        assert "--noise-schedule differs from this run folder's zero-snr-v" in capsys.readouterr().err
    finally:
        torch.set_num_threads(threads)


def test_min_snr_weights_per_prediction_target():
    from alignment.painter_training import min_snr_weight
    from alignment.tiny_sd import scheduler_settings

    snr = torch.tensor([0.0, 0.5, 5.0, 20.0])
    eps = min_snr_weight(snr[1:], 5.0, "epsilon")
    assert torch.allclose(eps, torch.tensor([1.0, 1.0, 0.25]))
    # v: the plain v-loss up to SNR gamma, including the pure-noise end where the caption sets the colours
    assert torch.allclose(min_snr_weight(snr, 5.0, "v_prediction"), torch.tensor([1.0, 1.0, 1.0, 0.25]))
    with pytest.raises(ValueError, match="noise_schedule 'cosine'"):
        scheduler_settings("cosine")


def test_missing_painter_weights_are_named(tmp_path, monkeypatch):
    from alignment import build_tiny_sd, tiny_sd

    monkeypatch.setattr(tiny_sd, "PAINTER_DIR", tmp_path / "nowhere" / "tiny_painter")
    with pytest.raises(FileNotFoundError, match="nowhere/tiny_painter"):
        build_tiny_sd(tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="nowhere/tiny_painter"):
        tiny_sd.tiny_sd_path(tmp_path / "cache", pretrained=True)


def test_cli_random_init_writes_the_random_model(tmp_path):
    from diffusers import StableDiffusionPipeline

    result = subprocess.run([sys.executable, "-m", "alignment.cli", "tiny-sd", "--out", str(tmp_path / "sd"),
                             "--random-init"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    pipe = StableDiffusionPipeline.from_pretrained(tmp_path / "sd")
    assert tuple(pipe.unet.config.block_out_channels) == (32, 64)


@needs_painter
def test_shipped_painter_loads_draws_64px_and_is_small(tmp_path):
    from diffusers import StableDiffusionPipeline

    from alignment import build_tiny_sd

    size = sum(p.stat().st_size for p in PAINTER_DIR.rglob("*") if p.is_file())
    assert size <= 30e6
    path = build_tiny_sd(tmp_path / "painter")
    pipe = StableDiffusionPipeline.from_pretrained(path)
    assert pipe.unet.config.sample_size == 16 and pipe.tokenizer.model_max_length == 32
    out = pipe(["a red disc in the centre, a small blue square, pale teal sky, dark green ground, low horizon"],
               num_inference_steps=10, guidance_scale=3.0, output_type="np",
               generator=torch.Generator().manual_seed(0))
    image = out.images[0]
    assert image.shape == (64, 64, 3)
    # a painting, not noise: a two-tone background, whose top and bottom rows differ in colour
    assert np.abs(image[:6].mean(axis=(0, 1)) - image[-6:].mean(axis=(0, 1))).max() > 0.05
    # the UNet draws latents of unit spread: the VAE's scaling must map its paintings' latents there,
    # and the pipelines' decode must give the paintings back from them
    from alignment.painter_training import uint8_to_vae_input
    from alignment.sampling import decode_latents

    paintings = torch.from_numpy(np.stack([synth_item(7, i, 64)["pixels"] for i in range(16)]))
    with torch.no_grad():
        x = uint8_to_vae_input(paintings)
        latents = pipe.vae.encode(x).latent_dist.mean * pipe.vae.config.scaling_factor
        decoded = decode_latents(pipe.vae, latents)
    assert 0.7 < float(latents.std()) < 1.4
    assert float((decoded - (x / 2 + 0.5)).abs().mean()) < 0.12
    result = subprocess.run([sys.executable, "-m", "alignment.cli", "tiny-sd", "--out", str(tmp_path / "cli")],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and (tmp_path / "cli" / "model_index.json").is_file()


@needs_painter
def test_a_painter_run_saves_a_lora_that_diffusers_loads(tmp_path):
    """DDPO on the shipped painter (pretrained_model 'painter'), then StableDiffusionPipeline.load_lora_weights."""
    from diffusers import StableDiffusionPipeline

    from alignment import DDPOConfig, DDPOTrainer
    from artquant_core.checkpoint import latest_checkpoint
    from artquant_core.synthart.captions import painter_prompts

    train, held_out = painter_prompts(8, 2)
    cfg = DDPOConfig(pretrained_model="painter", reward="brightness", prompts=train, eval_prompts=held_out,
                     eval_rewards=["saturation"], output_dir=str(tmp_path / "run"), num_epochs=1, sample_num_steps=2,
                     sample_batch_size=2, sample_num_batches_per_epoch=1, train_batch_size=2, guidance_scale=3.0,
                     eval_every=1, eval_num_per_prompt=1, learning_rate=1e-2)
    DDPOTrainer(cfg).train()
    assert (tmp_path / "run" / "painter" / "model_index.json").is_file()  # copied into the run folder once
    pipe = StableDiffusionPipeline.from_pretrained(tmp_path / "run" / "painter")
    before = pipe(held_out[:1], num_inference_steps=2, output_type="np",
                  generator=torch.Generator().manual_seed(0)).images
    pipe.load_lora_weights(str(latest_checkpoint(tmp_path / "run")))
    after = pipe(held_out[:1], num_inference_steps=2, output_type="np",
                 generator=torch.Generator().manual_seed(0)).images
    assert np.abs(after - before).max() > 1e-4  # the adapter is loaded and changes the painting


def test_cli_version_and_demo_help():
    version = subprocess.run([sys.executable, "-m", "alignment.cli", "--version"], cwd=ROOT, capture_output=True,
                             text=True)
    assert version.returncode == 0 and version.stdout.startswith("artquant ")
    help_ = subprocess.run([sys.executable, "-m", "alignment.cli", "demo", "--help"], cwd=ROOT, capture_output=True,
                           text=True)
    assert help_.returncode == 0, help_.stderr
    assert "--diffusion_model (str, default 'painter')" in help_.stdout and "--watch_judge" in help_.stdout
