"""SynthArt: the embedded procedural painting data set with known scores and a known noise ceiling.

``make_synthart(out_dir, n, seed=0, size=64)`` writes images and records;
``synthart_corpus(n, seed)`` returns every text it (and the scorer) uses, for
tokenizer training. The score formula is documented in
:mod:`artquant_core.synthart.attributes`, the description format in
:mod:`artquant_core.synthart.descriptions`.
"""

from artquant_core.synthart.attributes import FORMULA, NOISE_SD, SCORE_NAMES
from artquant_core.synthart.dataset import GENERATOR_VERSION, make_synthart, synthart_corpus

__all__ = ["make_synthart", "synthart_corpus", "FORMULA", "NOISE_SD", "SCORE_NAMES", "GENERATOR_VERSION"]
