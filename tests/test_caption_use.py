"""scripts/caption_use.py: which caption parts a painter's UNet responds to."""

import pytest
import torch

from artquant_core.synthart.captions import parse_caption
from artquant_core.synthart.dataset import synth_item
from scripts.caption_use import PARTS, caption_use, swap_part

CHANGED_FIELDS = {"main_shape": {"shape"}, "main_colour": {"main"}, "small_shape": {"second_shape"},
                  "sky": {"sky"}}


@pytest.mark.parametrize("part", PARTS)
def test_a_swap_changes_that_part_only(part):
    for i in range(40):
        caption = synth_item(31, i, None)["caption"]
        swapped = swap_part(caption, part)
        before, after = parse_caption(caption), parse_caption(swapped)  # still a valid caption
        changed = {k for k in before if before[k] != after[k]}
        if part == "position":
            assert changed and changed <= {"column", "row"}, (caption, swapped)
        elif part == "horizon":
            assert not changed and swapped.split(", ")[4] != caption.split(", ")[4]
        else:
            assert changed == CHANGED_FIELDS[part], (caption, swapped)


def test_bad_caption_or_part_is_named():
    with pytest.raises(ValueError, match="not a SynthArt caption"):
        swap_part("a cat on a mat", "main_shape")
    with pytest.raises(ValueError, match="unknown caption part 'texture'"):
        swap_part(synth_item(31, 0, None)["caption"], "texture")


def test_a_text_encoder_blind_to_shape_words_shows_zero_shape_use():
    """Shape words given one embedding: the UNet cannot tell them apart, so the shape swap costs exactly
    nothing, while a colour swap still changes the loss."""
    from alignment.tiny_sd import painter_architecture, tiny_sd_pipeline

    pipe = tiny_sd_pipeline(painter_architecture(), seed=0)
    embeddings = pipe.text_encoder.get_input_embeddings().weight
    ids = [pipe.tokenizer.convert_tokens_to_ids(f"{s}</w>") for s in ("disc", "square", "triangle", "diamond")]
    with torch.no_grad():
        embeddings[ids] = embeddings[ids[0]].clone()
    result = caption_use(pipe, n=6, timesteps=(500,))
    assert set(result) == {"empty", *PARTS}
    assert result["main_shape"][500]["increase"] == 0.0 and result["small_shape"][500]["increase"] == 0.0
    assert abs(result["main_colour"][500]["increase"]) > 0 and result["main_colour"][500]["se"] > 0
