"""Draws one SynthArt painting from its latent attributes (vectorised numpy + a PIL blur).

Layers, back to front: a two-tone background split by a (possibly tilted)
horizon, ``clutter`` small distracting shapes, a secondary shape, the main
subject; then the exposure fault, Gaussian blur and pixel noise. Shapes are
soft-edged distance fields (anti-aliased for free) and all four main shapes
have the same area, so the subject's shape and position leave global colour
statistics unchanged.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np
from PIL import Image, ImageFilter

from artquant_core.synthart.attributes import SECONDARY_SCALE, Latent, main_position

# Hue offsets (degrees) of the five palette roles — top, bottom, main, secondary,
# clutter — for each harmonious scheme, and the discordant offsets a palette
# drifts to as harmony drops.
SCHEME_OFFSETS = {
    "analogous": (0, 25, -30, 50, 15),
    "complementary": (0, 15, 180, 200, 165),
    "triadic": (0, 20, 120, 240, 130),
}
DISCORD_OFFSETS = (0, 95, 62, 148, 283)
# (saturation, value) per role for a harmonious palette; discord scrambles them.
ROLE_SV = ((0.35, 0.85), (0.45, 0.55), (0.85, 0.9), (0.7, 0.75), (0.6, 0.7))
MAX_BLUR = 0.035  # Gaussian sigma at sharpness 0, fraction of the side
MAX_NOISE = 0.16  # pixel-noise sd at clean 0, on the [0, 1] scale


def palette(lat: Latent, rng: np.random.Generator) -> np.ndarray:
    """(5, 3) RGB colours in [0, 1] for the roles top, bottom, main, secondary, clutter."""
    discord = 1.0 - lat.harmony
    colours = []
    for role, (off, bad, (s, v)) in enumerate(zip(SCHEME_OFFSETS[lat.scheme], DISCORD_OFFSETS, ROLE_SV)):
        hue = (lat.base_hue + ((1 - discord) * off + discord * bad) / 360.0) % 1.0
        s = max(0.1, min(1.0, s + discord * rng.uniform(-0.35, 0.35)))
        v = max(0.25, min(1.0, v + discord * rng.uniform(-0.25, 0.25)))
        colours.append(colorsys.hsv_to_rgb(hue, s, v))
    return np.asarray(colours, dtype=np.float32)


def shape_distance(shape: str, X: np.ndarray, Y: np.ndarray, cx: float, cy: float,
                   r: float) -> np.ndarray:
    """Signed distance (pixels, approximately) to an area-``pi r^2`` shape centred at (cx, cy)."""
    dx, dy = X - cx, Y - cy
    if shape == "disc":
        return np.sqrt(dx * dx + dy * dy) - r
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) - r * math.sqrt(math.pi) / 2
    if shape == "diamond":
        return (np.abs(dx) + np.abs(dy)) / math.sqrt(2) - r * math.sqrt(math.pi) / 2
    if shape == "triangle":  # equilateral, apex up; inradius from equal area
        rho = r * math.sqrt(math.pi / (3 * math.sqrt(3)))
        d = dy  # normal pointing down (image y grows downwards)
        for ang in (math.radians(-30), math.radians(210)):
            d = np.maximum(d, dx * math.cos(ang) + dy * math.sin(ang))
        return d - rho
    raise ValueError(f"unknown shape {shape!r}")


def _paint(canvas: np.ndarray, shape: str, cx: float, cy: float, r: float, colour: np.ndarray) -> None:
    """Composite a soft-edged shape onto ``canvas`` in place (only inside its bounding box)."""
    size = canvas.shape[0]
    lo_x, hi_x = max(0, int(cx - 1.5 * r) - 1), min(size, int(cx + 1.5 * r) + 2)
    lo_y, hi_y = max(0, int(cy - 1.5 * r) - 1), min(size, int(cy + 1.5 * r) + 2)
    if lo_x >= hi_x or lo_y >= hi_y:
        return
    xs = np.arange(lo_x, hi_x, dtype=np.float32) + 0.5
    ys = np.arange(lo_y, hi_y, dtype=np.float32) + 0.5
    distance = shape_distance(shape, xs[None, :], ys[:, None], cx, cy, r)
    alpha = np.clip(0.5 - distance, 0.0, 1.0)[..., None]
    patch = canvas[lo_y:hi_y, lo_x:hi_x]
    patch *= 1.0 - alpha
    patch += alpha * colour


def render(lat: Latent, size: int, rng: np.random.Generator, pal: np.ndarray | None = None) -> np.ndarray:
    """The painting as a ``(size, size, 3)`` uint8 array (``pal``: :func:`palette`'s colours,
    drawn from ``rng`` when not given)."""
    if pal is None:
        pal = palette(lat, rng)
    coords = np.arange(size, dtype=np.float32) + 0.5
    X, Y = np.meshgrid(coords, coords)

    # background: top / bottom split by a tilted horizon, with a soft vertical light gradient
    theta = math.radians(lat.tilt)
    line_y = lat.horizon * size + math.tan(theta) * (X - size / 2)
    below = np.clip(0.5 + (Y - line_y) * math.cos(theta), 0.0, 1.0)[..., None]
    shade = (1.0 + 0.12 * (0.5 - Y / size))[..., None]
    canvas = (((1 - below) * pal[0] + below * pal[1]) * shade).astype(np.float32)

    for _ in range(lat.clutter):
        cx, cy = rng.uniform(0.06, 0.94, size=2) * size
        r = rng.uniform(0.03, 0.05) * size
        hue_jitter = rng.uniform(-0.15, 0.15, size=3)
        colour = np.clip(pal[4] + hue_jitter, 0, 1).astype(np.float32)
        _paint(canvas, ("disc", "square")[int(rng.integers(2))], cx, cy, r, colour)

    r_main = lat.radius * size
    _paint(canvas, lat.sec_shape, lat.sec_x * size, lat.sec_y * size, SECONDARY_SCALE * r_main, pal[3])
    mx, my = main_position(lat)
    _paint(canvas, lat.shape, mx * size, my * size, r_main, pal[2])

    # exposure fault
    dev = 1.0 - lat.exposure
    if lat.exposure_fault == "flat":
        canvas = (canvas - 0.5) * (1 - 0.7 * dev) + 0.5
    elif lat.exposure_fault == "bright":
        canvas = (canvas - 0.5) * (1 - 0.3 * dev) + 0.5 + 0.45 * dev
    else:
        canvas = (canvas - 0.5) * (1 - 0.3 * dev) + 0.5 - 0.45 * dev
    img = np.clip(canvas * 255.0 + 0.5, 0, 255).astype(np.uint8)

    sigma = (1.0 - lat.sharpness) * MAX_BLUR * size
    if sigma > 0.05:
        img = np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(sigma)))
    noise_sd = (1.0 - lat.clean) * MAX_NOISE * 255.0
    if noise_sd > 0.0:
        noisy = img.astype(np.float32) + rng.normal(0.0, noise_sd, size=img.shape).astype(np.float32)
        img = np.clip(noisy + 0.5, 0, 255).astype(np.uint8)
    return img
