"""scripts/shape_classifier.py: the main-shape probe of the painter benchmark."""

import numpy as np
import pytest

from artquant_core.synthart.attributes import SHAPES
from scripts.shape_classifier import (ShapeClassifier, predict_shapes, shape_accuracy, shape_dataset,
                                      shapes_of_captions, train_shape_classifier)


def test_dataset_labels_are_the_captions_main_shapes():
    from artquant_core.synthart.dataset import synth_item

    images, shapes = shape_dataset(7001, 12)
    assert images.shape == (12, 64, 64, 3) and images.dtype == np.uint8
    captions = [synth_item(7001, i, None)["caption"] for i in range(12)]
    assert shapes == shapes_of_captions(captions) and set(shapes) <= set(SHAPES)
    with pytest.raises(ValueError, match="not a SynthArt caption"):
        shapes_of_captions(["a photo of a cat"])


def test_accuracy_counts_and_bad_input():
    model = ShapeClassifier().eval()
    images, shapes = shape_dataset(7002, 8)
    predicted = predict_shapes(model, images)
    result = shape_accuracy(model, images, shapes)
    assert result["accuracy"] == pytest.approx(np.mean([p == e for p, e in zip(predicted, shapes)]))
    assert sum(sum(row.values()) for row in result["confusion"].values()) == 8
    for shape in SHAPES:  # a shape never expected has no accuracy, not a made-up 0
        row = result["confusion"][shape]
        assert (result["per_shape"][shape] is None) == (sum(row.values()) == 0)
    with pytest.raises(ValueError, match="8 images but 3 expected"):
        shape_accuracy(model, images, shapes[:3])
    with pytest.raises(ValueError, match="unknown shape"):
        shape_accuracy(model, images, ["hexagon"] * 8)


def test_trained_classifier_reads_shapes_of_an_unseen_seed():
    """Trained with its defaults (~45 s): far above chance (0.25) on another seed's paintings, for every
    shape, and near zero against wrong labels (it reads the picture, not a prior over shapes)."""
    model = train_shape_classifier()
    images, shapes = shape_dataset(5003, 256)
    result = shape_accuracy(model, images, shapes)
    assert result["accuracy"] >= 0.85, result
    assert min(result["per_shape"].values()) >= 0.7, result["per_shape"]
    # against the wrong labels (each shape named as the next one) the same pictures score near zero
    wrong = [SHAPES[(SHAPES.index(s) + 1) % len(SHAPES)] for s in shapes]
    assert shape_accuracy(model, images, wrong)["accuracy"] <= 0.1
