"""Best-of-N reranking: score groups of candidates and keep each group's best.

:func:`best_of_n` is the library call; :func:`write_rerank_report` writes the
contact sheet (one row per group, the score under each image, the best framed)
and a JSON with every candidate's reward and components — what the
``artquant rerank`` command produces.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from reward.base import Reward


@dataclass
class RerankResult:
    """Outcome of :func:`best_of_n` for ``G = len(images) // n`` groups.

    ``indices`` (G,): index into the images of each group's best candidate;
    ``scores`` (N,): every candidate's reward; ``components``: for a composite
    reward, every component's raw values (N,) and ``"total"``, else ``{}``.
    """

    indices: torch.Tensor
    scores: torch.Tensor
    n: int
    components: dict[str, torch.Tensor] = field(default_factory=dict)
    prompts: list[str] | None = None

    @property
    def num_groups(self) -> int:
        return int(self.indices.numel())

    @property
    def best_scores(self) -> torch.Tensor:
        return self.scores[self.indices]

    def group_scores(self) -> torch.Tensor:
        """Scores as ``(G, n)``, one row per group."""
        return self.scores.view(self.num_groups, self.n)


def _group_prompts(prompts: Sequence[str] | None, count: int, n: int) -> list[str] | None:
    """One prompt per image; one per group is expanded (each repeated ``n`` times)."""
    if prompts is None:
        return None
    if isinstance(prompts, str):
        raise ValueError("best_of_n: prompts must be a list of strings, got a single string")
    prompts = list(prompts)
    if len(prompts) == count:
        return prompts
    if len(prompts) == count // n:
        return [p for p in prompts for _ in range(n)]
    raise ValueError(f"best_of_n: prompts has {len(prompts)} entries; expected {count} (one per image) "
                     f"or {count // n} (one per group of n={n})")


def best_of_n(images: Any, prompts: Sequence[str] | None, reward: Reward, n: int) -> RerankResult:
    """Pick the highest-reward image of each group of ``n`` consecutive images.

    ``images``: a ``(N, 3, H, W)`` batch or a list of PIL images (sizes may differ);
    ``prompts``: ``None``, one per image, or one per group. Ties go to the first
    candidate. Scoring runs without gradients.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"best_of_n: n must be a positive integer, got {n!r}")
    count = len(images)
    if count % n:
        raise ValueError(f"best_of_n: {count} images cannot be split into groups of n={n} "
                         f"({count} is not divisible by {n})")
    full_prompts = _group_prompts(prompts, count, n)
    if isinstance(images, torch.Tensor):
        images = images.detach()
    with torch.no_grad():
        if hasattr(reward, "components"):
            components = {k: v.detach().float().cpu() for k, v in reward.components(images, full_prompts).items()}
            scores = components["total"]
        else:
            components = {}
            scores = reward(images, full_prompts).detach().float().cpu()
    if count == 0:
        return RerankResult(torch.zeros(0, dtype=torch.long), scores, n, components, full_prompts)
    indices = scores.view(-1, n).argmax(dim=1) + torch.arange(0, count, n)
    return RerankResult(indices, scores, n, components, full_prompts)


def write_rerank_report(result: RerankResult, images: Any, out_dir: str | Path, reward_spec: str,
                        names: Sequence[str] | None = None, group_labels: Sequence[str] | None = None,
                        extra: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write ``contact_sheet.png`` and ``rerank.json`` into ``out_dir``; return their paths.

    ``names[i]`` identifies candidate ``i`` in the JSON (a file name, a seed);
    ``group_labels[g]`` labels row ``g`` of the sheet (the prompt).
    """
    from artquant_core.plots import image_grid

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    count, n = int(result.scores.numel()), result.n
    names = list(names) if names is not None else [str(i) for i in range(count)]
    best = set(int(i) for i in result.indices)
    groups = []
    for g in range(result.num_groups):
        candidates = []
        for i in range(g * n, (g + 1) * n):
            entry = {"index": i, "name": names[i], "score": float(result.scores[i]), "best": i in best}
            if result.components:
                entry["components"] = {k: float(v[i]) for k, v in result.components.items()}
            candidates.append(entry)
        groups.append({
            "group": g,
            "label": group_labels[g] if group_labels is not None else None,
            "prompt": result.prompts[g * n] if result.prompts else None,
            "best_index": int(result.indices[g]),
            "best_name": names[int(result.indices[g])],
            "best_score": float(result.scores[result.indices[g]]),
            "candidates": candidates,
        })
    report = {"reward": reward_spec, "n": n, "num_images": count, "groups": groups, **(extra or {})}
    json_path = out_dir / "rerank.json"
    json_path.write_text(json.dumps(report, indent=2))
    sheet_images = images if not isinstance(images, torch.Tensor) else images.detach().float().cpu()
    cell = 128 if n <= 8 else 96 if n <= 16 else 64
    sheet = image_grid(sheet_images, out_dir / "contact_sheet.png",
                       captions=[f"{float(s):.4g}" for s in result.scores], ncols=n,
                       highlight=sorted(best), cell=cell, row_labels=list(group_labels) if group_labels else None)
    return {"json": json_path, "contact_sheet": sheet}
