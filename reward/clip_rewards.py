"""Standard CLIP-based rewards through transformers: CLIPScore, PickScore, the LAION aesthetic predictor.

Each loads a local folder (or a hub id already in the Hugging Face cache) in the
transformers format — ``config.json`` + ``model.safetensors`` of a ``CLIPModel``,
plus the processor files — and scores ``(B, 3, H, W)`` float pixels in ``[0, 1]``:

- :class:`ClipScore` (``clipscore``): CLIPScore of Hessel et al. (2021),
  ``2.5 * max(cos(image, text), 0)``; needs prompts.
- :class:`PickScore` (``pickscore``): ``logit_scale.exp() * cos(image, text)`` of
  the PickScore CLIP-H fine-tune; needs prompts.
- :class:`LaionAesthetic` (``laion_aesthetic``): the improved-aesthetic-predictor
  MLP head on the L2-normalised CLIP ViT-L/14 image embedding (about 1-10, the
  AVA rating scale); ignores prompts.

All three are differentiable: the processor's resize / centre crop / normalise run
in torch (:class:`~artquant_core.vlm_preprocess.ClipImagePreprocessor`), so
gradients reach the pixels. Without gradients (DDPO, reranking, evaluation) they
run under ``torch.inference_mode`` in chunks of ``max_batch``. 8-bit inputs
(uint8 tensors, PIL images) are resized with PIL's uint8 rounding, as the
Hugging Face processor does with the files. Nothing is downloaded unless a hub id
is given and missing from the cache (then transformers' own download applies).
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from artquant_core.images import ImageBatch
from artquant_core.vlm_preprocess import ClipImagePreprocessor
from reward.base import BaseReward

#: CLIPScore's rescaling weight (Hessel et al. 2021, section 3): spreads the cosines, ~0.2-0.35, over [0, 1].
CLIPSCORE_WEIGHT = 2.5
DEFAULT_CLIPSCORE_MODEL = "openai/clip-vit-large-patch14"
#: PickScore's weights; its processor (tokenizer + image settings) is the base CLIP-H's.
PICKSCORE_MODEL = "yuvalkirstain/PickScore_v1"
PICKSCORE_PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
#: The LAION aesthetic head's file inside its folder (the folder also holds CLIP ViT-L/14).
AESTHETIC_HEAD_FILE = "aesthetic_head.safetensors"

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def resolve_source(source: str | Path, who: str) -> str:
    """A local folder, or a hub id (``owner/name``) when no such path exists; else ``FileNotFoundError``."""
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise FileNotFoundError(f"reward {who!r}: {str(source)!r} is a file; pass the folder that holds "
                                    "config.json, model.safetensors and the processor files")
        return str(path)
    if _HUB_ID.match(str(source)):
        return str(source)
    raise FileNotFoundError(f"reward {who!r}: no model folder at {str(source)!r} (and it is not a hub id "
                            "'owner/name')")


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report and progress bar: loading the vision half of a full CLIPModel
    lists every text weight as unexpected, which is the point, not a problem; and a reward is loaded
    inside training runs whose logs should not carry a bar per load."""
    from transformers.utils import logging

    level, bar = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bar:
            logging.enable_progress_bar()


def _load(loader: Any, source: str, who: str, what: str, **kwargs: Any) -> Any:
    """``loader.from_pretrained(source)``, a failure re-raised as ``FileNotFoundError`` naming the source."""
    try:
        with _quiet_transformers():
            return loader.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        if Path(source).exists():
            hint = "the folder lacks it or it does not load"
        else:
            hint = (f"not in the local Hugging Face cache (run `hf download {source}` once where there is "
                    "network, or pass a local folder)")
        raise FileNotFoundError(f"reward {who!r}: cannot load the {what} from {source!r}: {hint} "
                                f"({type(exc).__name__}: {exc})") from exc


def _preprocessor(source: str, who: str) -> ClipImagePreprocessor:
    from transformers import AutoImageProcessor

    processor = _load(AutoImageProcessor, source, who, "CLIP image processor (preprocessor_config.json)")
    try:
        return ClipImagePreprocessor.from_hf(processor)
    except ValueError as exc:
        raise ValueError(f"reward {who!r}: {source!r}: {exc}") from exc


