"""ImageReward (``imagereward:PATH``) on a tiny random-init BLIP written in the ImageReward.pt layout.

The checkpoint is made here from tiny transformers ``BlipVisionModel`` / ``BlipTextModel`` (with
cross-attention) and an MLP head, renamed *backwards* to the package's keys (``blip.visual_encoder.*``,
``blip.text_encoder.*``, ``mlp.layers.*``) by a mapping written independently of
:mod:`reward.imagereward`; the reward's scores must equal the original modules' to 1e-5.
Nothing is downloaded.
"""

from pathlib import Path

import pytest
import torch

from reward import CompositeReward, load_reward
from reward.clip_rewards import AestheticHead
from reward.imagereward import IMAGEREWARD_MEAN, IMAGEREWARD_STD, ImageRewardScore
from reward.openclip_convert import CheckpointError

PROMPTS = ["a red cat", "a blue sea at night", "a green forest", "a painting of a castle"]
WORDS = ["a", "red", "cat", "blue", "sea", "at", "night", "green", "forest", "painting", "of", "castle", "the"]


def _tokenizer(folder: Path):
    from transformers import BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    return BertTokenizer(str(folder / "vocab.txt"))


def _modules(seed: int = 0):
    from transformers import BlipTextConfig, BlipTextModel, BlipVisionConfig, BlipVisionModel

    torch.manual_seed(seed)
    vision = BlipVisionModel(BlipVisionConfig(hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                              num_attention_heads=2, image_size=32, patch_size=8,
                                              layer_norm_eps=1e-6, initializer_range=0.02)).eval()
    text = BlipTextModel(BlipTextConfig(vocab_size=len(WORDS) + 5, hidden_size=64, intermediate_size=128,
                                        num_hidden_layers=2, num_attention_heads=1, max_position_embeddings=40,
                                        encoder_hidden_size=128, is_decoder=True, pad_token_id=0,
                                        bos_token_id=2, sep_token_id=3),
                         add_pooling_layer=False).eval()
    head = AestheticHead(64).eval()
    with torch.no_grad():  # random norms and biases, so a swapped tensor shows; a strong cross-attention
        for module in (vision, text, head):
            for name, param in module.named_parameters():
                if "norm" in name.lower() or name.endswith("bias"):
                    param.add_(0.1 * torch.randn_like(param))
                elif "crossattention" in name or "output.dense" in name:
                    param.normal_(0.0, 0.3)
    return vision, text, head


