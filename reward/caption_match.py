"""``caption_match``: does a painting still show what its SynthArt caption asks for? A prompt-fidelity watch.

Aesthetic rewards (and a judge trained on the same kind of data) can rise while
the pictures stop following their prompts — e.g. every painting collapsing to
one empty, well-composed landscape. This reward checks the caption's content,
nothing aesthetic: for a caption written by :mod:`artquant_core.synthart.captions`

1. the sky (top rows) has the caption's sky hue;
2. the ground (bottom rows) has the ground hue;
3. the main subject's hue covers at least ``MIN_MAIN_AREA`` of the picture;
4. the secondary shape's hue covers at least ``MIN_SECOND_AREA``;
5. the main hue's pixels sit in the caption's column (left / centre / right);
6. ... and row (upper / middle / lower).

The reward is the fraction of the six checks passed, in ``[0, 1]`` (5 and 6 fail
when the main hue is absent). Hues are named by the captions' own rule
(:func:`~artquant_core.synthart.captions.colour_name`, dark/pale ignored).
SynthArt's own paintings pass about 0.8 of the checks on average (exposure
faults and blur shift colours; ``tests/test_caption_match.py``), so compare a
fine-tuned model with its base, not with 1. Not differentiable; a caption it
cannot parse raises ``ValueError`` naming it.
"""

from __future__ import annotations

import torch

from reward.base import BaseReward

MIN_MAIN_AREA = 0.02  # the main subject covers ~5 % of a SynthArt painting
MIN_SECOND_AREA = 0.008  # the secondary shape ~2 %
BAND = 0.12  # sky / ground: this share of the rows at the top / bottom


def parse_caption(caption: str) -> dict[str, str]:
    """:func:`artquant_core.synthart.captions.parse_caption`, its error naming this reward."""
    from artquant_core.synthart.captions import parse_caption as parse

    try:
        return parse(caption)
    except ValueError as exc:
        raise ValueError(f"caption_match: {exc}") from None


def hue_names(images: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` index into ``COLOUR_WORDS`` of each pixel's hue name (the captions' naming rule)."""
    from artquant_core.synthart.captions import COLOUR_WORDS, HUE_NAMES

    rgb = images.float().clamp(0, 1)
    high, _ = rgb.max(dim=1)
    low, _ = rgb.min(dim=1)
    delta = high - low
    saturation = torch.where(high > 0, delta / high.clamp_min(1e-8), torch.zeros_like(high))
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    safe = delta.clamp_min(1e-8)
    hue = torch.where(high == r, ((g - b) / safe) % 6, torch.where(high == g, (b - r) / safe + 2, (r - g) / safe + 4))
    degrees = (hue * 60.0) % 360.0
    edges = torch.tensor([edge for edge, _ in HUE_NAMES], dtype=degrees.dtype)
    names = torch.tensor([COLOUR_WORDS.index(name) for _, name in HUE_NAMES])
    index = names[torch.bucketize(degrees, edges, right=True).clamp(max=len(HUE_NAMES) - 1)]
    return torch.where(saturation < 0.18, torch.full_like(index, COLOUR_WORDS.index("grey")), index)


def _third(coordinate: float) -> int:
    """0 / 1 / 2 for a centroid left of / at / right of the middle: captions put grid cells 0.17 and 0.33 on
    the left, 0.5 in the centre, 0.67 and 0.83 on the right (each jittered by up to 0.02)."""
    return 0 if coordinate < 0.42 else 2 if coordinate > 0.58 else 1


class CaptionMatch(BaseReward):
    """Fraction of a SynthArt caption's content checks a painting passes (module docstring)."""

    name = "caption_match"
    differentiable = False

    def compute(self, images: torch.Tensor, prompts: list[str] | None) -> torch.Tensor:
        from artquant_core.synthart.captions import COLOUR_WORDS, HORIZONTAL, VERTICAL, colour_name

        if prompts is None:
            raise ValueError("caption_match needs the prompts (SynthArt captions) of the images")
        images = images.detach().float().cpu()
        _, _, height, width = images.shape
        band = max(1, int(round(BAND * height)))
        names = hue_names(images)
        ys = (torch.arange(height, dtype=torch.float32) + 0.5) / height
        xs = (torch.arange(width, dtype=torch.float32) + 0.5) / width
        scores = []
        for image, pixel_names, prompt in zip(images, names, prompts):
            want = parse_caption(prompt)
            sky = colour_name(image[:, :band].mean(dim=(1, 2)).tolist(), with_tone=False)
            ground = colour_name(image[:, -band:].mean(dim=(1, 2)).tolist(), with_tone=False)
            main = pixel_names == COLOUR_WORDS.index(want["main"])
            second = pixel_names == COLOUR_WORDS.index(want["second"])
            checks = [sky == want["sky"], ground == want["ground"],
                      main.float().mean() >= MIN_MAIN_AREA, second.float().mean() >= MIN_SECOND_AREA]
            if main.any():
                cx = float((main.float().sum(dim=0) * xs).sum() / main.sum())
                cy = float((main.float().sum(dim=1) * ys).sum() / main.sum())
                checks += [HORIZONTAL[_third(cx)] == want["column"], VERTICAL[_third(cy)] == want["row"]]
            else:
                checks += [False, False]
            scores.append(sum(bool(c) for c in checks) / 6.0)
        return torch.tensor(scores, dtype=torch.float64)
