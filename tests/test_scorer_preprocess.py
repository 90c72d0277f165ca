"""Torch-native preprocessing vs the Hugging Face image processors (PIL variants).

LLaVA pads to a square of the mean colour before the processor (LLaVA-1.5's
``expand2square``), so its reference is the HF processor on the padded image.
"""

import numpy as np
import pytest
import torch

from artquant_core.images import pad_to_square, pil_to_uint8_tensor
from artquant_core.tiny import build_tiny_scorer
from artquant_core.vlm_preprocess import prepare_images, smart_resize
from tests._scorer_helpers import FAMILIES, painting

# Documented tolerance against the HF processor on uint8/PIL input (normalised units):
# at most one uint8 step (1/255/std ≈ 0.015) on rare pixels, tiny mean.
MAX_TOL, MEAN_TOL = 0.016, 1e-4
SIZES = [(64, 64), (100, 150), (300, 200), (40, 90), (37, 300)]


@pytest.fixture(scope="module", params=FAMILIES)
def scorer(request):
    return build_tiny_scorer(pretrained=False, family=request.param)


def _hf_reference(scorer, image):
    """The HF processor's output; for LLaVA on the image padded to a square of its mean colour."""
    if scorer.family.name == "llava":
        image = pad_to_square(image, tuple(int(m * 255) for m in scorer.image_processor.image_mean))
    return scorer.image_processor(images=[image], return_tensors="np")


@pytest.mark.parametrize("size", SIZES)
def test_pil_path_matches_hf_processor(scorer, size):
    image = painting(*size, seed=size[0])
    ref = _hf_reference(scorer, image)
    inputs, _ = scorer.family.preprocess([pil_to_uint8_tensor(image).float() / 255], quantize=True)
    ours = inputs["pixel_values"].numpy()
    assert ours.shape == ref["pixel_values"].shape
    diff = np.abs(ours - ref["pixel_values"])
    assert diff.max() <= MAX_TOL and diff.mean() <= MEAN_TOL, (diff.max(), diff.mean())
    if "image_grid_thw" in ref:
        assert inputs["image_grid_thw"].tolist() == ref["image_grid_thw"].tolist()


def test_float_path_normalise_and_patchify_exact(scorer):
    """Same float input, no resize needed: identical to HF to float rounding."""
    size = scorer.family.preprocessor.target_size(64, 64) if scorer.family.name == "qwen2_5_vl" else (64, 64)
    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(0))
    ref = scorer.image_processor(images=list(x.numpy()), do_resize=False, do_rescale=False,
                                 return_tensors="np")["pixel_values"]
    ours, _ = scorer.family.preprocess(list(x), quantize=False)
    assert np.abs(ours["pixel_values"].numpy() - ref).max() < 1e-6


def test_plain_float_resize_is_close_to_pil(scorer):
    """Without uint8 emulation the float path stays within PIL's rounding noise on average."""
    image = painting(100, 150, seed=3)
    ref = _hf_reference(scorer, image)["pixel_values"]
    ours, _ = scorer.family.preprocess([pil_to_uint8_tensor(image).float() / 255], quantize=False)
    diff = np.abs(ours["pixel_values"].numpy() - ref)
    assert diff.mean() < 1e-2 and diff.max() < 0.2


def test_smart_resize_matches_hf():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as hf_smart_resize

    for h, w in [(10, 10), (64, 64), (300, 200), (37, 300), (1000, 17), (513, 511)]:
        assert smart_resize(h, w, 16, 64 * 64, 64 * 64) == hf_smart_resize(h, w, 16, 64 * 64, 64 * 64)


