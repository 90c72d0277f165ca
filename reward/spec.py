"""``load_reward(spec)``: build a reward from a one-line string (config files, the CLI).

Grammar (whitespace around ``+`` and ``*`` is ignored)::

    spec   := term ( "+" term )*
    term   := reward [ "*" weight ]  |  weight "*" reward
    reward := builtin | custom
    builtin:= "artquant" [ ":" PATH ] [ "@" ASPECT ]  |  "judge" [ "@" ASPECT ]  |  SIMPLE_NAME
            | "clipscore" [ ":" PATH_OR_ID ]  |  "pickscore" [ ":" PATH_OR_ID ]
            | "laion_aesthetic" ":" PATH  |  "hpsv2" ":" PATH  |  "imagereward" ":" PATH
            | "remote" ":" URL                      (e.g. remote:http://127.0.0.1:8000)
    custom := DOTTED_MODULE ":" IDENTIFIER          (e.g. mypkg.rewards:sharpness)
            | FILE ".py" ":" IDENTIFIER              (e.g. rewards/mine.py:Sharpness)
    weight := a float: 0.8, -1, .5, 2e-3, 1E+2

Precedence, so that custom specs never clash with ``artquant:PATH`` (whose PATH
may hold ``:`` and ``/``): a term whose text before the first ``:`` or ``@`` is a
built-in name is that built-in reward, whatever follows (``artquant:x.py:f`` is
the scorer folder ``x.py:f``); otherwise a term ending in ``.py:IDENTIFIER`` is a
file; otherwise ``DOTTED.IDENTIFIER:IDENTIFIER`` is a module; anything else is
an unknown reward. A module whose name is a built-in (``brightness.py``) is
reached through its file form (``./brightness.py:fn``). In a sum, a ``+`` starts
a new term where a weight, a built-in name or a custom spec follows it, so a
custom file path must not contain ``+`` or ``*``. Custom rewards are described
in :mod:`reward.custom` (a function or a no-argument class, wrapped in
:class:`~reward.base.BaseReward`, named by the spec, ``differentiable`` only when
the function or class says so).

``artquant`` alone is the embedded tiny scorer with its shipped weights;
``artquant:PATH`` loads ``ArtQuantScorer.from_pretrained(PATH)`` (PATH may hold
``-``, ``.``, ``/``, ``:`` and even ``+`` or ``@``); ``@ASPECT`` scores one attribute
(``artquant:runs/s1@composition``). If ``PATH@x`` exists on disk it is taken as a
path.

``judge`` is the independent judge: a second shipped tiny scorer of the other VLM
family (LLaVA: CLIP + Llama, where ``artquant`` is Qwen2.5-VL), pre-trained by the
same script on a SynthArt draw disjoint from the default scorer's
(``artquant_core/pretrained/tiny_scorer_llava/``, ``build_tiny_scorer(family="llava")``).
It is an :class:`~reward.artquant_reward.ArtQuantReward` named ``judge`` (``judge@ASPECT``
with an aspect), on the same ``[0, 1]`` scale, for watching reward hacking
(``eval_rewards: [judge]``) or mixing in (``artquant+0.5*judge``). It takes no
``:PATH`` (use ``artquant:PATH`` for any other scorer); missing weights raise
``FileNotFoundError`` naming the folder.

``clipscore``, ``pickscore`` and ``laion_aesthetic`` are the standard CLIP rewards of
:mod:`reward.clip_rewards`, loaded through transformers from a local folder (or a
hub id in the local cache; ``clipscore`` defaults to ``openai/clip-vit-large-patch14``,
``pickscore`` to ``yuvalkirstain/PickScore_v1``; ``laion_aesthetic`` needs a folder).
``hpsv2:PATH`` is HPSv2 / v2.1 (:class:`reward.hpsv2.HPSv2`): PATH is the open_clip
checkpoint ``HPS_v2.1_compressed.pt`` (hub repo ``xswu/HPSv2``; read with
``torch.load(weights_only=True)``, converted in memory to a transformers ``CLIPModel``)
with OpenAI CLIP's tokenizer files in the same folder, a folder holding both, or a
``CLIPModel`` folder. ``imagereward:PATH`` is ImageReward (:class:`reward.imagereward.ImageRewardScore`):
PATH is the package's ``ImageReward.pt`` (hub repo ``THUDM/ImageReward``; read with
``torch.load(weights_only=True)``, mapped onto transformers' BLIP modules) with
``bert-base-uncased``'s ``vocab.txt`` in the same folder, or a folder holding both.
Without ``:PATH`` both raise a ``ValueError`` saying what to pass.

``remote:URL`` is a reward served over HTTP by ``artquant serve-reward`` (any spec, on
other machines or GPUs): a :class:`~reward.remote.RemoteReward`, named ``remote``, not
differentiable. The rest of the term is the URL (``http://HOST:PORT``, or ``https://``);
its query sets the client (``?timeout=60&retries=5&backoff=0.5``), so the URL must not
contain ``+`` or ``*``.

A single unweighted term gives that reward; anything else gives a
:class:`~reward.composite.CompositeReward` keyed by the rewards' names.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from reward.base import Reward
from reward.custom import MODULE_SPEC, is_custom_spec, load_custom_reward
from reward.simple import SIMPLE_REWARDS

_FLOAT = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_TRAILING_WEIGHT = re.compile(rf"^(?P<body>.*?)\s*\*\s*(?P<w>{_FLOAT})\s*$", re.S)
_LEADING_WEIGHT = re.compile(rf"^\s*(?P<w>{_FLOAT})\s*\*\s*(?P<body>.*)$", re.S)
_ASPECT = re.compile(r"^[A-Za-z_][\w-]*$")


JUDGE_FAMILY = "llava"  # the judge is the other VLM family from the default scorer (qwen2_5_vl)

#: The standard CLIP rewards of reward.clip_rewards (laion_aesthetic needs ':PATH', the others default to a hub id).
CLIP_REWARDS = ("clipscore", "pickscore", "laion_aesthetic")

#: Standard rewards converted from their original checkpoints at load time (reward.hpsv2, reward.imagereward);
#: they need ':PATH' (the value: what to pass).
CONVERTED_REWARDS = {
    "hpsv2": ("HPSv2 needs ':PATH': the open_clip checkpoint HPS_v2.1_compressed.pt (hub repo xswu/HPSv2) with "
              "OpenAI CLIP's tokenizer files (openai/clip-vit-large-patch14: vocab.json, merges.txt) in the same "
              "folder, or a transformers CLIPModel folder (docs/rewards.md); e.g. 'hpsv2:models/hps/"
              "HPS_v2.1_compressed.pt'. Alternatively `pip install hpsv2` and wrap its scorer in a custom reward"),
    "imagereward": ("ImageReward needs ':PATH': the package's checkpoint ImageReward.pt (hub repo THUDM/ImageReward) "
                    "with bert-base-uncased's tokenizer file vocab.txt in the same folder (docs/rewards.md); e.g. "
                    "'imagereward:models/imagereward/ImageReward.pt'. Alternatively `pip install image-reward` and "
                    "wrap ImageReward.load(...).score in a custom reward"),
}

#: A custom spec at the start of a term (what may follow a '+'); it ends at a '*', a '+' or the end.
_CUSTOM_START = re.compile(rf"^(?:{MODULE_SPEC.pattern[1:-1]}|[^+*]+?\.py:[A-Za-z_]\w*)(?=\s*(?:$|[*+]))")


def known_rewards() -> list[str]:
    """Reward names ``load_reward`` accepts: ``artquant`` (``:PATH``, ``@ASPECT``), ``judge``
    (``@ASPECT``; the independent LLaVA judge), the simple baselines, the standard CLIP rewards,
    ``remote`` (``:URL``, a served reward), ``hpsv2`` and ``imagereward`` (both ``:PATH``)."""
    return ["artquant", *SIMPLE_REWARDS, "judge", *CLIP_REWARDS, "remote", *CONVERTED_REWARDS]


def _starts_term(text: str) -> bool:
    """Does ``text`` (what follows a '+') begin a new term?"""
    text = text.lstrip()
    if not text or _LEADING_WEIGHT.match(text):  # a trailing '+' splits, then fails as an empty term
        return True
    for name in known_rewards():
        if text.startswith(name) and (len(text) == len(name) or text[len(name)] in ":@*+ \t"):
            return True
    return bool(_CUSTOM_START.match(text))


def split_terms(spec: str) -> list[str]:
    """Split at the '+' signs that start a new term (not those inside paths or exponents)."""
    terms, start = [], 0
    for i, char in enumerate(spec):
        if char == "+" and _starts_term(spec[i + 1:]) and not re.search(r"\d[eE]$", spec[start:i]):
            terms.append(spec[start:i])
            start = i + 1
    terms.append(spec[start:])
    return [t.strip() for t in terms]


def parse_term(term: str) -> tuple[str, float]:
    """``"brightness*0.5"`` -> ``("brightness", 0.5)``; the weight defaults to 1."""
    if not term:
        raise ValueError("empty term in reward spec (a stray '+'?)")
    match = _TRAILING_WEIGHT.match(term)
    if match and match.group("body"):
        return match.group("body").strip(), float(match.group("w"))
    match = _LEADING_WEIGHT.match(term)
    if match and match.group("body"):
        return match.group("body").strip(), float(match.group("w"))
    return term.strip(), 1.0


def _unknown(name: str) -> ValueError:
    close = difflib.get_close_matches(name, known_rewards(), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return ValueError(f"unknown reward {name!r}{hint}; known rewards: {', '.join(known_rewards())} "
                      "(artquant takes ':PATH' and '@ASPECT', judge '@ASPECT', remote ':URL', hpsv2 and imagereward ':PATH'), "
                      "or a custom reward "
                      "'dotted.module:function' or 'path/to/file.py:Name'")


def _split_aspect(rest: str) -> tuple[str, str | None]:
    """``"PATH@aspect"`` -> ``("PATH", "aspect")`` unless ``PATH@aspect`` is itself a path."""
    if "@" not in rest:
        return rest, None
    path, aspect = rest.rsplit("@", 1)
    if _ASPECT.match(aspect) and not Path(rest).exists():
        return path, aspect
    return rest, None


def build_single(body: str, **artquant_options: Any) -> Reward:
    """One reward from a term without weight (built-in names first, then the custom forms)."""
    name, sep, rest = body.partition(":")
    name = name.strip()
    if "@" in name and not sep:  # "artquant@composition"
        name, _, aspect_only = name.partition("@")
        rest = "@" + aspect_only
    if name not in known_rewards() and is_custom_spec(body):
        return load_custom_reward(body)
    if name == "artquant":
        path, aspect = _split_aspect(rest)
        if sep and not path:
            raise ValueError(f"reward spec {body!r}: 'artquant:' needs a path after the colon")
        return _artquant(path or None, aspect, **artquant_options)
    if name == "judge":
        if sep:
            raise ValueError(f"reward spec {body!r}: 'judge' is the shipped independent judge and takes no "
                             "':PATH'; use 'artquant:PATH' for another scorer")
        aspect = rest[1:] if rest.startswith("@") else None
        if rest and (aspect is None or not _ASPECT.match(aspect)):
            raise ValueError(f"reward spec {body!r}: 'judge' takes only '@ASPECT' (e.g. 'judge@composition')")
        return _judge(aspect, **artquant_options)
    if name in SIMPLE_REWARDS:
        if sep or rest:
            raise ValueError(f"reward {name!r} takes no ':PATH' or '@ASPECT' (got {body!r}); for a custom "
                             f"reward in a module named {name!r}, use its file form './{name}.py:NAME'")
        return SIMPLE_REWARDS[name]()
    if name in CLIP_REWARDS:
        if rest.startswith("@") or (sep and not rest):
            raise ValueError(f"reward spec {body!r}: {name!r} takes only ':PATH_OR_HUB_ID' (no '@ASPECT')")
        return _clip_reward(name, rest if sep else None, **artquant_options)
    if name == "remote":
        from reward.remote import RemoteReward

        if not sep or not rest.strip():
            raise ValueError(f"reward spec {body!r}: 'remote' needs ':URL', e.g. 'remote:http://127.0.0.1:8000' "
                             "(a server started with `artquant serve-reward`)")
        return RemoteReward(rest.strip())
    if name in CONVERTED_REWARDS:
        if rest.startswith("@") or not sep or not rest.strip():
            raise ValueError(f"reward spec {body!r}: {CONVERTED_REWARDS[name]}")
        kwargs = {k: artquant_options[k] for k in ("max_batch", "device") if artquant_options.get(k) is not None}
        if name == "hpsv2":
            from reward.hpsv2 import HPSv2

            return HPSv2(rest.strip(), **kwargs)
        from reward.imagereward import ImageRewardScore

        return ImageRewardScore(rest.strip(), **kwargs)
    raise _unknown(name if name else body)


def _clip_reward(name: str, source: str | None, **options: Any) -> Reward:
    """``clipscore`` / ``pickscore`` / ``laion_aesthetic`` with ``max_batch`` and ``device`` from ``options``."""
    from reward import clip_rewards

    kwargs = {k: options[k] for k in ("max_batch", "device") if options.get(k) is not None}
    if name == "laion_aesthetic":
        if source is None:
            raise ValueError("reward 'laion_aesthetic' needs ':PATH', a folder with CLIP ViT-L/14 "
                             "(openai/clip-vit-large-patch14, transformers format) and "
                             f"{clip_rewards.AESTHETIC_HEAD_FILE} (the converted head; docs/rewards.md)")
        return clip_rewards.LaionAesthetic(source, **kwargs)
    cls = clip_rewards.ClipScore if name == "clipscore" else clip_rewards.PickScore
    return cls(**kwargs) if source is None else cls(source, **kwargs)


def _artquant(path: str | None, aspect: str | None, **options: Any) -> Reward:
    from reward.artquant_reward import ArtQuantReward

    if path is None:
        from artquant_core.tiny import build_tiny_scorer

        try:
            scorer = build_tiny_scorer(pretrained=True)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"reward 'artquant': the embedded tiny scorer's trained weights are "
                                    f"not shipped in this install ({exc}); use 'artquant:PATH'") from exc
        return ArtQuantReward(scorer, aspect=aspect, **options)
    if not Path(path).exists() and not re.match(r"^[\w.-]+/[\w.-]+$", path):
        raise FileNotFoundError(f"reward 'artquant:{path}': no scorer at {path!r}")
    return ArtQuantReward(path, aspect=aspect, **options)


def _judge(aspect: str | None, **options: Any) -> Reward:
    """The independent judge: the shipped tiny LLaVA scorer as an ArtQuantReward named ``judge``."""
    from artquant_core.tiny import build_tiny_scorer, pretrained_folder
    from reward.artquant_reward import ArtQuantReward

    try:
        scorer = build_tiny_scorer(family=JUDGE_FAMILY, pretrained=True)
    except FileNotFoundError as exc:
        folder = pretrained_folder(JUDGE_FAMILY)
        raise FileNotFoundError(
            f"reward 'judge': the independent judge's trained weights are not shipped in this install "
            f"({folder} is missing); train and ship them from a checkout of the repository with `python -m scripts.pretrain_tiny_scorer "
            f"--config configs/pretrain_judge.yaml --family llava --data-seed 3000 --out RUN --ship`, "
            f"or use 'artquant:PATH'") from exc
    return ArtQuantReward(scorer, aspect=aspect, name="judge", **options)


def check_spec(spec: str) -> None:
    """Check ``spec``'s terms and reward names without loading any model: a ``ValueError`` as
    :func:`load_reward` would raise it. ``artquant serve-reward`` calls this before it starts
    replicas, each of which would otherwise fail to load the reward on its own."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"reward spec must be a non-empty string, got {spec!r}; known rewards: "
                         f"{', '.join(known_rewards())}")
    for term in split_terms(spec.strip()):
        body, _ = parse_term(term)
        name = body.partition(":")[0].partition("@")[0].strip()
        if name not in known_rewards() and not is_custom_spec(body):
            raise _unknown(name or body)


def load_reward(spec: str, normalize: str = "none", **artquant_options: Any) -> Reward:
    """Build the reward described by ``spec`` (see the module docstring for the grammar).

    ``normalize`` is the :class:`CompositeReward` mode used when the spec is a sum;
    ``artquant_options`` go to every :class:`ArtQuantReward` (``max_batch``, ``autocast_dtype``,
    ``compile``, ``device``); the CLIP rewards take ``max_batch`` and ``device`` from them and
    custom rewards none.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"reward spec must be a non-empty string, got {spec!r}; known rewards: "
                         f"{', '.join(known_rewards())}")
    terms = [parse_term(t) for t in split_terms(spec.strip())]
    if len(terms) == 1 and terms[0][1] == 1.0 and normalize == "none":
        return build_single(terms[0][0], **artquant_options)
    from reward.composite import CompositeReward

    components: dict[str, tuple[Reward, float]] = {}
    for body, weight in terms:
        reward = build_single(body, **artquant_options)
        key, suffix = reward.name, 2
        while key in components:
            key, suffix = f"{reward.name}_{suffix}", suffix + 1
        components[key] = (reward, weight)
    return CompositeReward(components, normalize=normalize, name=spec.strip())
