"""Does a painting show the shape its caption names? A small CNN that tells SynthArt's four shapes apart.

The painter benchmark's Fréchet distance looks at colour layout, contrast and edges; it cannot see whether
"a green square" came out as a square or as a round blob. This module measures that, the way conditional
image generators are often checked (a classifier trained on real data, applied to generated data):

1. :func:`shape_dataset` draws SynthArt paintings of a seed with the shape of their *main* subject
   (``disc``, ``square``, ``triangle``, ``diamond``; the small second shape and the clutter are distractors);
2. :func:`train_shape_classifier` fits :class:`ShapeClassifier` (six 3x3 convolutions at half resolution,
   73 k parameters; ~45 s on one CPU core with the defaults) on one seed;
3. :func:`shape_accuracy` gives the share of images whose predicted main shape is the expected one, per
   shape and overall, and the confusion matrix.

The classifier's accuracy on SynthArt paintings of an unseen seed is the ceiling (what the probe itself
can read); on a painter's samples for those paintings' captions it says how often the named shape is
drawn recognisably. Chance is 0.25. Training is seeded, so a rerun with the same number of torch threads
gives the same classifier; with another thread count the float sums differ and accuracies move by
~0.01–0.03 (one thread: SynthArt 0.945, the shipped painter's VAE 0.484; compare painters in one run
or at one thread count).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from alignment.painter_training import uint8_to_vae_input
from artquant_core.synthart.attributes import SHAPES

TRAIN_SEED = 7000  # SynthArt seed of the classifier's training paintings (no scorer, judge or painter uses it)


def shape_dataset(seed: int, n: int, size: int = 64) -> tuple[np.ndarray, list[str]]:
    """``(N, size, size, 3)`` uint8 SynthArt paintings of ``seed`` and the shape of each main subject."""
    from scripts.bench_painter import synthart_set

    images, captions = synthart_set(seed, n, size)
    return images, shapes_of_captions(captions)


def shapes_of_captions(captions: list[str]) -> list[str]:
    """The main subject's shape named by each SynthArt caption (``ValueError`` naming one that is not)."""
    from artquant_core.synthart.captions import parse_caption

    return [parse_caption(c)["shape"] for c in captions]


class ShapeClassifier(nn.Module):
    """The picture averaged down 2x (64 px -> 32 px), then three stages of two 3x3 convolutions (GroupNorm,
    SiLU) and a 2x max pool, a global max pool and a linear layer (73 k parameters).

    Max pooling rather than averaging: the main subject covers ~5 % of the picture, so a mean over the
    whole image would drown its evidence in sky, ground and distractors. Half resolution: at 32 px the
    shapes are still told apart (0.955 on an unseen seed, as at 64 px) in a quarter of the time.
    """

    def __init__(self, n_classes: int = len(SHAPES), widths: tuple[int, ...] = (16, 32, 64)):
        super().__init__()
        layers, channels = [], 3
        for width in widths:
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.GroupNorm(8, width), nn.SiLU(),
                       nn.Conv2d(width, width, 3, padding=1), nn.GroupNorm(8, width), nn.SiLU(), nn.MaxPool2d(2)]
            channels = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, n_classes)

    def forward(self, images_uint8_nhwc: torch.Tensor) -> torch.Tensor:
        """Logits over :data:`SHAPES` for ``(B, H, W, 3)`` uint8 images (H, W even)."""
        x = uint8_to_vae_input(images_uint8_nhwc)  # (B, 3, H, W) in [-1, 1]
        return self.head(self.features(F.avg_pool2d(x, 2)).amax(dim=(2, 3)))


def train_shape_classifier(seed: int = TRAIN_SEED, n: int = 3000, steps: int = 600, batch_size: int = 64,
                           learning_rate: float = 1e-3, torch_seed: int = 0, size: int = 64) -> ShapeClassifier:
    """A :class:`ShapeClassifier` fitted on ``n`` SynthArt paintings of ``seed`` (Adam, constant rate).

    The loss sits at chance (ln 4) until the network has found the main subject among sky, ground and
    distractors (~150 steps), then drops within ~100 steps; the defaults leave room for that (0.955
    accuracy on 400 paintings of an unseen seed, ~45 s on one CPU core). A higher rate with decay
    (2e-3, cosine) was measured to stall at one class.
    """
    images, shapes = shape_dataset(seed, n, size)
    x = torch.from_numpy(images)
    y = torch.tensor([SHAPES.index(s) for s in shapes])
    gen = torch.Generator().manual_seed(torch_seed)
    torch.manual_seed(torch_seed)  # the initial weights
    model = ShapeClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(x), (batch_size,), generator=gen)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


@torch.no_grad()
def predict_shapes(model: ShapeClassifier, images_uint8_nhwc: np.ndarray, batch_size: int = 256) -> list[str]:
    """The predicted main-subject shape of each image."""
    x = torch.from_numpy(np.ascontiguousarray(images_uint8_nhwc))
    predicted = torch.cat([model(x[i:i + batch_size]).argmax(dim=1) for i in range(0, len(x), batch_size)])
    return [SHAPES[int(k)] for k in predicted]


def shape_accuracy(model: ShapeClassifier, images_uint8_nhwc: np.ndarray, expected: list[str]) -> dict:
    """``{"accuracy", "per_shape": {shape: accuracy}, "confusion": {expected: {predicted: count}}}``."""
    if len(images_uint8_nhwc) != len(expected):
        raise ValueError(f"shape_accuracy: {len(images_uint8_nhwc)} images but {len(expected)} expected shapes")
    unknown = sorted(set(expected) - set(SHAPES))
    if unknown:
        raise ValueError(f"shape_accuracy: unknown shape(s) {unknown}; SynthArt's are {list(SHAPES)}")
    predicted = predict_shapes(model, images_uint8_nhwc)
    confusion = {e: {p: 0 for p in SHAPES} for e in SHAPES}
    for e, p in zip(expected, predicted):
        confusion[e][p] += 1
    per_shape = {s: (confusion[s][s] / sum(confusion[s].values()) if sum(confusion[s].values()) else None)
                 for s in SHAPES}
    hits = sum(e == p for e, p in zip(expected, predicted))
    return {"accuracy": hits / len(expected), "per_shape": per_shape, "confusion": confusion}