@pytest.mark.parametrize("bad,match", [
    (torch.full((1, 3, 8, 8), float("nan")), r"images\[0\].*NaN"),
    (torch.full((2, 3, 8, 8), 0.5).index_fill(0, torch.tensor([1]), 1.5), r"images\[1\].*outside \[0, 1\]"),
    (torch.rand(1, 4, 8, 8), r"shape \(B, 3, H, W\)"),
    ([], "empty"),
    (["not an image"], r"images\[0\] must be a PIL image.*got str"),
    ([torch.full((3, 8, 8), -0.5)], r"images\[0\].*outside \[0, 1\]"),
])
def test_bad_images_raise_naming_the_image(bad, match):
    with pytest.raises(ValueError, match=match):
        prepare_images(bad)


def test_uint8_tensor_equals_pil_path(scorer):
    image = painting(90, 120, seed=5)
    as_tensor = pil_to_uint8_tensor(image)
    a = scorer.encode(as_tensor[None], ["q"])["pixel_values"]
    b = scorer.encode([image], ["q"])["pixel_values"]
    assert torch.equal(a, b)


@pytest.mark.parametrize("size,index", [(150, 0), (97, 1), (256, 2)])
def test_synthart_paintings_match_hf_processor(scorer, size, index):
    """SynthArt paintings (gradients, hard-edged shapes, noise), resized down and up by the processors."""
    from PIL import Image

    from artquant_core.synthart.dataset import synth_item

    image = Image.fromarray(np.asarray(synth_item(0, index, size)["pixels"]))
    ref = _hf_reference(scorer, image)["pixel_values"]
    ours, _ = scorer.family.preprocess([pil_to_uint8_tensor(image).float() / 255], quantize=True)
    diff = np.abs(ours["pixel_values"].numpy() - ref)
    assert diff.max() <= MAX_TOL and diff.mean() <= MEAN_TOL, (diff.max(), diff.mean())


@pytest.mark.parametrize("size", [(40, 90), (100, 64), (37, 300)])
def test_llava_pads_to_square_like_the_hf_llava_processor(size):
    """Non-square images keep their ends (no centre crop): equal to HF's LlavaImageProcessor(do_pad=True)."""
    from transformers import LlavaImageProcessorPil

    scorer = build_tiny_scorer(pretrained=False, family="llava")
    clip = scorer.image_processor
    hf = LlavaImageProcessorPil(size={"shortest_edge": clip.size.shortest_edge}, do_pad=True,
                                crop_size={"height": clip.crop_size.height, "width": clip.crop_size.width})
    image = painting(*size, seed=7)
    ref = hf(images=[image], return_tensors="np")["pixel_values"]
    ours = scorer.family.preprocess([pil_to_uint8_tensor(image).float() / 255], quantize=True)[0]["pixel_values"]
    diff = np.abs(ours.numpy() - ref)
    assert diff.max() <= MAX_TOL and diff.mean() <= MEAN_TOL, (diff.max(), diff.mean())
    # The top-left corner is padding (a crop would show painting there): the mean colour, normalised.
    pad = (torch.tensor([int(m * 255) for m in clip.image_mean]) / 255 - torch.tensor(clip.image_mean)) \
        / torch.tensor(clip.image_std)
    torch.testing.assert_close(ours[0, :, 0, 0], pad.float(), atol=1e-5, rtol=0)


def test_llava_training_pixels_equal_scoring_pixels(tmp_path):
    """RecordDataset(image_size=...) pads with PIL before resizing; the scorer pads the same raw image in torch."""
    from artquant_core.dataset import RecordDataset
    from artquant_core.records import Record

    scorer = build_tiny_scorer(pretrained=False, family="llava")
    image = painting(48, 100, seed=2)
    image.save(tmp_path / "wide.png")
    record = Record(id="wide", image=str(tmp_path / "wide.png"), task_type="score", gt_score=5.0)
    trained_on = RecordDataset([record], image_size=scorer.image_processor.crop_size.height)[0]["image"]
    from_dataset = scorer.encode(trained_on[None], ["q"])["pixel_values"]
    from_raw = scorer.encode([image], ["q"])["pixel_values"]
    diff = (from_dataset - from_raw).abs()
    assert diff.max() <= MAX_TOL and diff.mean() <= MEAN_TOL, (diff.max(), diff.mean())
