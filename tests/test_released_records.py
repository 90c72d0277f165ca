"""Records in the released ArtQuant / DeQA-Score format: their image placeholders never reach the model.

The released records (mPLUG-Owl2 lineage) write ``<|image|>`` in the human turn, often after
the question; SynthArt writes LLaVA's ``<image>`` in front of it. ``tests/fixtures/released_records.json``
holds score and description records in that exact format (extra keys such as ``gt_score_norm``,
``level_probs_org`` and ``std_norm`` included).
"""

from pathlib import Path

import pytest
import torch
from PIL import Image

from artquant_core.levels import APDD_SCALE
from artquant_core.prompts import (
    DESCRIPTION_QUESTIONS,
    IMAGE_PLACEHOLDERS,
    strip_image_placeholders,
)
from artquant_core.records import load_records
from artquant_core.training.data import ExampleDataset, ScorerCollator, build_examples
from tests._training_fixtures import TINY

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "released_records.json"


def _has_placeholder(text: str) -> bool:
    return any(p in text for p in IMAGE_PLACEHOLDERS) or "image|>" in text or "<|image" in text


@pytest.mark.parametrize("raw,clean", [
    ("<image>\nHow good is it?", "How good is it?"),
    ("How good is it?\n<|image|>", "How good is it?"),
    ("<|image|>How good is it?", "How good is it?"),
    ("Rate<image>\nthis <|image|> painting.", "Rate this painting."),
    ("<|image|>\n<image>", ""),
    ("No placeholder\nhere.", "No placeholder\nhere."),
])
def test_strip_image_placeholders_removes_both_spellings_anywhere(raw, clean):
    assert strip_image_placeholders(raw) == clean


@pytest.fixture
def released(tmp_path):
    """The fixture's records, loaded with their images (small paintings written under ``tmp_path``)."""
    import json

    for index, row in enumerate(json.loads(FIXTURE.read_text())):
        path = tmp_path / row["image"]
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            Image.new("RGB", (40, 32), (30 * index % 255, 90, 200 - 20 * index)).save(path)
    return load_records(FIXTURE, image_root=tmp_path)


def test_released_records_load_with_their_extra_keys(released):
    kinds = [r.task_type for r in released]
    assert kinds.count("score") == 4 and kinds.count("description") == 3
    first = released[0]
    assert first.std == pytest.approx(1.12) and first.level_probs is not None
    assert set(first.extra) == {"gt_score_norm", "level_probs_org", "std_norm"}
    assert first.question.endswith("<|image|>")  # records keep the text as written; consumers strip it


def test_no_placeholder_reaches_the_text_fed_to_the_model(released, tmp_path):
    from artquant_core.tiny import TinyScorerConfig, build_tiny_scorer

    examples = build_examples(released, ["score", "description"], APDD_SCALE, tmp_path, source=str(FIXTURE))
    assert len(examples) == 7
    for example in examples:
        assert example.question and not _has_placeholder(example.question), example
    # a human turn that was only a placeholder gets one of the description questions
    assert examples[-1].question in DESCRIPTION_QUESTIONS

    scorer = build_tiny_scorer(seed=0, pretrained=False, config=TinyScorerConfig(**TINY))
    fed: list[str] = []
    original_prompt = scorer.family.prompt

    def recording_prompt(question: str, image_text: str) -> str:
        chat = original_prompt(question, image_text)
        fed.append(chat.replace(image_text, ""))  # the family's own image tokens are not placeholders
        return chat

    scorer.family.prompt = recording_prompt
    dataset = ExampleDataset(examples)
    batch = ScorerCollator(scorer)([dataset[i] for i in range(len(dataset))])
    assert len(fed) == len(examples) and batch["input_ids"].shape[0] == len(examples)
    for chat, example in zip(fed, examples):
        assert not _has_placeholder(chat), chat
        assert example.question in chat
    # the score rows found their level token, so the answers went through unchanged
    assert bool((batch["level_positions"][:4] >= 0).all()) and bool((batch["level_positions"][4:] == -1).all())
    # inference strips the same way: a released question scores like the clean one
    image = torch.full((1, 3, 32, 32), 0.5)
    released_question = released[0].question
    a = scorer.encode(image, [released_question])["input_ids"]
    b = scorer.encode(image, [strip_image_placeholders(released_question)])["input_ids"]
    assert torch.equal(a, b)
