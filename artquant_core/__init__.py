"""The ArtQuant aesthetic scorer: levels, records, SynthArt data, model, training, evaluation."""

from __future__ import annotations

from artquant_core.lazy_exports import lazy_exports

_EXPORTS = {
    "LevelScale": "levels",
    "APDD_SCALE": "levels",
    "QALIGN_SCALE": "levels",
    "score_to_level_probs": "levels",
    "level_probs_to_score": "levels",
    "Record": "records",
    "load_records": "records",
    "write_records": "records",
    "load_image": "images",
    "to_image_batch": "images",
    "image_batch": "images",
    "ImageBatch": "images",
    "make_synthart": "synthart",
    "evaluate_scores": "metrics",
    "ArtQuantScorer": "scorer",
    "ScoreOutput": "scorer",
    "build_tiny_scorer": "tiny",
    "ScorerTrainingConfig": "training",
    "train_scorer": "training",
    "parse_config": "config",
    "RunTracker": "tracking",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
