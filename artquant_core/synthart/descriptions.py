"""Hierarchical Perception / Cognition / Emotion descriptions written from SynthArt attributes.

Format (one line, about 45-80 words)::

    Perception: <colour sentence> <line sentence> <composition sentence> Cognition: <technique
    sentence> <meaning sentence> Emotion: <emotion sentence>

Each sentence picks one of several templates for the attribute's level
(low / mid / high quality), fills synonym slots, and names what is where (the
subject's colour, shape and grid position), so the text is consistent with the
scores (good attributes get positive words from :data:`POSITIVE_WORDS`, poor
ones negative words from :data:`NEGATIVE_WORDS`) and varied in grammar.
"""

from __future__ import annotations

import colorsys
import re

import numpy as np

from artquant_core.synthart.attributes import Latent

POSITIVE_WORDS = frozenset(
    "harmonious pleasing balanced crisp clean confident elegant strong lively well-judged "
    "assured refined calm coherent graceful clear vivid inviting satisfying skilful deliberate "
    "poised serene uplifting joyful fresh precise lovely satisfying".split())
NEGATIVE_WORDS = frozenset(
    "clashing discordant awkward blurry muddy noisy grainy cramped lopsided crooked cluttered "
    "chaotic weak dull careless confused uneasy murky harsh jarring unsteady flat washed-out "
    "heavy tense disappointing crude".split())

_X_WORDS = ("left edge", "left third", "centre", "right third", "right edge")
_Y_WORDS = ("top edge", "upper third", "middle", "lower third", "bottom edge")
_HUE_NAMES = ((0.04, "red"), (0.11, "orange"), (0.19, "yellow"), (0.45, "green"), (0.55, "teal"),
              (0.71, "blue"), (0.83, "violet"), (0.95, "magenta"), (1.01, "red"))


def _level(q: float) -> int:
    return 0 if q < 0.35 else (1 if q < 0.7 else 2)


def colour_name(rgb: np.ndarray) -> str:
    h, s, v = colorsys.rgb_to_hsv(*map(float, rgb))
    if s < 0.15:
        return "grey" if v > 0.3 else "dark"
    return next(name for edge, name in _HUE_NAMES if h < edge)


def where(lat: Latent) -> str:
    if lat.grid_x == 2 and lat.grid_y == 2:
        return "dead centre"
    if lat.grid_x == 2:
        return f"{_Y_WORDS[lat.grid_y]}, centred horizontally"
    if lat.grid_y == 2:
        return f"{_X_WORDS[lat.grid_x]}, at mid height"
    return f"{_Y_WORDS[lat.grid_y]} on the {_X_WORDS[lat.grid_x]}"


def _pick(rng: np.random.Generator, options) -> str:
    return options[int(rng.integers(len(options)))]


def _fill(rng: np.random.Generator, template: str, **slots) -> str:
    text = template.format(**slots)
    return text[0].upper() + text[1:]


COLOUR = (
    ("The palette is {neg}, with {hue} and {hue2} tones that fight each other.",
     "{Hue} and {hue2} clash in a {neg} colour scheme.",
     "Colour feels {neg}; the {hue} accent sits badly against the ground."),
    ("The palette is acceptable though not fully {pos}, mixing {hue} and {hue2}.",
     "{Hue} and {hue2} work together only in part.",
     "Colour is moderately coherent, a {hue} accent over {hue2} ground."),
    ("A {pos} palette pairs {hue} with {hue2} in a {scheme} scheme.",
     "The {scheme} colours are {pos}, {hue} singing against {hue2}.",
     "Colour is {pos}: {hue} and {hue2} follow a {scheme} harmony."),
)
EXPOSURE = (
    ("The tones look {fault}.", "Exposure is {fault}, robbing the image of depth.",
     "Values are {fault} overall."),
    ("Tonal range is slightly {fault}.", "Light is a little {fault} but readable."),
    ("Light and contrast are {pos}.", "Tonal range is full and {pos}."),
)
FAULT_WORDS = {"flat": ("flat", "washed-out", "dull"), "bright": ("washed-out", "harsh", "flat"),
               "dark": ("murky", "heavy", "dull")}
