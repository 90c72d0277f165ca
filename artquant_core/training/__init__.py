"""Scorer training: ``ScorerTrainingConfig`` (a ``TrainingArguments``) and ``train_scorer``."""

from artquant_core.training.config import ScorerTrainingConfig
from artquant_core.training.train import train_scorer

__all__ = ["ScorerTrainingConfig", "train_scorer"]