class ClipEncoder(nn.Module):
    """A frozen CLIP (both towers, or the vision tower alone) with torch-native image preprocessing.

    Embeddings come L2-normalised. Images go through the processor's resize, centre crop and
    normalisation in torch, so a gradient flows from an embedding back to the pixels.
    """

    def __init__(self, model: nn.Module, image_preprocessor: ClipImagePreprocessor, tokenizer: Any = None,
                 max_text_tokens: int = 77) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.image_preprocessor = image_preprocessor
        self.tokenizer = tokenizer
        self.max_text_tokens = int(max_text_tokens)

    @classmethod
    def load(cls, source: str | Path, who: str, processor_source: str | Path | None = None,
             vision_only: bool = False) -> "ClipEncoder":
        """Load a ``CLIPModel`` folder / hub id; the processor from ``processor_source`` (default: the same).

        ``vision_only`` loads just ``CLIPVisionModelWithProjection`` from the same files (the text
        tower's weights are skipped), for rewards that never read a prompt.
        """
        from transformers import AutoConfig, AutoTokenizer, CLIPModel, CLIPVisionModelWithProjection

        source = resolve_source(source, who)
        processor_source = source if processor_source is None else resolve_source(processor_source, who)
        config = _load(AutoConfig, source, who, "model config (config.json)")
        kind = getattr(config, "model_type", None)
        if vision_only and kind == "clip_vision_model":
            model = _load(CLIPVisionModelWithProjection, source, who, "CLIP vision model", config=config)
            return cls(model, _preprocessor(processor_source, who))
        if kind != "clip":
            allowed = "a CLIPModel or CLIPVisionModelWithProjection" if vision_only else "a CLIPModel"
            raise ValueError(f"reward {who!r}: {source!r} holds a {kind!r} checkpoint; it needs {allowed} "
                             "in the transformers format")
        if vision_only:
            vision_config = config.vision_config
            vision_config.projection_dim = config.projection_dim  # the vision config alone defaults to 512
            model = _load(CLIPVisionModelWithProjection, source, who, "CLIP vision model", config=vision_config)
            return cls(model, _preprocessor(processor_source, who))
        model = _load(CLIPModel, source, who, "CLIP model", config=config)
        tokenizer = _load(AutoTokenizer, processor_source, who, "CLIP tokenizer")
        return cls(model, _preprocessor(processor_source, who), tokenizer,
                   max_text_tokens=config.text_config.max_position_embeddings)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def embed_images(self, batch: ImageBatch) -> torch.Tensor:
        """``(B, D)`` unit image embeddings of a same-size batch (differentiable in the pixels)."""
        items = [item.to(self.device) for item in batch.items()]
        pixel_values = self.image_preprocessor(items, quantize=batch.from_uint8)["pixel_values"]
        pooled = self.model.vision_model(pixel_values=pixel_values.to(self.dtype)).pooler_output
        return nn.functional.normalize(self.model.visual_projection(pooled), dim=-1)

    @torch.no_grad()
    def embed_texts(self, prompts: list[str]) -> torch.Tensor:
        """``(B, D)`` unit text embeddings; each distinct prompt is encoded once (RL batches repeat them)."""
        if self.tokenizer is None:
            raise RuntimeError("this ClipEncoder was loaded vision_only and cannot embed text")
        unique = list(dict.fromkeys(prompts))
        tokens = self.tokenizer(unique, padding=True, truncation=True, max_length=self.max_text_tokens,
                                return_tensors="pt").to(self.device)
        pooled = self.model.text_model(input_ids=tokens["input_ids"],
                                       attention_mask=tokens["attention_mask"]).pooler_output
        embeddings = nn.functional.normalize(self.model.text_projection(pooled), dim=-1)
        index = {prompt: i for i, prompt in enumerate(unique)}
        return embeddings[torch.tensor([index[p] for p in prompts], device=embeddings.device)]


class ClipReward(BaseReward):
    """Shared call path of the CLIP rewards: one differentiable call, or no-grad chunks of ``max_batch``."""

    differentiable = True
    needs_prompts = False

    def __init__(self, encoder: ClipEncoder, max_batch: int = 32, device: str | torch.device | None = None) -> None:
        if int(max_batch) < 1:
            raise ValueError(f"{self.name}: max_batch must be >= 1, got {max_batch}")
        self.encoder = encoder if device is None else encoder.to(device)
        self.max_batch = int(max_batch)

    def score(self, batch: ImageBatch, prompts: list[str] | None) -> torch.Tensor:
        """``(B,)`` values of a same-size batch on the encoder's device."""
        raise NotImplementedError

    def compute(self, images: torch.Tensor, prompts: list[str] | None) -> torch.Tensor:
        """Values of float pixels (no uint8 rounding emulated); the call path uses :meth:`compute_batch`."""
        return self.compute_batch(ImageBatch(images), prompts)

    def compute_batch(self, batch: ImageBatch, prompts: list[str] | None) -> torch.Tensor:
        if self.needs_prompts and prompts is None:
            raise ValueError(f"reward {self.name!r} compares each image with its prompt: pass prompts "
                             "(one string per image)")
        if batch.requires_grad and torch.is_grad_enabled():
            return self.score(batch, prompts)  # gradient path: one call, the graph kept
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(batch), self.max_batch):
                stop = start + self.max_batch
                chunks.append(self.score(batch[start:stop], None if prompts is None else prompts[start:stop]))
        return torch.cat(chunks)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, max_batch={self.max_batch})"


