"""``ArtQuantScorer``: a Hugging Face VLM read out as an aesthetic scorer.

Read-out (ArtQuant): the user turn holds the image and the question, the
assistant turn starts with the answer prefix "The quality of the painting is";
the logits of the level words (" excellent", " good", ...) at the next position
are softmaxed, the score is the expectation over the scale's anchors and the
std the spread. Everything family-specific lives in ``vlm_families``; loading
and saving in ``scorer_io``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from artquant_core._scorer_defaults import (ANSWER_PREFIX, APDD_SCALE, ASPECTS,
                                            DESCRIPTION_QUESTIONS, SCORE_QUESTIONS, attribute_prompt)
from artquant_core.images import image_batch
from artquant_core.levels import expected_score_and_spread
from artquant_core.patch_embed import use_linear_patch_embed
from artquant_core.prompts import strip_image_placeholders
from artquant_core.vlm_families import FamilyAdapter, adapter_for
from artquant_core.vlm_preprocess import prepare_images


@dataclass
class ScoreOutput:
    """``score (B,)`` on the level scale, ``level_probs (B, L)`` in the scale's word order, ``std (B,)``."""

    score: torch.Tensor
    level_probs: torch.Tensor
    std: torch.Tensor


class ArtQuantScorer(nn.Module):
    """A VLM scorer. Public attributes the training code relies on:

    - ``model``: the HF ``*ForConditionalGeneration`` (possibly peft-wrapped);
    - ``tokenizer``: its tokenizer (left padding); ``image_processor``: the HF image processor
      whose settings the torch-native preprocessing reproduces;
    - ``family``: the :class:`FamilyAdapter` (chat layout, image tokens, preprocessing);
    - ``scale``: the ``LevelScale`` (default ``APDD_SCALE``);
    - ``level_token_ids``: ``LongTensor (L,)``, the token of each level word after the answer prefix;
    - ``answer_prefix``, ``score_question``, ``description_question``: the prompts used by
      :meth:`score` and :meth:`describe`.

    Every level word must be a single token after the answer prefix (and after each
    attribute prefix); otherwise construction raises ``ValueError`` naming the word.
    """

    def __init__(self, model: nn.Module, tokenizer, image_processor, scale=APDD_SCALE,
                 family: str | None = None, answer_prefix: str = ANSWER_PREFIX,
                 score_question: str = SCORE_QUESTIONS[0],
                 description_question: str = DESCRIPTION_QUESTIONS[0], linear_patch_embed: bool = True):
        super().__init__()
        self.model = model
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer has no pad token; set tokenizer.pad_token before building the scorer")
        self.tokenizer, self.image_processor, self.scale = tokenizer, image_processor, scale
        self.family: FamilyAdapter = adapter_for(model.config, tokenizer, image_processor, family)
        self.answer_prefix, self.score_question = answer_prefix, score_question
        self.description_question = description_question
        self._token_cache: dict[tuple[str, bool], list[int]] = {}
        self.register_buffer("anchors", torch.tensor(scale.anchors, dtype=torch.float32), persistent=False)
        prefixes = {answer_prefix} | {attribute_prompt(a)[1] for a in ASPECTS}
        self._level_ids = {p: self._level_ids_after(p) for p in sorted(prefixes)}
        self.register_buffer("level_token_ids", self._level_ids[answer_prefix], persistent=False)
        if linear_patch_embed:
            use_linear_patch_embed(model)

    # ------------------------------------------------------------------ tokens
    def _tokens(self, text: str, special: bool = False) -> list[int]:
        key = (text, special)
        if key not in self._token_cache:
            if len(self._token_cache) > 4096:
                self._token_cache.clear()
            self._token_cache[key] = self.tokenizer(text, add_special_tokens=special)["input_ids"]
        return self._token_cache[key]

    def _level_ids_after(self, prefix: str) -> torch.Tensor:
        """Each level word's token after ``prefix``, found by diffing tokenisations."""
        sep = self.family.answer_separator
        base = self._tokens(sep + prefix)
        ids = []
        for word in self.scale.words:
            full = self._tokens(f"{sep}{prefix} {word}")
            if len(full) != len(base) + 1 or full[: len(base)] != base:
                shared = next((i for i, (a, b) in enumerate(zip(base, full)) if a != b), min(len(base), len(full)))
                pieces = self.tokenizer.convert_ids_to_tokens(full[shared:])
                raise ValueError(f"level word {word!r} is not a single token after {prefix!r}: "
                                 f"' {word}' is tokenised as {pieces}")
            ids.append(full[-1])
        if len(set(ids)) != len(ids):
            raise ValueError(f"level words {self.scale.words} share tokens {ids}")
        return torch.tensor(ids, dtype=torch.long)

    def level_ids_for(self, aspect: str | None = None) -> torch.Tensor:
        """``LongTensor (L,)``: the level words' tokens after ``aspect``'s answer prefix (``None``: overall)."""
        prefix = self.answer_prefix if aspect is None else attribute_prompt(aspect)[1]
        return self._level_ids[prefix].to(self.level_token_ids.device)

    def prompt_for(self, aspect: str | None = None) -> tuple[str, str]:
        """(question, answer prefix) that :meth:`score` uses for ``aspect``."""
        return (self.score_question, self.answer_prefix) if aspect is None else attribute_prompt(aspect)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------ inputs
    def encode(self, images, questions: list[str], answers: list[str] | None = None,
               add_answer_prefix: bool = True, answer_prefix: str | list[str] | None = None) -> dict:
        """Model inputs for a batch, LEFT padded, on the model's device.

        ``images``: tensor ``(B, 3, H, W)`` float in [0, 1] / uint8, or a list of PIL
        images or ``(3, H, W)`` tensors (sizes may differ; uint8 items are resized with
        the HF processor's uint8 rounding, so no PIL round trip is needed), or an
        ``ImageBatch`` (already validated: used as it is); they go
        through the family's torch-native preprocessing, so gradients
        flow back to a float tensor input. ``questions``: one per image; any image
        placeholder (``<image>`` or ``<|image|>``, as records store the human turn) is dropped,
        since the family adapter places the image tokens itself.

        With ``answers`` the whole chat (question, answer, end-of-turn token) is
        encoded and ``labels`` (-100 except on answer tokens) are added. Without,
        the prompt ends with the assistant's generation prompt followed (when
        ``add_answer_prefix``) by ``answer_prefix`` (default: the scorer's
        "The quality of the painting is"), so the next token is the level word.

        Returns ``input_ids``, ``attention_mask``, ``pixel_values`` and the family's
        extras (``image_grid_thw`` + ``mm_token_type_ids`` for Qwen-VL).
        """
        items, was_uint8 = prepare_images(images)
        if len(questions) != len(items):
            raise ValueError(f"got {len(questions)} questions for {len(items)} images")
        if answers is not None and len(answers) != len(items):
            raise ValueError(f"got {len(answers)} answers for {len(items)} images")
        prefixes = answer_prefix if isinstance(answer_prefix, (list, tuple)) else \
            [answer_prefix or self.answer_prefix] * len(items)
        pixel_inputs, n_tokens = self.pixel_inputs(items, quantize=was_uint8)
        sep, rows, label_rows = self.family.answer_separator, [], []
        for i, question in enumerate(questions):
            question = strip_image_placeholders(question)
            ids = list(self._tokens(self.family.prompt(question, self.family.image_text(n_tokens[i])), True))
            labels = [-100] * len(ids)
            if answers is not None:
                answer = self._tokens(sep + answers[i] + self.family.end_of_turn)
                ids, labels = ids + answer, labels + answer
            elif add_answer_prefix:
                ids = ids + self._tokens(sep + prefixes[i])
            rows.append(ids)
            label_rows.append(labels)
        width = max(map(len, rows))
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], dtype=torch.long)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
        batch = {"input_ids": input_ids, "attention_mask": mask, **self.family.extra_inputs(input_ids)}
        if answers is not None:
            batch["labels"] = torch.tensor([[-100] * (width - len(r)) + r for r in label_rows], dtype=torch.long)
        return {**{k: v.to(self.device) for k, v in batch.items()}, **pixel_inputs}

    def pixel_inputs(self, items: list[torch.Tensor], quantize: bool) -> tuple[dict[str, torch.Tensor], list[int]]:
        """The family's pixel inputs of ``prepare_images`` output, on the model's device and float dtype,
        and the number of visual tokens of each image."""
        pixel_inputs, n_tokens = self.family.preprocess(items, quantize=quantize)
        device, dtype = self.device, next(self.model.parameters()).dtype
        return {k: v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype)
                for k, v in pixel_inputs.items()}, n_tokens

    # ------------------------------------------------------------------ read-out
    def score_from_logits(self, next_token_logits: torch.Tensor,
                          level_token_ids: torch.Tensor | None = None) -> ScoreOutput:
        """Softmax over the level tokens of ``next_token_logits (B, V)`` → expectation and spread."""
        ids = self.level_token_ids if level_token_ids is None else level_token_ids
        logits = next_token_logits[:, ids.to(next_token_logits.device)]
        # float32 at least (bf16 logits), float64 kept: gradient checks need it end to end.
        probs = torch.softmax(logits if logits.dtype == torch.float64 else logits.float(), dim=-1)
        score, std = expected_score_and_spread(probs, self.anchors)
        return ScoreOutput(score=score, level_probs=probs, std=std)

    def forward(self, **batch):
        """The HF model's output (``.logits``, ``.loss`` when ``labels`` are given)."""
        return self.model(**batch)

    def score(self, images, aspect: str | None = None, batch_size: int | None = None) -> ScoreOutput:
        """Scores of an image batch (see :meth:`encode` for the accepted inputs).

        Differentiable with respect to a float tensor that requires grad; otherwise
        runs under ``torch.no_grad``. ``aspect`` picks an ArtiMuse attribute prompt
        (``composition``, ``visual_elements``, ``technical_execution``, ``originality``,
        ``theme``, ``emotion``, ``gestalt``; ``overall`` or ``None`` is the overall score).
        """
        question, prefix = self.prompt_for(aspect)
        images = image_batch(images)  # validated once, not once per chunk
        needs_grad = images.requires_grad and torch.is_grad_enabled()
        n = len(images)
        step = batch_size or max(n, 1)
        outputs = []
        with torch.set_grad_enabled(needs_grad):
            for start in range(0, n, step):
                chunk = images[start:start + step]
                batch = self.encode(chunk, [question] * len(chunk), answer_prefix=prefix)
                logits = self.model(**batch, logits_to_keep=1).logits[:, -1, :]
                outputs.append(self.score_from_logits(logits, self._level_ids[prefix]))
        return ScoreOutput(*(torch.cat(parts) for parts in zip(*((o.score, o.level_probs, o.std) for o in outputs))))

    @torch.no_grad()
    def describe(self, images, max_new_tokens: int = 128, question: str | None = None) -> list[str]:
        """Greedy hierarchical Perception / Cognition / Emotion description of each image."""
        images = image_batch(images)
        batch = self.encode(images, [question or self.description_question] * len(images), add_answer_prefix=False)
        eot = self.tokenizer.convert_tokens_to_ids(self.family.end_of_turn)
        out = self.model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                  pad_token_id=self.tokenizer.pad_token_id,
                                  eos_token_id=[t for t in {eot, self.tokenizer.eos_token_id} if t is not None])
        new = out[:, batch["input_ids"].shape[1]:]
        return [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]

    # ------------------------------------------------------------------ I/O
    @classmethod
    def from_pretrained(cls, path_or_id: str | Path, **kwargs) -> "ArtQuantScorer":
        """Load a scorer folder, a LoRA adapter folder, or a plain HF VLM (local path or hub id).

        Keywords: ``dtype``, ``attn_implementation``, ``device_map``, ``trust_remote_code``
        (off unless given), ``family``, ``scale``, ``linear_patch_embed``. Missing files
        raise ``FileNotFoundError`` naming the folder and the file.
        """
        from artquant_core.scorer_io import load_scorer

        return load_scorer(cls, path_or_id, **kwargs)

    def save_pretrained(self, save_directory: str | Path, merge_lora: bool = False) -> Path:
        """Write model (safetensors), tokenizer, image processor and ``artquant_scorer.json``.

        A peft-wrapped model is saved as its adapter (loadable with :meth:`from_pretrained`
        as long as the adapter's base path stays valid) or, with ``merge_lora=True``,
        merged into full weights.
        """
        from artquant_core.scorer_io import save_scorer

        return save_scorer(self, save_directory, merge_lora=merge_lora)
