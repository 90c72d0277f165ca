"""Writes SynthArt: PNG images + ArtQuant/RAD-format records + split files + meta data."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from artquant_core import prompts
from artquant_core.levels import APDD_SCALE, score_to_level_probs
from artquant_core.records import write_json_atomic
from artquant_core.synthart import attributes as attrs
from artquant_core.synthart.captions import caption
from artquant_core.synthart.descriptions import describe
from artquant_core.synthart.painter import palette, render

GENERATOR_VERSION = "synthart-1"
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)  # train, val, test


def level_word(score: float) -> str:
    """The level word whose anchor is nearest to ``score`` (APDD scale)."""
    anchors = np.asarray(APDD_SCALE.anchors, dtype=float)
    return APDD_SCALE.words[int(np.argmin(np.abs(anchors - score)))]


def assign_splits(n: int, seed: int) -> list[str]:
    """80/10/10 train/val/test by a seeded permutation (exact counts, at least one val and test)."""
    n_test = max(1, int(round(SPLIT_FRACTIONS[2] * n)))
    n_val = max(1, int(round(SPLIT_FRACTIONS[1] * n)))
    order = np.random.default_rng([seed, 0x5EED]).permutation(n)
    split = np.array(["train"] * n, dtype=object)
    split[order[:n_test]] = "test"
    split[order[n_test:n_test + n_val]] = "val"
    return [str(s) for s in split]


def _image_rng(seed: int, index: int) -> np.random.Generator:
    # one stream per image: output does not depend on the order (or process) that draws it
    return np.random.default_rng([seed, index])


def synth_item(seed: int, index: int, size: int | None, latent_overrides: dict | None = None) -> dict:
    """Everything about one painting; draws its pixels when ``size`` is given.

    ``latent_overrides``: latent fields set after drawing (e.g. ``{"sharpness": 1.0, "clean": 1.0}`` for
    the same painting without blur and noise); scores, description and pixels follow the changed latent,
    the rest of the painting (palette, clutter, layout) stays as drawn.
    """
    rng = _image_rng(seed, index)
    lat = attrs.sample_latent(rng)
    if latent_overrides:
        lat = attrs.derive_qualities(dataclasses.replace(lat, **latent_overrides))
    clean = attrs.noiseless_scores(lat)
    noisy = attrs.noisy_scores(clean, rng)
    pixel_rng = np.random.default_rng([seed, index, 1])
    pal = palette(lat, pixel_rng)
    text = describe(lat, clean, pal, rng)
    item = {"latent": lat, "clean": clean, "scores": noisy, "description": text, "caption": caption(lat, pal),
            "score_q": int(rng.integers(len(prompts.SCORE_QUESTIONS))),
            "desc_q": int(rng.integers(len(prompts.DESCRIPTION_QUESTIONS)))}
    if size is not None:
        item["pixels"] = render(lat, size, pixel_rng, pal)
    return item


def _records_for(item: dict, rid: str, image: str, split: str, rater: str = "overall") -> list[dict]:
    scores = item["scores"]
    gt = round(scores[rater], 4)
    attributes = {k: round(v, 4) for k, v in scores.items()}
    score_rec = {
        "id": rid, "image": image, "gt_score": gt, "level_probs": None,
        "conversations": [
            {"from": "human", "value": prompts.with_image(prompts.SCORE_QUESTIONS[item["score_q"]])},
            {"from": "gpt", "value": prompts.score_answer(level_word(gt))},
        ],
        "attributes": attributes, "caption": item["caption"], "split": split,
    }
    desc_rec = {
        "id": f"{rid}-desc", "image": image,
        "conversations": [
            {"from": "human", "value": prompts.with_image(prompts.DESCRIPTION_QUESTIONS[item["desc_q"]])},
            {"from": "gpt", "value": item["description"]},
        ],
        "task_type": "description", "attributes": attributes, "caption": item["caption"], "split": split,
    }
    return [score_rec, desc_rec]


def _validate(out_dir, n: int, size: int) -> Path:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 3:
        raise ValueError(f"n must be an integer >= 3 (train, val and test need one image each), got {n!r}")
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 16:
        raise ValueError(f"size must be an integer >= 16 pixels, got {size!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir {str(out)!r} exists and is a file, not a directory")
    return out


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def make_synthart(out_dir, n: int, seed: int = 0, size: int = 64,
                  progress: Callable[[int], None] | None = None, rater: str = "overall") -> str:
    """Write ``n`` SynthArt paintings under ``out_dir``; return the path of ``records.json``.

    Writes ``images/NNNNNN.png``; ``records.json`` (a score record and a description
    record per painting, image paths relative to the JSON, each with ``attributes``,
    ``caption`` (content only, see :mod:`.captions`) and ``split``); ``train.json`` / ``val.json`` / ``test.json`` (the same records by
    split); ``synthart_meta.json`` (generator version, seed, n, size, formula, noise
    sd, and the noise-ceiling SRCC: noiseless vs noisy ``gt_score`` on the test
    split, or on all images when the test split has fewer than 3). Deterministic per
    ``(seed, size)``. ``progress(k)`` is called after every ``k`` images written.

    ``rater``: which of SynthArt's scores is the records' ``gt_score`` — ``"overall"``
    (default) or one attribute, e.g. ``"composition"`` for a rater who judges only
    composition (same paintings, a different target: what fine-tuning adapts a scorer to).
    ``attributes`` always hold every score; the ceiling is computed for ``rater``.
    """
    out = _validate(out_dir, n, size)
    if rater not in attrs.SCORE_NAMES:
        raise ValueError(f"rater must be one of {', '.join(attrs.SCORE_NAMES)}, got {rater!r}")

    start = time.perf_counter()
    (out / "images").mkdir(parents=True, exist_ok=True)
    splits = assign_splits(int(n), seed)
    records: list[dict] = []
    clean_gt, noisy_gt = np.empty(n), np.empty(n)
    for i in range(int(n)):
        item = synth_item(seed, i, int(size))
        image = f"images/{i:06d}.png"
        Image.fromarray(item["pixels"]).save(out / image, compress_level=1)
        records.extend(_records_for(item, f"synthart-{seed}-{i:06d}", image, splits[i], rater))
        clean_gt[i], noisy_gt[i] = item["clean"][rater], item["scores"][rater]
        if progress is not None:
            progress(1)

    score_recs = [r for r in records if "gt_score" in r]
    probs = score_to_level_probs(np.array([r["gt_score"] for r in score_recs], dtype=np.float64))
    for rec, p in zip(score_recs, probs):
        rec["level_probs"] = [float(x) for x in p]

    write_json_atomic(out / "records.json", records)
    for name in ("train", "val", "test"):
        write_json_atomic(out / f"{name}.json", [r for r in records if r["split"] == name])
    test = np.array([s == "test" for s in splits])
    meta = {
        "generator": GENERATOR_VERSION, "seed": seed, "n": int(n), "size": int(size),
        "n_records": len(records), "splits": {s: int(splits.count(s)) for s in ("train", "val", "test")},
        "score_names": list(attrs.SCORE_NAMES), "formula": attrs.FORMULA, "noise_sd": attrs.NOISE_SD,
        "rater": rater,
        # SRCC(noiseless, noisy gt_score) on the test split (all images when it has < 3)
        "ceiling_srcc": spearman(clean_gt[test], noisy_gt[test]) if test.sum() >= 3
        else spearman(clean_gt, noisy_gt),
        "ceiling_split": "test" if test.sum() >= 3 else "all",
        "ceiling_srcc_all": spearman(clean_gt, noisy_gt),
        "gt_mean": float(noisy_gt.mean()), "gt_std": float(noisy_gt.std()),
        "seconds": round(time.perf_counter() - start, 3),
    }
    write_json_atomic(out / "synthart_meta.json", meta, indent=2)
    return str(out / "records.json")


def synthart_corpus(n: int = 2000, seed: int = 0) -> list[str]:
    """Every text SynthArt and the scorer use, for tokenizer training (no image is drawn).

    All prompts (score, description and attribute questions with and without the
    image placeholder), every score answer for every level word and aspect, and
    ``n`` descriptions.
    """
    texts: list[str] = []
    texts += [prompts.with_image(q) for q in prompts.SCORE_QUESTIONS + prompts.DESCRIPTION_QUESTIONS]
    texts += list(prompts.SCORE_QUESTIONS + prompts.DESCRIPTION_QUESTIONS)
    texts += [prompts.with_image(q) for q in prompts.ATTRIBUTE_QUESTIONS.values()]
    for aspect in (None, *prompts.ATTRIBUTES):
        texts += [prompts.score_answer(w, aspect) for w in APDD_SCALE.words]
    texts += [synth_item(seed, i, None)["description"] for i in range(n)]
    return texts
