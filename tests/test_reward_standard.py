"""Standard CLIP rewards (clipscore, pickscore, laion_aesthetic) on a tiny random-init CLIP written offline.

The folder has the real checkpoints' format: ``CLIPModel.save_pretrained`` (config.json +
model.safetensors) plus a ``CLIPProcessor`` whose tokenizer is the CLIP byte-level BPE that
``alignment.tiny_sd`` builds from a word list, so nothing is downloaded.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reward import CompositeReward, load_reward
from reward.clip_rewards import AESTHETIC_HEAD_FILE, CLIPSCORE_WEIGHT, AestheticHead, ClipScore, LaionAesthetic

PROMPTS = ["a red cat", "a blue sea at night", "a green forest", "a painting of a castle", "a dark city street",
           "a bright yellow flower"]


def save_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """A random-init ``CLIPModel`` (hidden 32, 2 layers, 32 px images in 8 px patches) and its processor."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    from alignment.tiny_sd import build_clip_vocab

    vocab, merges = build_clip_vocab()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
    eos = vocab["<|endoftext|>"]
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77, bos_token_id=vocab["<|startoftext|>"],
                         eos_token_id=eos, pad_token_id=eos),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=32)
    torch.manual_seed(seed)
    model = CLIPModel(config)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    model.save_pretrained(folder)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture(scope="module")
def aesthetic_dir(tmp_path_factory) -> Path:
    """The laion_aesthetic layout: the CLIP folder plus a random head saved as safetensors."""
    from safetensors.torch import save_file

    folder = save_tiny_clip(tmp_path_factory.mktemp("tiny_aesthetic"))
    torch.manual_seed(1)
    head = AestheticHead(embed_dim=32)
    save_file(head.state_dict(), str(folder / AESTHETIC_HEAD_FILE))
    return folder


def _images(batch: int = 4, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_clipscore_spec_scores_finite_batch_and_matches_the_formula(clip_dir):
    from transformers import CLIPModel, CLIPProcessor

    reward = load_reward(f"clipscore:{clip_dir}")
    assert isinstance(reward, ClipScore) and reward.name == "clipscore" and reward.differentiable
    # uint8 images at the model's size: the HF processor sees exactly the same pixels
    images = (_images(4) * 255).round().to(torch.uint8)
    values = reward(images, PROMPTS[:4])
    assert values.shape == (4,) and values.dtype == torch.float32 and torch.isfinite(values).all()
    model, processor = CLIPModel.from_pretrained(clip_dir), CLIPProcessor.from_pretrained(clip_dir)
    pil = [Image.fromarray(np.ascontiguousarray(im.permute(1, 2, 0).numpy())) for im in images]
    inputs = processor(text=PROMPTS[:4], images=pil, return_tensors="pt", padding=True)
    with torch.no_grad():
        image = model.visual_projection(model.vision_model(pixel_values=inputs["pixel_values"]).pooler_output)
        text = model.text_projection(model.text_model(input_ids=inputs["input_ids"],
                                                      attention_mask=inputs["attention_mask"]).pooler_output)
    expected = CLIPSCORE_WEIGHT * torch.cosine_similarity(image, text, dim=-1).clamp_min(0)
    torch.testing.assert_close(values, expected, atol=1e-5, rtol=1e-5)


def test_clipscore_depends_on_the_prompt_and_repeated_prompts_agree(clip_dir):
    reward = load_reward(f"clipscore:{clip_dir}")
    image = _images(1).expand(len(PROMPTS), -1, -1, -1)
    values = reward(image, PROMPTS)
    assert len({round(v, 6) for v in values.tolist()}) > 1  # same image, different prompts
    torch.testing.assert_close(reward(image[:2], [PROMPTS[1]] * 2), values[[1, 1]])


def test_clipscore_gradient_reaches_the_pixels(clip_dir):
    reward = load_reward(f"clipscore:{clip_dir}")
    image = _images(1, seed=1)
    scores = reward(image.expand(len(PROMPTS), -1, -1, -1), PROMPTS)
    assert scores.max() > 0  # a prompt with cos > 0 (a negative cosine is clamped to 0, its gradient too)
    pixels = image.clone().requires_grad_()
    value = reward(pixels, [PROMPTS[int(scores.argmax())]])
    value.sum().backward()
    assert pixels.grad is not None and pixels.grad.abs().sum() > 0 and torch.isfinite(pixels.grad).all()


def test_clip_rewards_batch_in_chunks_without_grad(clip_dir):
    whole = ClipScore(clip_dir, max_batch=32)(_images(5), PROMPTS[:5])
    chunked = ClipScore(clip_dir, max_batch=2)(_images(5), PROMPTS[:5])
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=1e-6)


