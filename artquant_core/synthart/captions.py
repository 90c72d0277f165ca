"""Content-only captions for SynthArt paintings: what is drawn and where, never how well.

A caption names the main subject (colour, shape, coarse position), the
secondary shape, and the background (sky colour, ground colour, horizon
height)::

    a red disc on the upper left, a small blue square, pale teal sky, dark green ground, low horizon

Positions are coarse on purpose: the main subject's grid column/row is
reduced to left / centre / right and upper / middle / lower, so a caption never
says whether the subject sits on a third (good composition) or at an edge (bad
composition); horizon tilt, blur, noise, clutter and exposure are left out for
the same reason. A text-to-image model trained on (image, caption) pairs then
draws those qualities at random, which is what a reward fine-tuning can improve
without leaving the prompt.

Colours are named from the palette before the exposure fault (a quality) is
applied, so a badly exposed "red disc" is still a red disc.
"""

from __future__ import annotations

import colorsys
import re

import numpy as np

from artquant_core.synthart.attributes import SHAPES, Latent

#: Hue names with the upper edge of their hue range (degrees).
HUE_NAMES = ((15, "red"), (40, "orange"), (65, "yellow"), (150, "green"), (195, "teal"),
             (250, "blue"), (290, "purple"), (335, "pink"), (360, "red"))
COLOUR_WORDS = ("red", "orange", "yellow", "green", "teal", "blue", "purple", "pink", "grey")
TONE_WORDS = ("dark", "pale")
HORIZONTAL = ("left", "centre", "right")
VERTICAL = ("upper", "middle", "lower")
HORIZON_WORDS = ("high", "middle", "low")
#: Grid index (0-4) -> coarse third (0-2): edge and third share a word, so placement quality stays hidden.
GRID_TO_THIRD = (0, 0, 1, 2, 2)


def colour_name(rgb, with_tone: bool = True) -> str:
    """A colour word for an RGB triple in [0, 1], optionally prefixed by ``dark`` / ``pale``."""
    h, s, v = colorsys.rgb_to_hsv(*(float(c) for c in rgb))
    if s < 0.18:
        hue = "grey"
    else:
        degrees = 360.0 * h
        hue = next(name for edge, name in HUE_NAMES if degrees < edge)
    if not with_tone:
        return hue
    if v < 0.5:
        return f"dark {hue}"
    if s < 0.4 and hue != "grey":
        return f"pale {hue}"
    return hue


def position_phrase(grid_x: int, grid_y: int) -> str:
    """``on the upper left``, ``in the centre``, ... from the main subject's 5x5 grid cell."""
    return third_phrase(HORIZONTAL[GRID_TO_THIRD[grid_x]], VERTICAL[GRID_TO_THIRD[grid_y]])


def third_phrase(col: str, row: str) -> str:
    """The position phrase of a column (left / centre / right) and row (upper / middle / lower)."""
    if col == "centre" and row == "middle":
        return "in the centre"
    if col == "centre":
        return f"at the {row} centre"
    if row == "middle":
        return f"on the {col}"
    return f"on the {row} {col}"


def horizon_word(horizon: float) -> str:
    """Horizon height (fraction of the side from the top) as high / middle / low."""
    if horizon < 0.45:
        return "high"
    if horizon > 0.55:
        return "low"
    return "middle"


def compose_caption(main_colour: str, main_shape: str, position: str, second_colour: str,
                    second_shape: str, sky: str, ground: str, horizon: str) -> str:
    """The caption sentence from its parts (also used to write prompt files)."""
    if main_shape not in SHAPES or second_shape not in SHAPES:
        raise ValueError(f"shapes must be among {SHAPES}, got {main_shape!r} / {second_shape!r}")
    article = "an" if main_colour[0] in "aeiou" else "a"
    return (f"{article} {main_colour} {main_shape} {position}, a small {second_colour} {second_shape}, "
            f"{sky} sky, {ground} ground, {horizon} horizon")