LINE = (
    ("The horizon is {neg}, tilted by about {tilt} degrees.",
     "A {neg} horizon line leans about {tilt} degrees.",
     "Lines lean; the horizon tilts {tilt} degrees and feels {neg}."),
    ("The horizon leans slightly, about {tilt} degrees.",
     "Line work is fair, though the horizon tilts a little."),
    ("The horizon is level and {pos}.", "A {pos}, level horizon steadies the scene.",
     "Lines are {pos} and the horizon sits level."),
)
PLACE = (
    ("The {colour} {shape} is pushed to the {where}, a {neg2} placement.",
     "Placing the {colour} {shape} at the {where} feels {neg}.",
     "The main {colour} {shape} sits at the {where}, {neg} and off the thirds."),
    ("The {colour} {shape} sits at the {where}, a safe but static choice.",
     "At the {where}, the {colour} {shape} is adequately placed."),
    ("The {colour} {shape} rests on the {where}, a {pos} rule-of-thirds placement.",
     "Placed at the {where}, the {colour} {shape} follows the thirds in a {pos} way.",
     "A {pos} rule-of-thirds placement puts the {colour} {shape} at the {where}."),
)
BALANCE = (
    ("The masses are {neg}, both weighted to one side.", "The weight is {neg}, with nothing to answer the subject."),
    ("Balance is moderate.", "The secondary form only partly balances it."),
    ("A smaller {sec} answers it, so the frame is {pos}.", "The {sec} counterweight keeps the layout {pos}."),
)
CLUTTER = (
    ("{n} small shapes make the field {neg}.", "The ground is {neg} with {n} distractions."),
    ("A few small shapes add mild busyness.",),
    ("The ground is {pos} and uncluttered.", "No clutter distracts from the subject."),
)
TECHNIQUE = (
    ("Execution is {neg}: the surface is {blur} and {noise}.", "Technique looks {neg}, the paint {blur} and {noise}."),
    ("Execution is competent though slightly {soft}.", "Technique is adequate, with some {soft} passages."),
    ("Execution is {pos}: edges are crisp and the surface clean.", "The handling is {pos}, with clean, precise edges."),
)
MEANING = (
    ("The subject is hard to read, so the theme feels {neg}.", "Meaning gets lost; the idea is {neg}."),
    ("The theme of a {shape} in a landscape is readable but modest.", "The idea comes across, if plainly."),
    ("The {shape} reads as a {pos} focal point, giving a clear theme.", "The theme is {pos}: one form holds a quiet landscape."),
)
EMOTION = (
    ("The mood is {neg} and {neg2}, leaving the viewer {feeling}.", "It feels {neg}; the overall impression is {neg2}."),
    ("The mood is mild and somewhat {warm}, neither moving nor off-putting.", "It leaves a modest, {warm} impression."),
    ("The mood is {pos} and {pos2}, a {warm} and {pos3} impression.", "It feels {pos} and {pos2}, {warm} and {pos3}."),
)
WARMTH = ("warm", "cool")
FEELINGS = ("uneasy", "tense", "confused")


