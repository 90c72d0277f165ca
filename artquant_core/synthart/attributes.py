"""SynthArt's hidden attributes and the documented score formula.

Each painting is drawn from a handful of latent *qualities* in [0, 1] (1 = best):

=============  =================================================================
``place``      main subject position on a 5x5 grid of {edge, third, centre,
               third, edge} coordinates; per axis third = 1, centre = 0.5,
               edge = 0; ``place`` is the mean of the two axes
``balance``    horizontal balance of the main and secondary masses: 1 when
               their radius-weighted centre of mass is at the middle, 0 when it
               is 0.2 of the width (or more) off
``level``      horizon tilt: 1 for a level horizon, 0 at ``MAX_TILT`` degrees
``harmony``    how closely the palette follows a classical hue scheme
``exposure``   1 - deviation of contrast/brightness (flat, bright or dark)
``sharpness``  1 - Gaussian blur strength
``clean``      1 - pixel-noise strength
``order``      1 - clutter (number of small distracting shapes)
``motif``      shape of the main subject (disc .2, square .45, triangle .7,
               diamond .9); only originality uses it
=============  =================================================================

``place``, ``balance`` and ``level`` only move things around: they leave
global colour/contrast/sharpness statistics (almost) unchanged, and they carry
most of the score, so that a model must look at *where* things are.

Noiseless scores (all on 1-10, ``s(x) = 1 + 9 x``)::

    spatial   = .45 place + .30 balance + .25 level
    technique = .7 min(sharpness, clean) + .3 (sharpness + clean) / 2
    colour    = .6 harmony + .4 exposure
    base      = .55 spatial + .20 technique + .15 colour + .10 order
    overall   = s(base * (.8 + .2 technique))
    composition         = s(.5 place + .35 balance + .15 order)
    visual_elements     = s(.45 harmony + .30 level + .25 order)
    technical_execution = s(technique * (.8 + .2 exposure))
    originality         = s(.5 motif + .3 harmony + .2 place)
    theme               = s(.5 place + .3 order + .2 sharpness)
    emotion             = s(.4 colour + .3 balance + .3 level)
    gestalt             = s(.6 spatial + .4 technique)

Rater noise: each score gets independent N(0, ``NOISE_SD``), then is clipped to
[1, 10]; ``overall`` (with its noise) is the record's ``gt_score``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

NOISE_SD = 0.35
MAX_TILT = 28.0  # degrees

#: Grid coordinates (fractions of the side) and the per-axis placement quality.
GRID = (0.17, 1 / 3, 0.5, 2 / 3, 0.83)
GRID_QUALITY = (0.0, 1.0, 0.5, 1.0, 0.0)
SHAPES = ("disc", "square", "triangle", "diamond")
SHAPE_ORIGINALITY = {"disc": 0.2, "square": 0.45, "triangle": 0.7, "diamond": 0.9}
SCHEMES = ("analogous", "complementary", "triadic")
EXPOSURE_FAULTS = ("flat", "bright", "dark")
MAX_CLUTTER = 8

SCORE_NAMES = ("overall", "composition", "visual_elements", "technical_execution", "originality",
               "theme", "emotion", "gestalt")

FORMULA = __doc__.split("Noiseless scores (all on 1-10, ``s(x) = 1 + 9 x``)::", 1)[1].split(
    "Rater noise", 1)[0].strip()


@dataclass
class Latent:
    """Everything the painter and the describer need about one painting."""

    grid_x: int
    grid_y: int
    jitter: tuple[float, float]
    radius: float  # main subject radius, fraction of the side
    shape: str
    sec_x: float
    sec_y: float
    sec_shape: str
    horizon: float  # horizon height, fraction of the side
    tilt: float  # degrees
    base_hue: float  # [0, 1)
    scheme: str
    harmony: float
    exposure: float
    exposure_fault: str
    sharpness: float
    clean: float
    clutter: int
    # derived qualities
    place: float = 0.0
    balance: float = 0.0
    level: float = 0.0
    order: float = 0.0
    motif: float = 0.0

    def qualities(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in ("place", "balance", "level", "harmony", "exposure",
                                                "sharpness", "clean", "order", "motif")}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["jitter"] = list(self.jitter)
        return d


def _mostly_good(rng: np.random.Generator, p_good: float) -> float:
    """A quality that is perfect with probability ``p_good`` and uniform otherwise."""
    return 1.0 if rng.random() < p_good else float(rng.random())


def sample_latent(rng: np.random.Generator) -> Latent:
    """Draw one painting's latent attributes (the only source of randomness besides pixels)."""
    gx, gy = int(rng.integers(5)), int(rng.integers(5))
    jitter = (float(rng.uniform(-0.02, 0.02)), float(rng.uniform(-0.02, 0.02)))
    radius = float(rng.uniform(0.125, 0.145))
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    sec_x = float(rng.uniform(0.15, 0.85))
    sec_y = float(rng.uniform(0.2, 0.8))
    sec_shape = SHAPES[int(rng.integers(len(SHAPES)))]
    horizon = float(rng.uniform(0.35, 0.65))
    tilt = 0.0 if rng.random() < 0.3 else float(rng.uniform(-MAX_TILT, MAX_TILT))
    lat = Latent(
        grid_x=gx, grid_y=gy, jitter=jitter, radius=radius, shape=shape,
        sec_x=sec_x, sec_y=sec_y, sec_shape=sec_shape, horizon=horizon, tilt=tilt,
        base_hue=float(rng.random()), scheme=SCHEMES[int(rng.integers(len(SCHEMES)))],
        harmony=float(rng.random()),
        exposure=_mostly_good(rng, 0.25), exposure_fault=EXPOSURE_FAULTS[int(rng.integers(3))],
        sharpness=_mostly_good(rng, 0.3), clean=_mostly_good(rng, 0.3),
        clutter=int(rng.integers(MAX_CLUTTER + 1)),
    )
    return derive_qualities(lat)