def test_pickscore_is_logit_scale_times_cosine(clip_dir):
    clipscore, pickscore = load_reward(f"clipscore:{clip_dir}"), load_reward(f"pickscore:{clip_dir}")
    assert pickscore.name == "pickscore" and pickscore.differentiable
    images = _images(len(PROMPTS))
    scale = float(pickscore.encoder.model.logit_scale.exp())
    picks, clips = pickscore(images, PROMPTS), clipscore(images, PROMPTS)
    positive = picks > 0
    torch.testing.assert_close(picks[positive] / scale * CLIPSCORE_WEIGHT, clips[positive], atol=1e-5, rtol=1e-5)
    assert pickscore(images[:1].expand(2, -1, -1, -1), PROMPTS[:2]).unique().numel() == 2
    pixels = _images(2, size=48).requires_grad_()  # not the model's size: the torch resize is differentiated too
    pickscore(pixels, PROMPTS[:2]).sum().backward()
    assert pixels.grad.abs().sum() > 0 and torch.isfinite(pixels.grad).all()


def test_laion_aesthetic_scores_the_image_alone_with_gradients(aesthetic_dir):
    reward = load_reward(f"laion_aesthetic:{aesthetic_dir}")
    assert isinstance(reward, LaionAesthetic) and reward.differentiable
    images = _images(3)
    values = reward(images)
    assert values.shape == (3,) and torch.isfinite(values).all()
    torch.testing.assert_close(reward(images, PROMPTS[:3]), values)  # prompts are ignored
    # the published head: plain linear layers on the unit CLIP image embedding
    embeddings = reward.encoder.embed_images(reward_batch(images))
    torch.testing.assert_close(values, reward.head(embeddings).detach(), atol=1e-6, rtol=1e-6)
    pixels = images.clone().requires_grad_()
    reward(pixels).sum().backward()
    assert pixels.grad.abs().sum() > 0


def reward_batch(images):
    from artquant_core.images import image_batch

    return image_batch(images)


def test_composite_with_a_clip_reward(clip_dir):
    composite = load_reward(f"clipscore:{clip_dir}*0.5+brightness")
    assert isinstance(composite, CompositeReward) and composite.differentiable
    images = _images(3)
    parts = composite.components(images, PROMPTS[:3])
    torch.testing.assert_close(parts["total"], 0.5 * parts["clipscore"] + parts["brightness"])
    normalised = load_reward(f"clipscore:{clip_dir}+brightness", normalize="batch_zscore")
    assert torch.isfinite(normalised(images, PROMPTS[:3])).all()


def test_missing_folder_and_missing_prompts_are_named(clip_dir, tmp_path):
    missing = tmp_path / "no_such_clip"
    with pytest.raises(FileNotFoundError, match="no_such_clip"):
        load_reward(f"clipscore:{missing}")
    with pytest.raises(FileNotFoundError, match="no_such_clip"):
        load_reward(f"laion_aesthetic:{missing}")
    with pytest.raises(FileNotFoundError, match=AESTHETIC_HEAD_FILE):
        load_reward(f"laion_aesthetic:{clip_dir}")  # a CLIP folder without the head
    with pytest.raises(ValueError, match="clipscore.*prompts"):
        load_reward(f"clipscore:{clip_dir}")(_images(2))
    with pytest.raises(ValueError, match="pickscore.*prompts"):
        load_reward(f"pickscore:{clip_dir}")(_images(2))


def test_folder_without_the_model_files_is_named(tmp_path):
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="empty_folder"):
        load_reward(f"clipscore:{empty}")


def test_converted_rewards_without_a_path_and_bad_clip_specs_say_why():
    with pytest.raises(ValueError, match=r"HPSv2 needs ':PATH'.*HPS_v2.1_compressed.pt"):
        load_reward("hpsv2")
    with pytest.raises(ValueError, match=r"ImageReward needs ':PATH'.*ImageReward.pt"):
        load_reward("imagereward")
    with pytest.raises(ValueError, match="laion_aesthetic.*needs ':PATH'"):
        load_reward("laion_aesthetic")
    with pytest.raises(ValueError, match="no '@ASPECT'"):
        load_reward("clipscore@composition")