def caption(lat: Latent, pal: np.ndarray) -> str:
    """The content caption of a painting from its latent and :func:`~.painter.palette` colours."""
    return compose_caption(
        main_colour=colour_name(pal[2], with_tone=False), main_shape=lat.shape,
        position=position_phrase(lat.grid_x, lat.grid_y),
        second_colour=colour_name(pal[3], with_tone=False), second_shape=lat.sec_shape,
        sky=colour_name(pal[0]), ground=colour_name(pal[1]), horizon=horizon_word(lat.horizon))


def caption_vocabulary() -> list[str]:
    """Every word a caption can use (for the painter's tokenizer)."""
    words = ["a", "an", "small", "sky", "ground", "horizon", "on", "the", "in", "at", *COLOUR_WORDS, *TONE_WORDS,
             *SHAPES, *HORIZONTAL, *VERTICAL, *HORIZON_WORDS]
    return list(dict.fromkeys(words))


PROMPT_SEED = 6000


_TONED_COLOUR = r"(?:(?:dark|pale) )?(\w+)"
_CAPTION = re.compile(rf"^an? (\w+) (\w+) ([a-z ]+), a small (\w+) (\w+), {_TONED_COLOUR} sky, "
                      rf"{_TONED_COLOUR} ground, (\w+) horizon$")
#: every position phrase, sorted: the index that :func:`is_held_out` uses
POSITION_PHRASES = sorted({third_phrase(col, row) for col in HORIZONTAL for row in VERTICAL})


def parse_caption(caption: str) -> dict[str, str]:
    """The parts of a caption (the inverse of :func:`compose_caption`, tone words dropped): main/second
    colour and shape, column, row, sky, ground. ``ValueError`` naming anything else."""
    m = _CAPTION.match(caption.strip())
    if m is None or not {m.group(1), m.group(4), m.group(6), m.group(7)} <= set(COLOUR_WORDS):
        raise ValueError(f"not a SynthArt caption: {caption!r} (expected e.g. 'a red disc on the "
                         "upper left, a small blue square, pale teal sky, dark green ground, low horizon')")
    position = m.group(3).split()
    column = next((w for w in position if w in HORIZONTAL), "centre")
    row = next((w for w in position if w in VERTICAL), "middle")
    return {"main": m.group(1), "shape": m.group(2), "column": column, "row": row, "second": m.group(4),
            "second_shape": m.group(5), "sky": m.group(6), "ground": m.group(7)}


def main_subject(caption: str) -> tuple[str, str, str]:
    """(colour, shape, position phrase) of a caption's main subject."""
    parts = parse_caption(caption)
    return parts["main"], parts["shape"], third_phrase(parts["column"], parts["row"])


def is_held_out(caption: str) -> bool:
    """Whether a caption's main-subject combination belongs to the held-out (evaluation) prompts:
    ``(colour + shape + position) % 3 == 0`` over the indices of this module's word lists."""
    colour, shape, position = main_subject(caption)
    return (COLOUR_WORDS.index(colour) + SHAPES.index(shape) + POSITION_PHRASES.index(position)) % 3 == 0


def painter_prompts(n_train: int = 256, n_eval: int = 64, seed: int = PROMPT_SEED) -> tuple[list[str], list[str]]:
    """Fine-tuning prompts for the painter: unique training and held-out captions, in draw order.

    Captions of SynthArt seed ``seed`` (6000: a draw no shipped model trains on); a caption is
    held out when :func:`is_held_out`. Colours, shapes and positions each appear on both sides;
    only their combinations are split. ``configs/prompts/painter_{train,eval}.txt`` hold the defaults.
    """
    from artquant_core.synthart.dataset import synth_item  # imported here: dataset imports this module

    train: dict[str, None] = {}
    held_out: dict[str, None] = {}
    index = 0
    while len(train) < n_train or len(held_out) < n_eval:
        text = synth_item(seed, index, None)["caption"]
        target = held_out if is_held_out(text) else train
        if len(target) < (n_eval if target is held_out else n_train):
            target[text] = None
        index += 1
    return list(train), list(held_out)
