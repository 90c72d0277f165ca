"""The scorer's view of the shared prompt texts and level scale.

Prompts live in ``artquant_core.prompts`` (one source of truth for SynthArt,
training and inference); this module only adapts them to what the scorer needs:
a (question, answer prefix) pair per aspect.
"""

from __future__ import annotations

from artquant_core.levels import APDD_SCALE, LevelScale  # noqa: F401  (re-exported)
from artquant_core.prompts import (ANSWER_PREFIX, ATTRIBUTES, DESCRIPTION_QUESTIONS,  # noqa: F401
                                   SCORE_QUESTIONS, attribute_answer_prefix, score_question)

#: Every aspect ``score(aspect=...)`` accepts; ``overall`` is the plain score prompt.
ASPECTS: tuple[str, ...] = ("overall", *ATTRIBUTES)


def attribute_prompt(aspect: str) -> tuple[str, str]:
    """(question, answer prefix) of an ArtiMuse attribute; ValueError names unknown aspects."""
    if aspect not in ASPECTS:
        import difflib

        close = difflib.get_close_matches(aspect, ASPECTS, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"unknown aspect {aspect!r}{hint}; known: {', '.join(ASPECTS)}")
    return score_question(aspect), attribute_answer_prefix(aspect)