def to_imagereward(vision, text, head) -> dict[str, torch.Tensor]:
    """The inverse mapping: the modules' tensors under ImageReward.pt's names."""
    v = vision.state_dict()
    out = {"blip.visual_encoder.cls_token": v["embeddings.class_embedding"],
           "blip.visual_encoder.pos_embed": v["embeddings.position_embedding"],
           "blip.visual_encoder.patch_embed.proj.weight": v["embeddings.patch_embedding.weight"],
           "blip.visual_encoder.patch_embed.proj.bias": v["embeddings.patch_embedding.bias"],
           "blip.visual_encoder.norm.weight": v["post_layernorm.weight"],
           "blip.visual_encoder.norm.bias": v["post_layernorm.bias"]}
    names = {"layer_norm1": "norm1", "layer_norm2": "norm2", "self_attn.qkv": "attn.qkv",
             "self_attn.projection": "attn.proj", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
    for i in range(vision.config.num_hidden_layers):
        for ours, theirs in names.items():
            for p in ("weight", "bias"):
                out[f"blip.visual_encoder.blocks.{i}.{theirs}.{p}"] = v[f"encoder.layers.{i}.{ours}.{p}"]
    for key, value in text.state_dict().items():
        out[f"blip.text_encoder.{key}"] = value
    out["blip.text_encoder.embeddings.position_ids"] = torch.arange(40).expand((1, -1))  # med.py's buffer
    out["blip.vision_proj.weight"] = torch.zeros(4, 128)  # BLIP's contrastive projection: unused
    for key, value in head.state_dict().items():
        out[f"mlp.{key}"] = value
    return {k: v.detach().clone() for k, v in out.items()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    modules = _modules()
    folder = tmp_path_factory.mktemp("imagereward")
    ckpt = folder / "ImageReward.pt"
    torch.save(to_imagereward(*modules), ckpt)
    tokenizer = _tokenizer(folder)
    return {"modules": modules, "ckpt": ckpt, "tokenizer": tokenizer}


def _images(batch: int = 4, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _reference(modules, tokenizer, images, prompts) -> torch.Tensor:
    """The package's score() by hand on the original modules (32 px: no resize)."""
    vision, text, head = modules
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    tokens = tokenizer(prompts, padding="max_length", truncation=True, max_length=35, return_tensors="pt")
    with torch.no_grad():
        embeds = vision(pixel_values=(images - mean) / std).last_hidden_state
        out = text(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"],
                   encoder_hidden_states=embeds, encoder_attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long),
                   is_decoder=False).last_hidden_state
    return (head(out[:, 0]) - IMAGEREWARD_MEAN) / IMAGEREWARD_STD


def test_checkpoint_scores_equal_the_original_modules(tiny):
    reward = load_reward(f"imagereward:{tiny['ckpt']}")
    assert isinstance(reward, ImageRewardScore) and reward.name == "imagereward" and reward.differentiable
    model = reward.encoder.model
    assert (model.vision.config.num_attention_heads, model.text.config.num_attention_heads) == (2, 1)
    assert model.vision.config.layer_norm_eps == 1e-6 and model.text.config.encoder_hidden_size == 128
    images = _images(4)
    values = reward(images, PROMPTS)
    assert values.shape == (4,) and values.dtype == torch.float32 and values.std() > 0
    torch.testing.assert_close(values, _reference(tiny["modules"], tiny["tokenizer"], images, PROMPTS),
                               atol=1e-5, rtol=0)
    folder_form = ImageRewardScore(tiny["ckpt"].parent, max_batch=1)  # a folder holding the one checkpoint
    torch.testing.assert_close(folder_form(images, PROMPTS), values, atol=1e-5, rtol=0)


def test_gradients_reach_the_pixels_and_prompts_are_required(tiny):
    reward = load_reward(f"imagereward:{tiny['ckpt']}")
    images = _images(2, size=40, seed=5).requires_grad_(True)
    reward(images, PROMPTS[:2]).sum().backward()
    assert images.grad is not None and torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="'imagereward' compares each image with its prompt"):
        reward(_images(2))
    with pytest.raises(ValueError, match=r"needs ':PATH'.*ImageReward\.pt.*THUDM/ImageReward"):
        load_reward("imagereward")


def test_missing_tokenizer_and_missing_key_are_named(tiny, tmp_path):
    lone = tmp_path / "ImageReward.pt"
    lone.write_bytes(tiny["ckpt"].read_bytes())
    with pytest.raises(FileNotFoundError, match=r"ImageReward\.pt.*vocab\.txt.*bert-base-uncased"):
        load_reward(f"imagereward:{lone}")
    _tokenizer(tmp_path)
    for dropped in ("blip.text_encoder.encoder.layer.1.crossattention.self.key.weight",
                    "blip.visual_encoder.blocks.0.attn.proj.bias", "mlp.layers.7.weight"):
        state = to_imagereward(*tiny["modules"])
        del state[dropped]
        torch.save(state, lone)
        with pytest.raises(CheckpointError, match=rf"ImageReward\.pt.*missing key '{dropped}'"):
            ImageRewardScore(lone)


def test_composition_with_a_simple_reward(tiny):
    reward = load_reward(f"imagereward:{tiny['ckpt']}+0.5*brightness")
    assert isinstance(reward, CompositeReward)
    images = _images(3, seed=7)
    alone = load_reward(f"imagereward:{tiny['ckpt']}")(images, PROMPTS[:3])
    torch.testing.assert_close(reward(images, PROMPTS[:3]), alone + 0.5 * load_reward("brightness")(images),
                               atol=1e-5, rtol=0)
