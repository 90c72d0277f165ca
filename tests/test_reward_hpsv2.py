"""HPSv2 (``hpsv2:PATH``) on a tiny random-init CLIP, written both as a transformers folder and as an
open_clip-format checkpoint.

The open_clip checkpoint is made here by converting the tiny ``CLIPModel`` *backwards* with an
inverse key mapping written independently of :mod:`reward.openclip_convert`, so the scores of the
converted ``.pt`` matching those of the folder checks the round trip. Nothing is downloaded.
"""

import functools
import pickle
from pathlib import Path

import pytest
import torch

from reward import CompositeReward, load_reward
from reward.hpsv2 import HPSv2
from reward.openclip_convert import CheckpointError

PROMPTS = ["a red cat", "a blue sea at night", "a green forest", "a painting of a castle"]


@functools.lru_cache(maxsize=None)
def _tokenizer():
    from transformers import CLIPTokenizer

    from alignment.tiny_sd import build_clip_vocab

    vocab, merges = build_clip_vocab()
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77), vocab


def _model(seed: int = 0):
    """Head width 64 in both towers (as open_clip's defaults), so the converter infers the head counts."""
    from transformers import CLIPConfig, CLIPModel

    _, vocab = _tokenizer()
    eos = vocab["<|endoftext|>"]
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=1, max_position_embeddings=77, bos_token_id=vocab["<|startoftext|>"],
                         eos_token_id=eos, pad_token_id=eos, hidden_act="gelu"),
        vision_config=dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8, hidden_act="gelu"),
        projection_dim=48)
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    with torch.no_grad():  # random layer norms and biases, so a swapped or untransposed tensor shows
        for name, param in model.named_parameters():
            if "layer_norm" in name or "layrnorm" in name or name.endswith("bias"):
                param.add_(0.1 * torch.randn_like(param))
    return model


def to_openclip(model) -> dict[str, torch.Tensor]:
    """The inverse mapping: a transformers CLIPModel's tensors under open_clip's names."""
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out = {
        "logit_scale": sd["logit_scale"],
        "visual.conv1.weight": sd["vision_model.embeddings.patch_embedding.weight"],
        "visual.class_embedding": sd["vision_model.embeddings.class_embedding"],
        "visual.positional_embedding": sd["vision_model.embeddings.position_embedding.weight"],
        "visual.proj": sd["visual_projection.weight"].T.contiguous(),
        "token_embedding.weight": sd["text_model.embeddings.token_embedding.weight"],
        "positional_embedding": sd["text_model.embeddings.position_embedding.weight"],
        "text_projection": sd["text_projection.weight"].T.contiguous(),
    }
    for ours, theirs in (("pre_layrnorm", "ln_pre"), ("post_layernorm", "ln_post")):
        for p in ("weight", "bias"):
            out[f"visual.{theirs}.{p}"] = sd[f"vision_model.{ours}.{p}"]
    for p in ("weight", "bias"):
        out[f"ln_final.{p}"] = sd[f"text_model.final_layer_norm.{p}"]
    for tower, prefix, layers in (("vision_model", "visual.transformer", model.config.vision_config.num_hidden_layers),
                                  ("text_model", "transformer", model.config.text_config.num_hidden_layers)):
        for i in range(layers):
            src, dst = f"{tower}.encoder.layers.{i}.", f"{prefix}.resblocks.{i}."
            for p in ("weight", "bias"):
                out[dst + f"attn.in_proj_{p}"] = torch.cat([sd[src + f"self_attn.{n}_proj.{p}"] for n in "qkv"])
                out[dst + f"attn.out_proj.{p}"] = sd[src + f"self_attn.out_proj.{p}"]
                out[dst + f"ln_1.{p}"] = sd[src + f"layer_norm1.{p}"]
                out[dst + f"ln_2.{p}"] = sd[src + f"layer_norm2.{p}"]
                out[dst + f"mlp.c_fc.{p}"] = sd[src + f"mlp.fc1.{p}"]
                out[dst + f"mlp.c_proj.{p}"] = sd[src + f"mlp.fc2.{p}"]
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """``folder``: the CLIPModel folder; ``ckpt``: an HPS-style .pt (DDP prefixes, 'state_dict' wrapper) + tokenizer."""
    model = _model()
    tokenizer, _ = _tokenizer()
    folder = tmp_path_factory.mktemp("hps_folder")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    ckpt_dir = tmp_path_factory.mktemp("hps_ckpt")
    ckpt = ckpt_dir / "HPS_v2.1_compressed.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in to_openclip(model).items()}}, ckpt)
    tokenizer.save_pretrained(ckpt_dir)
    return {"model": model, "folder": folder, "ckpt": ckpt}


