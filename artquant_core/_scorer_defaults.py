"""What the scorer needs from modules other engineers own, with minimal stand-ins.

``artquant_core.prompts`` (SynthArt) and ``artquant_core.levels`` are written on
other branches. Until they are merged the scorer uses the small stand-ins below;
once they exist, their definitions win — one source of truth, imported here.
"""

from __future__ import annotations

from dataclasses import dataclass

try:  # pragma: no cover - depends on merge state
    from artquant_core.levels import APDD_SCALE, LevelScale
except ImportError:  # stand-in with the contract's fields

    @dataclass(frozen=True)
    class LevelScale:  # type: ignore[no-redef]
        words: tuple[str, ...]
        anchors: tuple[float, ...]

    APDD_SCALE = LevelScale(("excellent", "good", "fair", "poor", "bad"), (10.0, 7.5, 5.0, 3.5, 1.0))

try:  # pragma: no cover - depends on merge state
    from artquant_core.prompts import (ANSWER_PREFIX, ATTRIBUTE_QUESTIONS,
                                       DESCRIPTION_QUESTIONS, SCORE_QUESTIONS)
except ImportError:
    ANSWER_PREFIX = "The quality of the painting is"
    SCORE_QUESTIONS = ("How would you rate the quality of this painting?",)
    DESCRIPTION_QUESTIONS = (
        "Describe this painting at three levels: perception, cognition and emotion.",)
    ATTRIBUTE_QUESTIONS = {
        name: (f"How would you rate the {label} of this painting?", f"The {label} of the painting is")
        for name, label in [
            ("composition", "composition and design"),
            ("visual_elements", "visual elements and structure"),
            ("technical_execution", "technical execution"),
            ("originality", "originality and creativity"),
            ("theme", "theme and communication"),
            ("emotion", "emotion and viewer response"),
            ("gestalt", "overall gestalt"),
            ("overall", "comprehensive evaluation"),
        ]
    }

try:  # pragma: no cover - depends on merge state
    from artquant_core.prompts import synthart_corpus
except ImportError:
    synthart_corpus = None


def attribute_prompt(aspect: str) -> tuple[str, str]:
    """(question, answer prefix) of an ArtiMuse attribute; ValueError names unknown aspects."""
    entry = ATTRIBUTE_QUESTIONS.get(aspect)
    if entry is None:
        import difflib

        close = difflib.get_close_matches(aspect, ATTRIBUTE_QUESTIONS, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"unknown aspect {aspect!r}{hint}; known: {', '.join(ATTRIBUTE_QUESTIONS)}")
    if isinstance(entry, str):
        return entry, ANSWER_PREFIX
    question, prefix = entry
    return question, prefix