def main_position(lat: Latent) -> tuple[float, float]:
    return GRID[lat.grid_x] + lat.jitter[0], GRID[lat.grid_y] + lat.jitter[1]


SECONDARY_SCALE = 0.65  # secondary radius / main radius
BALANCE_TOLERANCE = 0.2  # centre-of-mass offset (fraction of the width) at which balance is 0


def derive_qualities(lat: Latent) -> Latent:
    lat.place = (GRID_QUALITY[lat.grid_x] + GRID_QUALITY[lat.grid_y]) / 2
    mx, _ = main_position(lat)
    com_x = (mx + SECONDARY_SCALE * lat.sec_x) / (1 + SECONDARY_SCALE)
    lat.balance = _clip(1 - abs(com_x - 0.5) / BALANCE_TOLERANCE, 0.0, 1.0)
    lat.level = 1 - abs(lat.tilt) / MAX_TILT
    lat.order = _clip(1 - (lat.clutter - 1) / (MAX_CLUTTER - 2), 0.0, 1.0)
    lat.motif = SHAPE_ORIGINALITY[lat.shape]
    return lat


def _clip(x: float, lo: float, hi: float) -> float:
    return float(lo if x < lo else (hi if x > hi else x))


def _s(x: float) -> float:
    return 1.0 + 9.0 * _clip(x, 0.0, 1.0)


def noiseless_scores(lat: Latent) -> dict[str, float]:
    """The documented formula (module docstring), before rater noise."""
    q = lat.qualities()
    spatial = 0.45 * q["place"] + 0.30 * q["balance"] + 0.25 * q["level"]
    technique = 0.7 * min(q["sharpness"], q["clean"]) + 0.3 * (q["sharpness"] + q["clean"]) / 2
    colour = 0.6 * q["harmony"] + 0.4 * q["exposure"]
    base = 0.55 * spatial + 0.20 * technique + 0.15 * colour + 0.10 * q["order"]
    return {
        "overall": _s(base * (0.8 + 0.2 * technique)),
        "composition": _s(0.5 * q["place"] + 0.35 * q["balance"] + 0.15 * q["order"]),
        "visual_elements": _s(0.45 * q["harmony"] + 0.30 * q["level"] + 0.25 * q["order"]),
        "technical_execution": _s(technique * (0.8 + 0.2 * q["exposure"])),
        "originality": _s(0.5 * q["motif"] + 0.3 * q["harmony"] + 0.2 * q["place"]),
        "theme": _s(0.5 * q["place"] + 0.3 * q["order"] + 0.2 * q["sharpness"]),
        "emotion": _s(0.4 * colour + 0.3 * q["balance"] + 0.3 * q["level"]),
        "gestalt": _s(0.6 * spatial + 0.4 * technique),
    }


def noisy_scores(clean: dict[str, float], rng: np.random.Generator,
                 noise_sd: float = NOISE_SD) -> dict[str, float]:
    """Add independent rater noise to every score and clip to [1, 10]."""
    noise = rng.normal(0.0, noise_sd, size=len(SCORE_NAMES))
    return {k: _clip(clean[k] + float(e), 1.0, 10.0) for k, e in zip(SCORE_NAMES, noise)}
