"""Training examples from records, and the collator that turns them into model inputs.

One record can give several examples, mixed per batch by the shuffled
sampler: its score (``task="score"``), its description (``"description"``)
and one score example per SynthArt attribute (``"attributes"``, trained with
the attribute's question and answer prefix — the ``aspect=`` prompts).
"""

from __future__ import annotations

import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from artquant_core.prompts import strip_image_placeholders

TASK_IDS = {"score": 0, "description": 1, "attribute": 2}


@dataclass
class Example:
    task: str                     # "score" or "description"
    record_id: str
    image_path: str
    question: str
    answer: str
    aspect: str | None = None     # None = overall score
    gt_score: float = float("nan")
    gt_std: float = float("nan")
    target: tuple[float, ...] | None = None  # soft label over the levels (score task)


def _turns(record: Any) -> tuple[str | None, str | None]:
    conv = getattr(record, "conversations", None) or []
    human = next((t.get("value") for t in conv if t.get("from") in ("human", "user")), None)
    gpt = next((t.get("value") for t in conv if t.get("from") in ("gpt", "assistant")), None)
    if human is not None:
        human = strip_image_placeholders(human)
    return human, gpt


def _resolve(image: str, root: Path) -> str:
    path = Path(image)
    return str(path if path.is_absolute() else root / path)


def _aspect_prompt(aspect: str) -> tuple[str, str]:
    from artquant_core import prompts

    return prompts.score_question(aspect), prompts.attribute_answer_prefix(aspect)


def build_examples(records: Sequence[Any], tasks: Sequence[str], scale, image_root: str | Path,
                   source: str = "records", seed: int = 0, attributes_per_record: int = 0,
                   description_fraction: float = 1.0) -> list[Example]:
    """Expand records into training examples for the chosen ``tasks``.

    ``attributes_per_record`` (0 = all) keeps a seeded random subset of each
    record's attribute scores; ``description_fraction`` a seeded random share of
    the description records (they are long: a few cost as much as many scores). Soft labels come
    from the record's ``level_probs`` or, when it has none, from ``score_to_level_probs`` (one
    vectorised call for the whole set) with the record's ``std`` (rater spread, score units) as
    the Gaussian's sigma, or ``default_spread(scale)`` where the record has no ``std`` (attribute
    scores never do). Questions lose their image placeholders (``prompts.strip_image_placeholders``).
    Raises ``ValueError`` naming the file, record index and id for a score
    record without a score or a description record without text.
    """
    import numpy as np

    from artquant_core import prompts
    from artquant_core.levels import default_spread, score_to_level_probs

    root = Path(image_root)
    rng = random.Random(seed)
    examples: list[Example] = []
    need_labels: list[int] = []  # examples whose soft label is derived from their score
    want_desc, want_attr = "description" in tasks, "attributes" in tasks
    want_score = "score" in tasks or "pair" in tasks

    def where(i: int, rec: Any) -> str:
        return f"{source}: record {i} (id {getattr(rec, 'id', '?')!r})"

    for i, rec in enumerate(records):
        rid, image = str(getattr(rec, "id", i)), _resolve(str(rec.image), root)
        question, answer = _turns(rec)
        if getattr(rec, "task_type", None) == "description":
            if not want_desc or (description_fraction < 1.0 and rng.random() >= description_fraction):
                continue
            if not answer or not answer.strip():
                raise ValueError(f"{where(i, rec)}: description record without description text (conversations)")
            examples.append(Example("description", rid, image,
                                    question or rng.choice(prompts.DESCRIPTION_QUESTIONS), answer.strip()))
            continue
        gt = getattr(rec, "gt_score", None)
        if want_score:
            if gt is None or gt != gt:
                raise ValueError(f"{where(i, rec)}: score record without a score (gt_score) in a score task")
            probs = getattr(rec, "level_probs", None)
            std = getattr(rec, "std", None)
            examples.append(Example("score", rid, image, question or rng.choice(prompts.SCORE_QUESTIONS),
                                    answer or "", None, float(gt), float("nan") if std is None else float(std),
                                    None if probs is None else tuple(float(p) for p in probs)))
            if probs is None:
                need_labels.append(len(examples) - 1)
        aspects = [(a, v) for a, v in (getattr(rec, "attributes", None) or {}).items()
                   if v is not None and a != "overall"] if want_attr else []  # "overall" is the record's score
        if attributes_per_record and len(aspects) > attributes_per_record:
            aspects = rng.sample(aspects, attributes_per_record)
        for aspect, value in aspects:
            q, prefix = _aspect_prompt(aspect)
            examples.append(Example("score", f"{rid}:{aspect}", image, q, prefix, aspect, float(value)))
            need_labels.append(len(examples) - 1)
    if not examples:
        raise ValueError(f"{source}: no training examples for tasks {list(tasks)}")
    if need_labels:
        scores = np.array([examples[k].gt_score for k in need_labels], dtype=np.float64)
        stds = np.array([examples[k].gt_std for k in need_labels], dtype=np.float64)
        # a record's rater spread shapes its label (wider -> flatter); without one, the fixed default
        sigmas = np.where(np.isnan(stds), default_spread(scale), stds)
        for k, probs in zip(need_labels, score_to_level_probs(scores, scale, std=sigmas)):
            examples[k].target = tuple(float(p) for p in probs)
    for ex in examples:
        if ex.task == "score" and (not ex.answer or ex.aspect is not None):
            # answer: the prefix (the attribute's, or the default) and the most likely level word
            prefix = ex.answer if ex.aspect is not None else prompts.ANSWER_PREFIX
            ex.answer = f"{prefix} {scale.words[int(np.argmax(ex.target))]}."
    return examples