def _images(batch: int = 4, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _reference(model, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """HPSv2's score by hand: the diagonal of unit image features @ unit text features (32 px: no resize)."""
    tokenizer, _ = _tokenizer()
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    tokens = tokenizer(prompts, padding=True, return_tensors="pt")
    with torch.no_grad():
        image = model.get_image_features(pixel_values=(images - mean) / std)
        text = model.get_text_features(**tokens)
    image = getattr(image, "pooler_output", image)
    text = getattr(text, "pooler_output", text)
    return (torch.nn.functional.normalize(image, dim=-1) * torch.nn.functional.normalize(text, dim=-1)).sum(-1)


def test_converted_checkpoint_scores_equal_the_folder_and_the_formula(tiny):
    from_folder = load_reward(f"hpsv2:{tiny['folder']}")
    from_ckpt = load_reward(f"hpsv2:{tiny['ckpt']}")
    assert isinstance(from_ckpt, HPSv2) and from_ckpt.name == "hpsv2" and from_ckpt.differentiable
    config = from_ckpt.encoder.model.config
    assert (config.vision_config.num_attention_heads, config.text_config.num_attention_heads) == (2, 1)
    assert (config.vision_config.image_size, config.vision_config.patch_size, config.projection_dim) == (32, 8, 48)
    assert config.text_config.hidden_act == "gelu" and config.text_config.eos_token_id == tiny["model"].config.text_config.eos_token_id
    images = _images(4)
    values = from_ckpt(images, PROMPTS)
    assert values.shape == (4,) and values.dtype == torch.float32
    torch.testing.assert_close(values, from_folder(images, PROMPTS), atol=1e-5, rtol=0)
    torch.testing.assert_close(values, _reference(tiny["model"], images, PROMPTS), atol=1e-5, rtol=0)
    assert values.abs().max() <= 1 + 1e-6 and values.std() > 0
    larger = _images(3, size=48, seed=1)  # resized to the model's 32 px in torch, both paths alike
    torch.testing.assert_close(from_ckpt(larger, PROMPTS[:3]), from_folder(larger, PROMPTS[:3]), atol=1e-5, rtol=0)


def test_safetensors_checkpoint_and_a_folder_holding_it(tiny, tmp_path):
    from safetensors.torch import save_file

    save_file(to_openclip(tiny["model"]), str(tmp_path / "hps.safetensors"))  # bare keys, no wrapper
    _tokenizer()[0].save_pretrained(tmp_path / "tokenizer")  # the tokenizer/ subfolder is found too
    images = _images(2, seed=3)
    expected = load_reward(f"hpsv2:{tiny['folder']}")(images, PROMPTS[:2])
    torch.testing.assert_close(load_reward(f"hpsv2:{tmp_path}")(images, PROMPTS[:2]), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(HPSv2(tiny["ckpt"].parent, max_batch=1)(images, PROMPTS[:2]), expected,
                               atol=1e-5, rtol=0)


def test_missing_tokenizer_names_the_checkpoint_and_the_fix(tiny, tmp_path):
    lone = tmp_path / "HPS_v2.1_compressed.pt"
    lone.write_bytes(tiny["ckpt"].read_bytes())
    with pytest.raises(FileNotFoundError, match=r"HPS_v2\.1_compressed\.pt.*vocab\.json.*openai/clip-vit-large-patch14"):
        load_reward(f"hpsv2:{lone}")


def test_missing_key_names_the_file_and_the_first_missing_key(tiny, tmp_path):
    _tokenizer()[0].save_pretrained(tmp_path)
    for dropped in ("ln_final.weight", "transformer.resblocks.1.attn.in_proj_weight", "visual.conv1.weight"):
        state = to_openclip(tiny["model"])
        del state[dropped]
        path = tmp_path / "broken.pt"
        torch.save(state, path)
        with pytest.raises(CheckpointError, match=rf"broken\.pt.*missing key '{dropped}'"):
            HPSv2(path)


def test_only_plain_tensors_are_loaded(tmp_path):
    _tokenizer()[0].save_pretrained(tmp_path)
    path = tmp_path / "evil.pt"
    with path.open("wb") as handle:  # a pickle that would call a function when unpickled
        pickle.dump({"state_dict": {"x": Path("/tmp")}}, handle, protocol=2)
    with pytest.raises(CheckpointError, match=r"evil\.pt.*weights_only=True"):
        HPSv2(path)
    other = tmp_path / "other.pt"
    torch.save({"visual.conv1.weight": torch.zeros(2, 3, 8, 8), "unrelated": torch.zeros(1)}, other)
    with pytest.raises(CheckpointError, match=r"other\.pt.*missing key 'visual.positional_embedding'"):
        HPSv2(other)


def test_gradients_reach_the_pixels(tiny):
    reward = load_reward(f"hpsv2:{tiny['ckpt']}")
    images = _images(2, size=40, seed=5).requires_grad_(True)
    reward(images, PROMPTS[:2]).sum().backward()
    assert images.grad is not None and torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0


def test_prompts_are_required_and_the_bare_name_says_what_to_pass(tiny):
    reward = load_reward(f"hpsv2:{tiny['ckpt']}")
    with pytest.raises(ValueError, match="'hpsv2' compares each image with its prompt"):
        reward(_images(2))
    with pytest.raises(ValueError, match=r"needs ':PATH'.*HPS_v2\.1_compressed\.pt.*xswu/HPSv2"):
        load_reward("hpsv2")
    with pytest.raises(FileNotFoundError, match="no_such_dir"):
        load_reward("hpsv2:no_such_dir/HPS_v2.1_compressed.pt")


def test_composition_with_a_simple_reward(tiny):
    spec = f"hpsv2:{tiny['ckpt']}+0.5*brightness"
    reward = load_reward(spec)
    assert isinstance(reward, CompositeReward)
    images = _images(3, seed=7)
    alone = load_reward(f"hpsv2:{tiny['ckpt']}")(images, PROMPTS[:3])
    brightness = load_reward("brightness")(images)
    torch.testing.assert_close(reward(images, PROMPTS[:3]), alone + 0.5 * brightness, atol=1e-5, rtol=0)