class ClipScore(ClipReward):
    """CLIPScore (Hessel et al. 2021): ``2.5 * max(cos(image_emb, text_emb), 0)``, in ``[0, 2.5]``.

    The weight 2.5 is the paper's (:data:`CLIPSCORE_WEIGHT`); negative cosines count as 0, as in
    the paper, so their gradient is 0. Default checkpoint: ``openai/clip-vit-large-patch14``
    (the paper used ViT-B/32; any ``CLIPModel`` folder works).
    """

    name = "clipscore"
    needs_prompts = True

    def __init__(self, source: str | Path = DEFAULT_CLIPSCORE_MODEL, weight: float = CLIPSCORE_WEIGHT,
                 max_batch: int = 32, device: str | torch.device | None = None) -> None:
        super().__init__(ClipEncoder.load(source, self.name), max_batch, device)
        self.weight = float(weight)

    def score(self, batch: ImageBatch, prompts: list[str] | None) -> torch.Tensor:
        cosine = (self.encoder.embed_images(batch) * self.encoder.embed_texts(prompts)).sum(dim=-1)
        return self.weight * cosine.clamp_min(0.0)


class PickScore(ClipReward):
    """PickScore (Kirstain et al. 2023): ``logit_scale.exp() * cos(image_emb, text_emb)`` (about 15-25).

    The checkpoint ``yuvalkirstain/PickScore_v1`` is a CLIP-H fine-tune whose processor is
    ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``'s; a local folder must hold both (model and processor
    files saved into it), or pass ``processor_source``.
    """

    name = "pickscore"
    needs_prompts = True

    def __init__(self, source: str | Path = PICKSCORE_MODEL, processor_source: str | Path | None = None,
                 max_batch: int = 32, device: str | torch.device | None = None) -> None:
        if processor_source is None and str(source) == PICKSCORE_MODEL:
            processor_source = PICKSCORE_PROCESSOR
        super().__init__(ClipEncoder.load(source, self.name, processor_source=processor_source), max_batch, device)

    def score(self, batch: ImageBatch, prompts: list[str] | None) -> torch.Tensor:
        cosine = (self.encoder.embed_images(batch) * self.encoder.embed_texts(prompts)).sum(dim=-1)
        return self.encoder.model.logit_scale.exp() * cosine


class AestheticHead(nn.Module):
    """The improved-aesthetic-predictor MLP layout: Linear D->1024, Dropout, 1024->128, Dropout, 128->64,
    Dropout, 64->16, 16->1, no activations; state-dict keys ``layers.{0,2,4,6,7}.{weight,bias}``
    as in the published ``.pth`` files (D = 768 for CLIP ViT-L/14)."""

    def __init__(self, embed_dim: int = 768) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(embed_dim, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1))

    @classmethod
    def from_file(cls, path: str | Path, who: str = "laion_aesthetic") -> "AestheticHead":
        """The head from a safetensors file (never a pickle); its input size read from ``layers.0.weight``."""
        from safetensors.torch import load_file

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"reward {who!r}: no aesthetic head at {str(path)!r}; convert the published "
                                    f".pth once into {AESTHETIC_HEAD_FILE} (docs/rewards.md)")
        state = load_file(str(path))
        if "layers.0.weight" not in state:
            raise ValueError(f"reward {who!r}: {str(path)!r} is not an aesthetic head: no 'layers.0.weight' "
                             f"(keys: {sorted(state)[:6]})")
        head = cls(state["layers.0.weight"].shape[1])
        try:
            head.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(f"reward {who!r}: {str(path)!r} does not match the aesthetic head layout "
                             f"(layers.{{0,2,4,6,7}}): {exc}") from exc
        return head.eval().requires_grad_(False)

    @property
    def embed_dim(self) -> int:
        return self.layers[0].in_features

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.layers(embeddings).squeeze(-1)


class LaionAesthetic(ClipReward):
    """LAION aesthetic predictor: ``head(normalise(CLIP ViT-L/14 image embedding))``, the AVA scale (~1-10).

    ``folder`` holds the CLIP model (a ``CLIPModel`` or ``CLIPVisionModelWithProjection``: only the
    vision tower is loaded), its ``preprocessor_config.json``, and ``aesthetic_head.safetensors``.
    Prompts are ignored.
    """

    name = "laion_aesthetic"

    def __init__(self, folder: str | Path, max_batch: int = 32, device: str | torch.device | None = None) -> None:
        folder = resolve_source(folder, self.name)
        head = AestheticHead.from_file(Path(folder) / AESTHETIC_HEAD_FILE, self.name)
        encoder = ClipEncoder.load(folder, self.name, vision_only=True)
        projection = encoder.model.visual_projection.out_features
        if projection != head.embed_dim:
            raise ValueError(f"reward {self.name!r}: the head in {folder!r} takes {head.embed_dim}-d embeddings "
                             f"but the CLIP model gives {projection}-d (the published heads need ViT-L/14: 768)")
        super().__init__(encoder, max_batch, device)
        self.head = head.to(self.encoder.device)

    def score(self, batch: ImageBatch, prompts: list[str] | None) -> torch.Tensor:
        return self.head(self.encoder.embed_images(batch))
