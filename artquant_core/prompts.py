"""Prompt texts shared by the data writer (SynthArt) and the scorer (training and inference).

The score prompt follows the ArtQuant recipe: one of ten paraphrases is picked
at random per training record, the answer is ``"{ANSWER_PREFIX} {level}."``,
and at inference the answer prefix is fed and the level-token logits are read
at the next position. Attribute prompts do the same per aspect, with
``attribute_answer_prefix(aspect)`` as the prefix. Every text here is part of
the tokenizer's training corpus (``artquant_core.synthart.synthart_corpus``).
"""

from __future__ import annotations

import re

#: The placeholder SynthArt writes in front of the question (LLaVA's spelling).
IMAGE_TOKEN = "<image>"

#: Every image placeholder records may hold in the human turn: ``<image>`` (LLaVA, SynthArt) and
#: ``<|image|>`` (mPLUG-Owl2, as the released ArtQuant / DeQA-Score records write it, often after
#: the question: ``"How would you rate ...?\n<|image|>"``).
IMAGE_PLACEHOLDERS: tuple[str, ...] = (IMAGE_TOKEN, "<|image|>")

# A placeholder with the white space around it, so "Rate<image>\nthis" keeps one space between words.
_PLACEHOLDER_PATTERN = re.compile(r"\s*(?:" + "|".join(re.escape(p) for p in IMAGE_PLACEHOLDERS) + r")\s*")

#: The ten score-question paraphrases; the first is the canonical inference prompt.
SCORE_QUESTIONS: tuple[str, ...] = (
    "How would you rate the quality of this painting?",
    "What is your quality rating for this painting?",
    "Can you rate the aesthetic quality of this painting?",
    "How good is this painting, in your judgement?",
    "Please evaluate the quality of this painting.",
    "Rate the artistic quality of this painting.",
    "How do you assess the overall quality of this artwork?",
    "What do you think of the quality of this painting?",
    "Give a rating of this painting's aesthetic quality.",
    "How would you judge the quality of this artwork?",
)

#: Answer prefix of score answers; the level word follows, then a full stop.
ANSWER_PREFIX = "The quality of the painting is"

#: Description-question paraphrases (answers are "Perception: ... Cognition: ... Emotion: ...").
DESCRIPTION_QUESTIONS: tuple[str, ...] = (
    "Describe the aesthetics of this painting.",
    "Give a hierarchical aesthetic description of this painting.",
    "Describe this painting in terms of perception, cognition and emotion.",
    "What are the aesthetic qualities of this painting?",
    "Analyse this painting's colour, line, composition, technique, meaning and emotion.",
    "Write an aesthetic critique of this painting.",
    "How does this painting look, what does it convey and how does it feel?",
    "Explain the strengths and weaknesses of this painting.",
)

#: ArtiMuse-style attribute names (``overall`` is the painting's score itself).
ATTRIBUTES: tuple[str, ...] = (
    "composition", "visual_elements", "technical_execution", "originality",
    "theme", "emotion", "gestalt",
)

#: Human-readable phrase of each attribute, used in prompts and answers.
ATTRIBUTE_PHRASES: dict[str, str] = {
    "composition": "composition",
    "visual_elements": "visual elements",
    "technical_execution": "technical execution",
    "originality": "originality",
    "theme": "theme",
    "emotion": "emotional impact",
    "gestalt": "overall gestalt",
}

#: One question per aspect, for ``scorer.score(images, aspect=...)``.
ATTRIBUTE_QUESTIONS: dict[str, str] = {
    name: f"How would you rate the {phrase} of this painting?"
    for name, phrase in ATTRIBUTE_PHRASES.items()
}


def attribute_answer_prefix(aspect: str | None) -> str:
    """Answer prefix for an aspect (``None`` or ``"overall"`` gives :data:`ANSWER_PREFIX`)."""
    if aspect is None or aspect == "overall":
        return ANSWER_PREFIX
    if aspect not in ATTRIBUTE_PHRASES:
        raise ValueError(f"unknown aspect {aspect!r}; known: overall, {', '.join(ATTRIBUTES)}")
    return f"The {ATTRIBUTE_PHRASES[aspect]} of the painting is"


def score_question(aspect: str | None = None) -> str:
    """The inference question for an aspect (``None``/``"overall"``: the first score paraphrase)."""
    if aspect is None or aspect == "overall":
        return SCORE_QUESTIONS[0]
    if aspect not in ATTRIBUTE_QUESTIONS:
        raise ValueError(f"unknown aspect {aspect!r}; known: overall, {', '.join(ATTRIBUTES)}")
    return ATTRIBUTE_QUESTIONS[aspect]


def strip_image_placeholders(text: str) -> str:
    """``text`` without any image placeholder (:data:`IMAGE_PLACEHOLDERS`), wherever it stands.

    Records carry the placeholder of the model they were written for; the scorer's family
    adapter places the image tokens itself, so a literal placeholder left in the question would
    reach the language model as plain text. A placeholder between words becomes one space; the
    result is stripped of leading and trailing white space.
    """
    return _PLACEHOLDER_PATTERN.sub(" ", text).strip()


def with_image(question: str) -> str:
    """The human turn as records store it: the image placeholder, a newline, the question."""
    return f"{IMAGE_TOKEN}\n{question}"


def score_answer(level_word: str, aspect: str | None = None) -> str:
    """``"The quality of the painting is good."`` (or the aspect's prefix)."""
    return f"{attribute_answer_prefix(aspect)} {level_word}."
