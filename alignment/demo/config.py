"""``DemoConfig``: the settings of ``artquant demo``, its two presets, and the run-folder state file.

The presets live here (so an installed package has them) and, identically, in
``configs/demo.yaml`` / ``configs/demo_quick.yaml`` (a test keeps them equal).
The state file ``OUT/demo_state.json`` records the settings and every finished
step with its results, so a re-run with the same settings resumes and a re-run
with different settings is refused instead of mixing two runs in one folder.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: reranking phase -> (fine-tuning run folder whose LoRA the pipeline loads, or None for the base model; label)
RERANK_PHASES = {"before": (None, "before fine-tuning"), "after": ("ddpo", "after DDPO"),
                 "after_reward_grad": ("reward_grad", "after reward-gradient fine-tuning")}

STATE_FILE = "demo_state.json"
STATE_VERSION = 1


def _f(default: Any, help: str):
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class DemoConfig:
    """Settings of the end-to-end demo. Defaults: the full demo (a few CPU minutes)."""

    out: str | None = _f(None, "output folder (required): report.html, summary.json, scorer/, ddpo/, ...")
    seed: int = _f(0, "seed of the data, the fine-tuning, DDPO and the reranking draws")
    # data
    n_images: int = _f(400, "SynthArt paintings to generate (80/10/10 train/val/test)")
    image_size: int = _f(64, "SynthArt image side in pixels")
    rater: str = _f("composition", "SynthArt score the fine-tuning data is rated by: overall, or one attribute "
                    "(e.g. composition: a new rater the shipped scorer must adapt to)")
    # scorer
    scorer_model: str = _f("tiny", "scorer to fine-tune: 'tiny' (shipped weights), 'tiny-random', or a folder")
    scorer_steps: int = _f(60, "fine-tuning optimizer steps")
    scorer_batch_size: int = _f(8, "fine-tuning batch size")
    scorer_learning_rate: float = _f(1e-4, "fine-tuning peak learning rate (AdamW, cosine)")
    scorer_tasks: str = _f("score,description,attributes", "tasks mixed in fine-tuning (joint description + score)")
    scorer_score_weight: float = _f(1.0, "weight of the score loss (the shipped weights' pre-training recipe)")
    scorer_description_weight: float = _f(0.25, "weight of the description loss")
    scorer_description_fraction: float = _f(0.25, "share of description records used (they are ~4x longer)")
    scorer_attributes_per_record: int = _f(2, "attribute-score examples per painting (of 7)")
    describe_images: int = _f(4, "test images shown with attribute scores and a generated description")
    describe_max_new_tokens: int = _f(96, "length cap of each generated description")
    # diffusion model (both fine-tunings and the reranking)
    diffusion_model: str = _f("painter", "diffusion model to fine-tune: 'painter' (shipped tiny SD trained on "
                              "SynthArt captions; prompts: SynthArt captions), 'tiny-random' (random-init tiny SD), "
                              "or a pipeline folder")
    guidance_scale: float = _f(3.0, "classifier-free guidance in sampling, training and reranking (the painter "
                               "was trained for ~3)")
    watch_judge: bool = _f(True, "also watch the shipped independent judge (tiny LLaVA scorer) on held-out prompts: "
                           "reward up + judge down is flagged as reward hacking")
    # DDPO
    ddpo_epochs: int = _f(12, "DDPO epochs on the tiny diffusion model")
    ddpo_sample_steps: int = _f(10, "DDIM steps per sample")
    ddpo_skip_last_steps: int = _f(1, "last DDIM steps sampled but not trained on (DDPOConfig.train_skip_last_steps; "
                                      "the painter's last step only adds gradient noise)")
    ddpo_sample_batch_size: int = _f(4, "samples per sampling batch")
    ddpo_batches_per_epoch: int = _f(2, "sampling batches per epoch")
    ddpo_train_batch_size: int = _f(4, "samples per training micro-batch")
    ddpo_learning_rate: float = _f(1e-3, "LoRA learning rate (configs/ddpo_tiny.yaml's: larger steps mostly add drift)")
    ddpo_clip_range: float = _f(0.2, "PPO clip range of the importance ratio")
    ddpo_inner_epochs: int = _f(1, "passes over each epoch's samples")
    ddpo_eval_every: int = _f(4, "evaluate on held-out prompts every N epochs (and at the end)")
    ddpo_eval_reward: str = _f("jpeg_compressibility", "extra reward watched on held-out prompts (reward hacking)")
    # reward-gradient fine-tuning (DRaFT-K): same scorer, same held-out prompts and watched reward as DDPO
    reward_grad_epochs: int = _f(40, "reward-gradient epochs (2 updates of 2 x 2 samples each)")
    reward_grad_learning_rate: float = _f(1e-3, "LoRA learning rate of the reward-gradient fine-tuning (5e-3 collapses "
                                         "the painter to one empty landscape within 40 epochs: reward hacking)")
    reward_grad_backprop_steps: int = _f(2, "K of DRaFT-K: denoising steps the reward's gradient flows through")
    reward_grad_eval_every: int = _f(10, "reward-gradient: evaluate on held-out prompts every N epochs (and at the "
                                         "end)")
    # reranking
    rerank_n: int = _f(4, "candidates per prompt for best-of-N")
    held_out_prompts: int = _f(4, "held-out prompts (never trained on): evaluation of both fine-tunings and "
                                 "best-of-N before/after, same seeds")

    def run_settings(self) -> dict[str, Any]:
        """Everything that shapes the results (all but the output folder)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "out"}

    def validate(self) -> None:
        if not self.out:
            raise ValueError("artquant demo needs --out DIR (the folder for report.html, summary.json, ...)")
        for name in ("n_images", "scorer_steps", "scorer_batch_size", "describe_images", "ddpo_epochs",
                     "ddpo_sample_steps", "ddpo_sample_batch_size", "ddpo_batches_per_epoch",
                     "ddpo_train_batch_size", "ddpo_inner_epochs", "ddpo_eval_every", "rerank_n", "held_out_prompts",
                     "reward_grad_epochs", "reward_grad_backprop_steps", "reward_grad_eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.ddpo_skip_last_steps < self.ddpo_sample_steps:
            raise ValueError(f"ddpo_skip_last_steps must be in [0, ddpo_sample_steps = {self.ddpo_sample_steps}), "
                             f"got {self.ddpo_skip_last_steps}")
        if self.n_images < 30:
            raise ValueError(f"n_images must be >= 30 (the test split needs a few images), got {self.n_images}")


#: ``--quick``: the whole story in well under 90 s on 2 CPU cores (the test suite runs it).
QUICK_PRESET: dict[str, Any] = {
    "n_images": 100, "scorer_steps": 4, "scorer_batch_size": 4, "describe_images": 2,
    "describe_max_new_tokens": 24, "ddpo_epochs": 2, "ddpo_sample_steps": 4, "ddpo_sample_batch_size": 2,
    "ddpo_batches_per_epoch": 1, "ddpo_train_batch_size": 2, "ddpo_inner_epochs": 1, "ddpo_eval_every": 2, "rerank_n": 2,
    "held_out_prompts": 2, "reward_grad_epochs": 2, "reward_grad_eval_every": 2,
}


def parse_demo_args(argv: list[str]) -> DemoConfig:
    """``[--quick] [--config YAML] [--key value ...]``; precedence: command line > YAML > preset > defaults."""
    from artquant_core.cli_args import UsageError
    from artquant_core.config import parse_config

    argv = list(argv)
    quick = "--quick" in argv
    argv = [a for a in argv if a != "--quick"]
    config = parse_config(DemoConfig, argv, defaults=dict(QUICK_PRESET) if quick else None)
    try:
        config.validate()
    except ValueError as exc:  # a missing --out or a value out of range: the command line is wrong
        raise UsageError(str(exc)) from None
    return config


# ---------------------------------------------------------------- state file
def open_run(out: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Start or resume the run in ``out``; refuse a folder holding anything else."""
    state_path = out / STATE_FILE
    if state_path.is_file():
        try:
            state = json.loads(state_path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{state_path} is corrupt ({exc}); use a new --out folder") from None
        old = state.get("settings", {})
        diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        if diff:
            shown = ", ".join(f"{k}: {old.get(k)!r} -> {settings.get(k)!r}" for k in diff[:4])
            raise ValueError(f"{out} holds a demo run with other settings ({shown}); use a new --out folder "
                             "or the same settings to resume it")
        return state
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise ValueError(f"--out {out} is not empty and holds no {STATE_FILE}; refusing to mix runs: "
                         "use an empty or new folder")
    out.mkdir(parents=True, exist_ok=True)
    state = {"version": STATE_VERSION, "settings": settings, "steps": {}}
    save_state(out, state)
    return state


def save_state(out: Path, state: dict[str, Any]) -> None:
    from artquant_core.records import write_json_atomic

    write_json_atomic(out / STATE_FILE, state, indent=2)
