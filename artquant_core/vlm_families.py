"""Per-family adapters: what differs between VLM families, and nothing else.

An adapter knows a family's chat layout, its image placeholder tokens, the
torch-native twin of its image processor and any extra model inputs. Everything
else (tokenising, padding, read-out, saving) is shared in ``ArtQuantScorer``.

Families: ``qwen2_5_vl`` (also Qwen2-VL, same processor and token layout) and
``llava`` (CLIP + Llama, LLaVA-1.5 layout).
"""

from __future__ import annotations

import torch

from artquant_core.vlm_preprocess import ClipImagePreprocessor, QwenVLImagePreprocessor


class FamilyAdapter:
    """Base adapter. ``name`` is stored in ``artquant_scorer.json``."""

    name = ""
    model_types: tuple[str, ...] = ()
    end_of_turn = ""
    answer_separator = ""  # text between the generation prompt and the answer

    def __init__(self, config, tokenizer, image_processor):
        self.config, self.tokenizer = config, tokenizer
        self.preprocessor = self.build_preprocessor(image_processor)

    def build_preprocessor(self, image_processor):
        raise NotImplementedError

    def image_text(self, num_tokens: int) -> str:
        """The placeholder text for one image of ``num_tokens`` visual tokens."""
        raise NotImplementedError

    def prompt(self, question: str, image_text: str) -> str:
        """The chat up to and including the assistant's generation prompt."""
        raise NotImplementedError

    def preprocess(self, images: list[torch.Tensor], quantize: bool) -> tuple[dict, list[int]]:
        """Model pixel inputs and the number of visual tokens of each image."""
        raise NotImplementedError

    def extra_inputs(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        return {}


class QwenVLAdapter(FamilyAdapter):
    """Qwen2.5-VL / Qwen2-VL: variable grid, M-RoPE, ``mm_token_type_ids``."""

    name = "qwen2_5_vl"
    model_types = ("qwen2_5_vl", "qwen2_vl")
    end_of_turn = "<|im_end|>"
    system = "You are a helpful assistant."

    def build_preprocessor(self, image_processor):
        return QwenVLImagePreprocessor.from_hf(image_processor)

    def image_text(self, num_tokens: int) -> str:
        return "<|vision_start|>" + "<|image_pad|>" * num_tokens + "<|vision_end|>"

    def prompt(self, question: str, image_text: str) -> str:
        return (f"<|im_start|>system\n{self.system}<|im_end|>\n<|im_start|>user\n{image_text}{question}"
                f"<|im_end|>\n<|im_start|>assistant\n")

    def preprocess(self, images, quantize):
        inputs = self.preprocessor(images, quantize=quantize)
        return inputs, self.preprocessor.num_image_tokens(inputs["image_grid_thw"])

    def extra_inputs(self, input_ids):
        # Without it Qwen2.5-VL silently falls back to 1-D positions for image tokens.
        return {"mm_token_type_ids": (input_ids == self.config.image_token_id).to(torch.int32)}


class LlavaAdapter(FamilyAdapter):
    """LLaVA-1.5 (CLIP vision tower + Llama): padded to a square, fixed size, ``<image>`` × patches.

    Images are padded to a square of CLIP's mean colour before the resize, as LLaVA-1.5
    and ArtQuant's reference code do (``image_aspect_ratio: pad``), whatever the stored
    HF processor says (``llava-hf`` ships a plain CLIP processor that centre-crops, which
    cuts a painting's composition). ``RecordDataset(image_size=...)`` pads the same way,
    so training and scoring see the same pixels.
    """

    name = "llava"
    model_types = ("llava",)
    answer_separator = " "

    def __init__(self, config, tokenizer, image_processor):
        super().__init__(config, tokenizer, image_processor)
        self.end_of_turn = tokenizer.eos_token or "</s>"
        vision = config.vision_config
        patches = (vision.image_size // vision.patch_size) ** 2
        full = getattr(config, "vision_feature_select_strategy", "default") == "full"
        self.tokens_per_image = patches + (1 if full else 0)

    def build_preprocessor(self, image_processor):
        return ClipImagePreprocessor.from_hf(image_processor, pad_to_square=True)

    def image_text(self, num_tokens: int) -> str:
        return "<image>" * num_tokens

    def prompt(self, question: str, image_text: str) -> str:
        return f"USER: {image_text}\n{question} ASSISTANT:"

    def preprocess(self, images, quantize):
        return self.preprocessor(images, quantize=quantize), [self.tokens_per_image] * len(images)


FAMILIES: dict[str, type[FamilyAdapter]] = {"qwen2_5_vl": QwenVLAdapter, "llava": LlavaAdapter}


def adapter_for(config, tokenizer, image_processor, family: str | None = None) -> FamilyAdapter:
    """The adapter named ``family``, or the one whose model types include ``config.model_type``."""
    if family is None:
        for cls in FAMILIES.values():
            if config.model_type in cls.model_types:
                return cls(config, tokenizer, image_processor)
        known = "; ".join(f"{k}: {'/'.join(c.model_types)}" for k, c in FAMILIES.items())
        raise ValueError(f"unsupported model type {config.model_type!r}; supported families: {known}")
    if family not in FAMILIES:
        raise ValueError(f"unknown scorer family {family!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[family](config, tokenizer, image_processor)
