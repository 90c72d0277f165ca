"""Loading and saving ``ArtQuantScorer`` folders.

A scorer folder is a plain Hugging Face VLM folder (``config.json``,
``*.safetensors``, tokenizer files, ``preprocessor_config.json``) plus
``artquant_scorer.json`` (family, level words and anchors, prompts). A folder
with ``adapter_config.json`` instead of full weights is a peft LoRA adapter
over the base named in it. A plain VLM folder or hub id without
``artquant_scorer.json`` loads with the defaults (APDD scale, ArtQuant prompts).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

SCORER_FILE = "artquant_scorer.json"
FORMAT_VERSION = 1


def _is_local(path_or_id: str) -> bool:
    text = str(path_or_id)
    return Path(text).exists() or text.startswith((".", "/", "~")) or text.count("/") != 1


def _check_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise FileNotFoundError(f"scorer folder {folder} does not exist")
    names = {p.name for p in folder.iterdir()}
    adapter = "adapter_config.json" in names
    if not adapter:
        if "config.json" not in names:
            raise FileNotFoundError(f"scorer folder {folder} is missing config.json")
        if not any(n.endswith(".safetensors") or n == "model.safetensors.index.json" for n in names):
            found = [n for n in names if n.endswith((".bin", ".pt", ".pth"))]
            extra = f" (found {', '.join(sorted(found))}; only safetensors weights are loaded)" if found else ""
            raise FileNotFoundError(f"scorer folder {folder} is missing model.safetensors{extra}")
    else:
        if "adapter_model.safetensors" not in names:
            raise FileNotFoundError(f"adapter folder {folder} is missing adapter_model.safetensors")
        return
    if not names & {"tokenizer.json", "tokenizer.model", "tokenizer_config.json"}:
        raise FileNotFoundError(f"scorer folder {folder} is missing tokenizer.json / tokenizer_config.json")
    if "preprocessor_config.json" not in names:
        raise FileNotFoundError(f"scorer folder {folder} is missing preprocessor_config.json")


def _read_meta(folder: Path | None) -> dict:
    if folder is None or not (folder / SCORER_FILE).exists():
        return {}
    meta = json.loads((folder / SCORER_FILE).read_text())
    if meta.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
        raise ValueError(f"{folder / SCORER_FILE} has format_version {meta['format_version']}, "
                         f"newer than this toolkit's {FORMAT_VERSION}")
    return meta


def _scale_from_meta(meta: dict, scale):
    from artquant_core._scorer_defaults import APDD_SCALE, LevelScale

    if scale is not None:
        return scale
    if "level_words" in meta:
        return LevelScale(tuple(meta["level_words"]), tuple(float(a) for a in meta["level_anchors"]))
    return APDD_SCALE


def load_scorer(cls, path_or_id, *, family: str | None = None, scale=None, dtype=None,
                attn_implementation: str | None = None, device_map=None, trust_remote_code: bool = False,
                linear_patch_embed: bool = True):
    from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer

    local = _is_local(str(path_or_id))
    folder = Path(path_or_id).expanduser() if local else None
    if folder is not None:
        _check_folder(folder)
    meta = _read_meta(folder)
    if folder is not None and (folder / "adapter_config.json").exists():
        return _load_adapter(cls, folder, meta, family=family, scale=scale, dtype=dtype,
                             attn_implementation=attn_implementation, device_map=device_map,
                             trust_remote_code=trust_remote_code, linear_patch_embed=linear_patch_embed)
    source = str(folder) if folder is not None else str(path_or_id)
    model_kwargs = {"use_safetensors": True, "trust_remote_code": trust_remote_code}
    for key, value in (("dtype", dtype), ("attn_implementation", attn_implementation), ("device_map", device_map)):
        if value is not None:
            model_kwargs[key] = value
    try:
        model = AutoModelForImageTextToText.from_pretrained(source, **model_kwargs)
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        image_processor = AutoImageProcessor.from_pretrained(source, trust_remote_code=trust_remote_code)
    except OSError as exc:
        if folder is not None:
            raise
        raise FileNotFoundError(f"{path_or_id} is neither a local scorer folder nor a hub model available "
                                f"offline or online ({str(exc).splitlines()[0]})") from exc
    return cls(model.eval(), tokenizer, image_processor, **_scorer_kwargs(meta, family, scale),
               linear_patch_embed=linear_patch_embed)


def _scorer_kwargs(meta: dict, family, scale) -> dict:
    kwargs = {"scale": _scale_from_meta(meta, scale), "family": family or meta.get("family")}
    for key in ("answer_prefix", "score_question", "description_question"):
        if key in meta:
            kwargs[key] = meta[key]
    return kwargs


def _load_adapter(cls, folder: Path, meta: dict, **kwargs):
    from peft import PeftModel

    base_path = json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base_path:
        raise FileNotFoundError(f"{folder / 'adapter_config.json'} names no base_model_name_or_path")
    if (folder / base_path).is_dir():  # a base saved inside the adapter folder (see save_scorer)
        base_path = str(folder / base_path)
    base = load_scorer(cls, base_path, **kwargs)
    model = PeftModel.from_pretrained(base.model, str(folder))
    tokenizer = base.tokenizer
    if (folder / "tokenizer_config.json").exists() or (folder / "tokenizer.json").exists():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    return cls(model.eval(), tokenizer, base.image_processor,
               **_scorer_kwargs(meta, kwargs.get("family") or base.family.name, kwargs.get("scale")),
               linear_patch_embed=False)


BASE_SUBDIR = "base_model"


def _base_is_reachable(peft_model) -> bool:
    ref = peft_model.peft_config[peft_model.active_adapter].base_model_name_or_path
    return bool(ref) and (Path(ref).is_dir() or not _is_local(ref))


def _save_adapter_with_base(scorer, out: Path) -> None:
    """Save the adapter plus its in-memory base under ``base_model/``, referenced relatively."""
    model = scorer.model
    base = copy.deepcopy(model).unload()
    base.save_pretrained(str(out / BASE_SUBDIR))
    scorer.tokenizer.save_pretrained(str(out / BASE_SUBDIR))
    scorer.image_processor.save_pretrained(str(out / BASE_SUBDIR))
    config = model.peft_config[model.active_adapter]
    original, config.base_model_name_or_path = config.base_model_name_or_path, BASE_SUBDIR
    try:
        model.save_pretrained(str(out))
    finally:
        config.base_model_name_or_path = original


def save_scorer(scorer, save_directory, merge_lora: bool = False) -> Path:
    out = Path(save_directory)
    out.mkdir(parents=True, exist_ok=True)
    model = scorer.model
    is_peft = hasattr(model, "peft_config")
    if is_peft and merge_lora:
        model = copy.deepcopy(model).merge_and_unload()
    if is_peft and not merge_lora and not _base_is_reachable(model):
        _save_adapter_with_base(scorer, out)
    else:
        model.save_pretrained(str(out))
    scorer.tokenizer.save_pretrained(str(out))
    scorer.image_processor.save_pretrained(str(out))
    meta = {
        "format_version": FORMAT_VERSION,
        "family": scorer.family.name,
        "level_words": list(scorer.scale.words),
        "level_anchors": [float(a) for a in scorer.scale.anchors],
        "answer_prefix": scorer.answer_prefix,
        "score_question": scorer.score_question,
        "description_question": scorer.description_question,
        "lora": "adapter" if is_peft and not merge_lora else ("merged" if is_peft else None),
    }
    (out / SCORER_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return out
