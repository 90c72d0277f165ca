"""A small byte-level BPE tokenizer trained locally for the tiny scorers.

Trained with ``tokenizers`` on SynthArt's text plus the scorer prompts, with the
family's special tokens (chat markers, image placeholders, pad, eos). The level
words are repeated in the training text so " excellent", " good", ... become
single tokens; :class:`ArtQuantScorer` checks that at construction.
"""

from __future__ import annotations

from collections.abc import Iterable

from artquant_core import _scorer_defaults as defaults

SPECIAL_TOKENS = {
    "qwen2_5_vl": {"pad": "<|endoftext|>", "eos": "<|im_end|>",
                   "extra": ["<|im_start|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                             "<|video_pad|>"]},
    "llava": {"pad": "<pad>", "eos": "</s>", "bos": "<s>", "unk": "<unk>", "extra": ["<image>"]},
}

CHAT_TEMPLATES = {
    "qwen2_5_vl": (
        "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
        "{% for part in message['content'] %}{% if part['type'] == 'image' %}"
        "<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ part['text'] }}{% endif %}{% endfor %}"
        "{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"),
    "llava": (
        "{% for message in messages %}{% if message['role'] == 'user' %}USER: {% else %}ASSISTANT: {% endif %}"
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
        "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>\n{% else %}"
        "{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
        "{% if message['role'] == 'user' %} {% else %}</s>{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}ASSISTANT:{% endif %}"),
}


def prompt_corpus(level_words: Iterable[str] = ("excellent", "good", "fair", "poor", "bad")) -> list[str]:
    """The scorer's own texts: every question, and every answer prefix followed by every level word."""
    prefixes = [defaults.attribute_prompt(a)[1] for a in defaults.ASPECTS]
    questions = list(defaults.SCORE_QUESTIONS) + list(defaults.DESCRIPTION_QUESTIONS) + \
        [defaults.attribute_prompt(a)[0] for a in defaults.ASPECTS]
    lines = ["You are a helpful assistant."] + questions
    lines += [f"{p} {w}." for p in prefixes for w in level_words]
    return lines


def default_corpus() -> list[str]:
    """SynthArt's prompts, answers and 500 descriptions, plus the scorer prompts."""
    from artquant_core.synthart import synthart_corpus

    return list(synthart_corpus(n=500, seed=0)) + prompt_corpus()


def train_tiny_tokenizer(family: str = "qwen2_5_vl", corpus: Iterable[str] | None = None,
                         vocab_size: int = 1024):
    """Train a byte-level BPE tokenizer and wrap it as ``PreTrainedTokenizerFast`` (left padding)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if family not in SPECIAL_TOKENS:
        raise ValueError(f"unknown scorer family {family!r}; known: {', '.join(SPECIAL_TOKENS)}")
    spec = SPECIAL_TOKENS[family]
    specials = [spec[k] for k in ("pad", "eos", "bos", "unk") if k in spec] + spec["extra"]
    texts = list(corpus) if corpus is not None else default_corpus()
    # The prompts, repeated so their words (level words above all) get merged whole.
    texts += prompt_corpus() * 50
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    if "bos" in spec:  # Llama-style: BOS at the start of every encoded text with special tokens
        bos_id = tok.token_to_id(spec["bos"])
        tok.post_processor = processors.TemplateProcessing(
            single=f"{spec['bos']} $A", pair=f"{spec['bos']} $A $B", special_tokens=[(spec["bos"], bos_id)])
    names = {"pad": "pad_token", "eos": "eos_token", "bos": "bos_token", "unk": "unk_token"}
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, padding_side="left",
                                      **{names[k]: spec[k] for k in names if k in spec},
                                      additional_special_tokens=spec["extra"])
    wrapped.chat_template = CHAT_TEMPLATES[family]
    return wrapped
