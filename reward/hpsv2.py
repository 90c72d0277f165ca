"""HPSv2 (Human Preference Score v2 / v2.1, Wu et al. 2023) as a differentiable reward, without open_clip.

HPSv2 is an open_clip ViT-H-14 fine-tuned on human preferences; its score is the cosine of the
L2-normalised image and prompt embeddings (the diagonal of ``image_features @ text_features.T``
in its ``img_score.py``, no logit scale), about 0.2-0.35 for ordinary images.

``HPSv2(path)`` takes either

- an open_clip checkpoint file (``HPS_v2.1_compressed.pt`` / ``HPS_v2_compressed.pt`` from the hub
  repo ``xswu/HPSv2``; ``.pt`` / ``.pth`` / ``.bin`` read with ``torch.load(weights_only=True)``,
  or ``.safetensors``), converted in memory to a transformers ``CLIPModel`` by
  :mod:`reward.openclip_convert`; the CLIP tokenizer (OpenAI CLIP's BPE, e.g. the tokenizer files
  of ``openai/clip-vit-large-patch14``) must lie in the same folder (or its ``tokenizer/``
  subfolder);
- a folder holding one such checkpoint file (and the tokenizer files);
- a transformers ``CLIPModel`` folder (``config.json`` + ``model.safetensors`` + tokenizer
  files), e.g. a checkpoint already converted and saved with ``save_pretrained``.

Images are preprocessed in torch like the other CLIP rewards (resize the shortest edge bicubically
to the model's image size, 224 for ViT-H-14, centre crop, OpenAI CLIP mean / std); a
``preprocessor_config.json`` in the folder overrides these settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from artquant_core.images import ImageBatch
from artquant_core.vlm_preprocess import ClipImagePreprocessor
from reward import clip_rewards
from reward.clip_rewards import ClipEncoder, ClipReward
from reward.openclip_convert import CheckpointError, clip_model_from_openclip, find_checkpoint_file

#: Where the real checkpoint lives (files HPS_v2.1_compressed.pt, HPS_v2_compressed.pt).
HPSV2_HUB_REPO = "xswu/HPSv2"
HPSV2_CHECKPOINT = "HPS_v2.1_compressed.pt"
#: HPSv2's tokenizer is open_clip's copy of OpenAI CLIP's BPE; this repo's tokenizer files are the same.
HPSV2_TOKENIZER = "openai/clip-vit-large-patch14"

_TOKENIZER_FILES = (("tokenizer.json",), ("vocab.json", "merges.txt"))


def _has_tokenizer(folder: Path) -> bool:
    return any(all((folder / name).is_file() for name in names) for names in _TOKENIZER_FILES)


def _tokenizer_hint(folder: Path) -> str:
    return (f"save OpenAI CLIP's tokenizer there once (where there is network): `python -c \"from transformers "
            f"import CLIPTokenizer; CLIPTokenizer.from_pretrained('{HPSV2_TOKENIZER}').save_pretrained("
            f"'{folder}')\"`")


def find_checkpoint(path: str | Path, who: str = "hpsv2") -> Path:
    """The HPSv2 checkpoint file that ``path`` names: the file itself, or the only checkpoint file in a folder."""
    return find_checkpoint_file(path, who, HPSV2_CHECKPOINT, HPSV2_HUB_REPO, folder_kind="CLIPModel")


def _default_preprocessor(folder: Path, image_size: int, who: str) -> ClipImagePreprocessor:
    if (folder / "preprocessor_config.json").is_file():
        return clip_rewards._preprocessor(str(folder), who)
    return ClipImagePreprocessor(shortest_edge=image_size, crop_size=(image_size, image_size))


def load_hpsv2_encoder(path: str | Path, who: str = "hpsv2", **config_options: Any) -> ClipEncoder:
    """A :class:`~reward.clip_rewards.ClipEncoder` from an HPSv2 checkpoint file / folder or a CLIPModel folder.

    ``config_options`` (head counts, ``hidden_act``) go to
    :func:`reward.openclip_convert.infer_clip_config` for a checkpoint file.
    """
    from transformers import AutoConfig, AutoTokenizer, CLIPModel

    path = Path(path).expanduser()
    if path.is_dir() and (path / "config.json").is_file():  # a transformers CLIPModel folder
        source = str(path)
        config = clip_rewards._load(AutoConfig, source, who, "model config (config.json)")
        if getattr(config, "model_type", None) != "clip":
            raise ValueError(f"reward {who!r}: {source!r} holds a {config.model_type!r} checkpoint; it needs a "
                             "CLIPModel in the transformers format or an open_clip checkpoint file")
        if not _has_tokenizer(path):
            raise FileNotFoundError(f"reward {who!r}: the CLIPModel folder {source!r} has no CLIP tokenizer "
                                    f"(vocab.json + merges.txt, or tokenizer.json); {_tokenizer_hint(path)}")
        model = clip_rewards._load(CLIPModel, source, who, "CLIP model", config=config)
        tokenizer = clip_rewards._load(AutoTokenizer, source, who, "CLIP tokenizer")
        return ClipEncoder(model, _default_preprocessor(path, config.vision_config.image_size, who), tokenizer,
                           max_text_tokens=config.text_config.max_position_embeddings)
    checkpoint = find_checkpoint(path, who)
    folder = checkpoint.parent
    tokenizer_folder = next((f for f in (folder, folder / "tokenizer") if _has_tokenizer(f)), None)
    if tokenizer_folder is None:
        raise FileNotFoundError(f"reward {who!r}: the checkpoint {str(checkpoint)!r} needs a CLIP tokenizer "
                                f"(vocab.json + merges.txt, or tokenizer.json) in {str(folder)!r} or "
                                f"{str(folder / 'tokenizer')!r}, and there is none; {_tokenizer_hint(folder)}")
    tokenizer = clip_rewards._load(AutoTokenizer, str(tokenizer_folder), who, "CLIP tokenizer")
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    options = {**{k: v for k, v in ids.items() if v is not None}, **config_options}
    try:
        model = clip_model_from_openclip(checkpoint, **options)
    except CheckpointError as exc:
        raise CheckpointError(f"reward {who!r}: {exc}") from exc
    config = model.config
    if len(tokenizer) > config.text_config.vocab_size:
        raise ValueError(f"reward {who!r}: the tokenizer in {str(tokenizer_folder)!r} has {len(tokenizer)} tokens "
                         f"but {str(checkpoint)!r} embeds {config.text_config.vocab_size}; use OpenAI CLIP's "
                         f"tokenizer ({HPSV2_TOKENIZER})")
    return ClipEncoder(model, _default_preprocessor(folder, config.vision_config.image_size, who), tokenizer,
                       max_text_tokens=config.text_config.max_position_embeddings)


class HPSv2(ClipReward):
    """HPSv2 / v2.1: ``cos(image_emb, text_emb)`` of the preference-tuned CLIP-H (about 0.2-0.35); needs prompts.

    Differentiable in the pixels; without gradients it runs in chunks of ``max_batch`` under
    ``torch.inference_mode`` (see :class:`~reward.clip_rewards.ClipReward`).
    """

    name = "hpsv2"
    needs_prompts = True

    def __init__(self, path: str | Path, max_batch: int = 32, device: str | torch.device | None = None,
                 **config_options: Any) -> None:
        super().__init__(load_hpsv2_encoder(path, self.name, **config_options), max_batch, device)

    def score(self, batch: ImageBatch, prompts: list[str] | None) -> torch.Tensor:
        return (self.encoder.embed_images(batch) * self.encoder.embed_texts(prompts)).sum(dim=-1)