# Adjective pools per attribute: (positive words, negative words); all in the two word sets.
POOLS = {
    "colour": (("harmonious", "pleasing", "coherent", "refined", "lovely"),
               ("clashing", "discordant", "jarring", "harsh")),
    "exposure": (("well-judged", "clear", "vivid", "fresh"), ()),
    "line": (("calm", "assured", "precise", "clean"), ("crooked", "unsteady", "awkward")),
    "place": (("confident", "deliberate", "elegant", "well-judged", "strong"),
              ("awkward", "weak", "cramped", "crude")),
    "balance": (("balanced", "poised", "calm", "coherent"), ("lopsided", "heavy", "unsteady")),
    "clutter": (("clean", "calm", "clear"), ("cluttered", "chaotic", "confused")),
    "technique": (("skilful", "precise", "assured", "confident"), ("careless", "crude", "weak")),
    "meaning": (("clear", "strong", "coherent"), ("confused", "weak", "dull")),
    "emotion": (("serene", "uplifting", "joyful", "calm", "satisfying", "inviting", "graceful"),
                ("uneasy", "tense", "dull", "disappointing", "heavy")),
}


def _a_an(text: str) -> str:
    return re.sub(r"\b([Aa]) (?=[aeiouAEIOU])", lambda m: m.group(1) + "n ", text)


def describe(lat: Latent, scores: dict[str, float], pal: np.ndarray, rng: np.random.Generator) -> str:
    """The hierarchical description of one painting (``pal``: the painter's palette)."""

    def say(table, level: int, pool: str, **slots) -> str:
        good, bad = POOLS[pool]
        pos = [good[i] for i in rng.permutation(len(good))] if good else [""] * 3
        neg = [bad[i] for i in rng.permutation(len(bad))] if bad else [""] * 3
        return _fill(rng, _pick(rng, table[level]), pos=pos[0], pos2=pos[1], pos3=pos[2 % len(pos)],
                     neg=neg[0], neg2=neg[1 % len(neg)], **slots)

    hue, hue2 = colour_name(pal[2]), colour_name(pal[0])
    warm = WARMTH[0] if (lat.base_hue < 0.17 or lat.base_hue > 0.9) else WARMTH[1]
    colour = say(COLOUR, _level(lat.harmony), "colour", hue=hue, hue2=hue2, Hue=hue.capitalize(),
                 scheme=lat.scheme)
    expo = say(EXPOSURE, _level(lat.exposure), "exposure", fault=_pick(rng, FAULT_WORDS[lat.exposure_fault]))
    line = say(LINE, _level(lat.level), "line", tilt=round(abs(lat.tilt)))
    place = say(PLACE, _level(lat.place), "place", colour=hue, shape=lat.shape, where=where(lat))
    balance = say(BALANCE, _level(lat.balance), "balance", sec=lat.sec_shape)
    clutter = say(CLUTTER, _level(lat.order), "clutter", n=lat.clutter)
    technique = say(TECHNIQUE, _level(min(lat.sharpness, lat.clean)), "technique",
                    blur="blurry" if lat.sharpness < lat.clean else "muddy",
                    noise="grainy" if lat.clean < lat.sharpness else "noisy",
                    soft="blurry" if lat.sharpness < lat.clean else "grainy")
    meaning = say(MEANING, _level((scores["theme"] - 1) / 9), "meaning", shape=lat.shape)
    emotion = say(EMOTION, _level((scores["overall"] - 1) / 9 + 0.1), "emotion", warm=warm,
                  feeling=_pick(rng, FEELINGS))

    # Short answers: colour, then the worse of exposure / horizon, then placement and the
    # most telling of balance / clutter.
    second = expo if lat.exposure < lat.level else line
    third = balance if abs(lat.balance - 0.5) >= abs(lat.order - 0.5) else clutter
    perception = [colour, second, place, third]
    cognition = [technique, meaning] if rng.random() < 0.7 else [meaning, technique]
    return _a_an("Perception: " + " ".join(perception) + " Cognition: " + " ".join(cognition)
                 + " Emotion: " + emotion)


def polarity(text: str) -> float:
    """(positive - negative) / (positive + negative) word counts; 0 when neither occurs."""
    words = [w.strip(".,:;").lower() for w in text.split()]
    p = sum(w in POSITIVE_WORDS for w in words)
    n = sum(w in NEGATIVE_WORDS for w in words)
    return 0.0 if p + n == 0 else (p - n) / (p + n)