class ExampleDataset(torch.utils.data.Dataset):
    """Examples with their images loaded on access (uint8 ``(3, H, W)``).

    With ``skip_bad_images`` an unreadable image is skipped with a warning and
    counted in ``n_skipped``; otherwise the error names the record and the file.
    """

    def __init__(self, examples: list[Example], skip_bad_images: bool = False) -> None:
        self.examples = examples
        self.skip_bad_images = skip_bad_images
        self.n_skipped = 0
        missing = [e for e in examples if not Path(e.image_path).is_file()]
        if missing and not skip_bad_images:
            e = missing[0]
            raise FileNotFoundError(f"record {e.record_id!r}: image file not found: {e.image_path}"
                                    + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict | None:
        from artquant_core.images import load_image, pil_to_uint8_tensor

        ex = self.examples[index]
        try:
            image = pil_to_uint8_tensor(load_image(ex.image_path))
        except (OSError, ValueError) as exc:
            if not self.skip_bad_images:
                raise ValueError(f"record {ex.record_id!r}: unreadable image {ex.image_path}: {exc}") from exc
            self.n_skipped += 1
            warnings.warn(f"skipping record {ex.record_id!r}: unreadable image {ex.image_path} "
                          f"({self.n_skipped} skipped so far)")
            return None
        return {"example": ex, "image": image}


class ScorerCollator:
    """Encodes a list of examples with the scorer and adds what the losses need.

    Output: the model inputs of ``scorer.encode`` (left padded) with ``labels``
    where the level token of every score example is masked out of the CE, plus
    ``task_ids (B,)``, ``level_positions (B,)`` (index of the level token, -1
    for description rows), ``level_ids (B, L)``, ``level_targets (B, L)``,
    ``gt_scores (B,)`` and ``gt_std (B,)``.
    """

    def __init__(self, scorer) -> None:
        self.scorer = scorer

    def _level_ids(self, aspect: str | None) -> torch.Tensor:
        if aspect is None:
            return self.scorer.level_token_ids.cpu()
        prefix = _aspect_prompt(aspect)[1]
        table = getattr(self.scorer, "_level_ids", {})
        return (table[prefix] if prefix in table else self.scorer.level_token_ids).cpu()

    def __call__(self, items: list[dict | None]) -> dict[str, torch.Tensor]:
        items = [it for it in items if it is not None]
        if not items:
            raise ValueError("a whole batch of images was unreadable; nothing to train on")
        examples = [it["example"] for it in items]
        images = [it["image"] for it in items]
        shapes = {tuple(im.shape) for im in images}
        batch_images = torch.stack(images) if len(shapes) == 1 else images
        if not isinstance(batch_images, torch.Tensor):
            from PIL import Image

            batch_images = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in images]
        with torch.no_grad():
            batch = self.scorer.encode(batch_images, [e.question for e in examples], [e.answer for e in examples])
        batch = {k: v.cpu() for k, v in batch.items()}
        labels, input_ids = batch["labels"], batch["input_ids"]
        n_levels = len(self.scorer.scale.words)
        positions = torch.full((len(examples),), -1, dtype=torch.long)
        level_ids = torch.zeros(len(examples), n_levels, dtype=torch.long)
        targets = torch.zeros(len(examples), n_levels)
        for b, ex in enumerate(examples):
            ids = self._level_ids(ex.aspect)
            level_ids[b] = ids
            if ex.task != "score":
                continue
            hits = ((labels[b] != -100) & torch.isin(input_ids[b], ids)).nonzero().flatten()
            if len(hits) == 0:
                raise ValueError(f"record {ex.record_id!r}: the score answer {ex.answer!r} holds no level word "
                                 f"{tuple(self.scorer.scale.words)} as a single token")
            positions[b] = hits[0]
            labels[b, hits[0]] = -100  # the level token is trained by the KL, not the CE
            targets[b] = torch.tensor(ex.target)
        batch.update(labels=labels, level_positions=positions, level_ids=level_ids, level_targets=targets,
                     task_ids=torch.tensor([TASK_IDS["attribute" if e.aspect else e.task] for e in examples]),
                     gt_scores=torch.tensor([e.gt_score for e in examples], dtype=torch.float32),
                     gt_std=torch.tensor([e.gt_std for e in examples], dtype=torch.float32))
        return batch
