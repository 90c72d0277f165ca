"""What ``artquant demo`` hands back: ``summary.json`` (numbers) and ``report.html`` (numbers and pictures)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from alignment.demo.config import RERANK_PHASES, DemoConfig
from alignment.demo.report_html import HtmlReport

#: summary key -> (step, key in that step's results)
_FROM_STEPS = {
    "ceiling_srcc": ("data", "ceiling_srcc"),
    "baseline_test_srcc": ("data", "baseline_test_srcc"),
    "baseline_spatial_test_srcc": ("data", "baseline_spatial_test_srcc"),
    "scorer_pretrained_test_srcc": ("pretrained_eval", "pretrained_test_srcc"),
    "scorer_source": ("pretrained_eval", "scorer_source"),
    "scorer_test_srcc": ("evaluate", "scorer_test_srcc"),
    "scorer_test_plcc": ("evaluate", "scorer_test_plcc"),
    "scorer_test_mae": ("evaluate", "scorer_test_mae"),
    "n_test": ("evaluate", "n_test"),
    "scorer_train_loss": ("finetune", "train_loss"),
    "ddpo_watch_reward": ("ddpo", "ddpo_watch_name"),
    # the same numbers of each fine-tuning run, under its prefix
    **{f"{run}_{key}": (run, f"{run}_{key}") for run in ("ddpo", "reward_grad")
       for key in ("reward_first", "reward_last", "eval_reward_first", "eval_reward_last", "eval_change",
                   "eval_change_se", "eval_improved_fraction", "watch_first", "watch_last", "samples_per_s",
                   "judge_first", "judge_last", "judge_change", "judge_change_se", "caption_match_first",
                   "caption_match_last", "reward_hacking")},
    **{f"rerank_{kind}_{phase}": ("rerank", f"rerank_{kind}_{phase}") for kind in ("mean", "best")
       for phase in RERANK_PHASES},
}


def build_summary(cfg: DemoConfig, done: dict[str, dict[str, Any]], run_s: float) -> dict[str, Any]:
    """Flat numbers of the run. ``total_s`` sums every step's time (across resumed runs too);
    ``run_s`` is this invocation's wall time."""
    summary: dict[str, Any] = {key: done[step].get(field) for key, (step, field) in _FROM_STEPS.items()}
    summary["timings_s"] = {name: round(result["seconds"], 2) for name, result in done.items()}
    summary["cpu_s"] = {name: round(result.get("cpu_seconds", float("nan")), 2) for name, result in done.items()}
    summary["total_s"] = round(sum(r["seconds"] for r in done.values()), 2)
    summary["run_s"] = round(run_s, 2)
    summary["settings"] = dataclasses.asdict(cfg)
    return summary


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.4f}"
    return str(value)


def _finetune_curves(run_dir: Path, method: str, watch: str) -> list[Path]:
    """The trained reward and the watched one on separate axes (their scales differ by orders of magnitude)."""
    from alignment.reward_worker import metric_name
    from artquant_core.plots import plot_curves
    from artquant_core.tracking import read_metrics

    rows = [r for r in read_metrics(run_dir) if "epoch" in r]
    return [plot_curves(rows, "epoch", ["reward_mean", "eval_artquant_mean"], run_dir / "demo_artquant_curve.png",
                        title=f"{method}: ArtQuant reward", std_suffix="_std", ylabel="reward (0-1)"),
            plot_curves(rows, "epoch", [f"eval_{metric_name(watch)}_mean"], run_dir / "demo_watch_curve.png",
                        title=f"{method}, watched, never trained on: {watch}", std_suffix="_std", ylabel=watch)]


def _finetune_section(r: HtmlReport, out: Path, summary: dict[str, Any], run: str, method: str) -> None:
    """Table, curves, held-out grids and LoRA path of one fine-tuning run (``run`` = its folder and key prefix)."""
    from artquant_core.checkpoint import latest_checkpoint

    watch = summary["ddpo_watch_reward"]
    r.table([
        ["training reward (artquant, mean of the epoch's samples)", summary[f"{run}_reward_first"],
         summary[f"{run}_reward_last"]],
        ["held-out prompts, artquant", summary[f"{run}_eval_reward_first"], summary[f"{run}_eval_reward_last"]],
        [f"held-out prompts, {watch} (hacking watch, never trained on)",
         summary[f"{run}_watch_first"], summary[f"{run}_watch_last"]],
        *([["held-out prompts, judge (independent LLaVA scorer, never trained on)", summary[f"{run}_judge_first"],
            summary[f"{run}_judge_last"]]] if summary.get(f"{run}_judge_first") is not None else []),
        *([["held-out prompts, caption match (prompt fidelity: share of the caption's content checks passed)",
            summary[f"{run}_caption_match_first"], summary[f"{run}_caption_match_last"]]]
          if summary.get(f"{run}_caption_match_first") is not None else []),
    ], header=["reward", "first epoch", "last epoch"])
    if summary.get(f"{run}_judge_change") is not None:
        verdict = ("REWARD HACKING: the trained reward rose while the independent judge or the caption match fell"
                   if summary.get(f"{run}_reward_hacking") else "no reward hacking flagged")
        r.paragraph(f"Judge's paired held-out change: {summary[f'{run}_judge_change']:+.4f} ± "
                    f"{summary[f'{run}_judge_change_se']:.4f} — {verdict}.")
    r.paragraph(f"Paired change of the held-out ArtQuant reward (same images' noise at both evaluations): "
                f"{summary[f'{run}_eval_change']:+.4f} ± {summary[f'{run}_eval_change_se']:.4f} (standard error), "
                f"{summary[f'{run}_eval_improved_fraction']:.0%} of the images higher.")
    curves = _finetune_curves(out / run, method, watch)
    r.images(curves, ["ArtQuant reward: training samples (mean ± std) and held-out prompts",
                      f"{watch} on held-out prompts (a jump here = reward hacking)"])
    grids = sorted((out / run / "eval").glob("epoch_*.png"))
    if grids:
        r.images([grids[0], grids[-1]], [f"held-out samples before {method} (artquant reward under each)",
                                         f"same prompts and seeds after {method}"])
    r.paragraph(f"LoRA weights: {latest_checkpoint(out / run)}/pytorch_lora_weights.safetensors "
                "(StableDiffusionPipeline.load_lora_weights).")


def write_report(cfg: DemoConfig, out: Path, done: dict[str, dict[str, Any]], summary: dict[str, Any]) -> Path:
    """``out/report.html``: every picture embedded, so the one file is the whole report."""
    r = HtmlReport("ArtQuant toolkit demo")
    rated = "" if cfg.rater == "overall" else f", scored by a rater who judges {cfg.rater.replace('_', ' ')} only"
    model = ("the painter (a tiny Stable Diffusion trained on SynthArt captions)" if cfg.diffusion_model == "painter"
             else "a tiny Stable Diffusion")
    r.paragraph(f"SynthArt data ({cfg.n_images} procedural paintings, seed {cfg.seed}{rated}) → scorer fine-tuned "
                f"({cfg.scorer_tasks}) → evaluated on the held-out test split → used as the reward of DDPO and of "
                f"reward-gradient fine-tuning of {model} → best-of-{cfg.rerank_n} reranking before "
                f"and after. Total "
                f"{summary['total_s']:.0f} s of compute.")
    if "FALLBACK" in summary["scorer_source"]:
        r.paragraph("Note: the shipped pretrained tiny scorer is missing from this install, so fine-tuning "
                    "started from the random-init tiny scorer; its SRCC is far below what the shipped weights give.")

    r.heading("1. Scorer: fine-tuned on SynthArt, tested on unseen paintings")
    r.table([
        ["noise ceiling (clean vs noisy ground truth)", summary["ceiling_srcc"]],
        ["fine-tuned scorer", summary["scorer_test_srcc"]],
        [f"before fine-tuning ({summary['scorer_source']})", summary["scorer_pretrained_test_srcc"]],
        ["pixel-statistics ridge baseline (global statistics)", summary["baseline_test_srcc"]],
        ["pixel-statistics ridge baseline (+ 4x4 colour thumbnail)",
         "n/a" if summary.get("baseline_spatial_test_srcc") is None else summary["baseline_spatial_test_srcc"]],
    ], header=["test split SRCC", "value"])
    r.paragraph(f"Test split: {summary['n_test']} paintings; fine-tuned PLCC {_fmt(summary['scorer_test_plcc'])}, "
                f"MAE {_fmt(summary['scorer_test_mae'])} (scores 1–10).")
    r.images([out / "eval" / "scatter.png", out / "eval" / "scatter_before.png", out / "scorer" / "loss_curve.png"],
             ["test split, fine-tuned", "test split, before fine-tuning", "fine-tuning loss"])

    r.heading("2. Attribute scores and generated descriptions (test images)")
    r.images([out / "eval" / "described.png"], ["the test images below, in order"])
    examples = done["evaluate"]["examples"]
    aspects = list(examples[0]["pred"]) if examples else []
    rows = []
    for i, ex in enumerate(examples):
        gt = ex["gt"]
        rows.append([f"#{i}"] + [f"{ex['pred'][a]:.2f} ({gt[a]:.2f})" if a in gt else f"{ex['pred'][a]:.2f}"
                                 for a in aspects])
    r.table(rows, header=["image"] + [f"{a} pred (gt)" for a in aspects])
    r.preformatted("\n\n".join(f"#{i}: {ex['description']}" for i, ex in enumerate(examples)))

    r.heading("3. DDPO against the fine-tuned scorer")
    _finetune_section(r, out, summary, "ddpo", "DDPO")
    if cfg.diffusion_model == "tiny-random":
        r.paragraph("On the random-init tiny diffusion model DDPO updates of a few samples raise simple rewards such "
                    "as brightness, but not the ArtQuant reward: that takes about 512 samples per update "
                    "(configs/ddpo_tiny_artquant.yaml, docs/fine_tuning.md: DDPO). The reward's gradient does better, below.")
    else:
        r.paragraph("On the painter DDPO's score-function gradient estimate points the reward's way only with "
                    "thousands of samples per update (scripts/gradient_agreement.py: cosine with the reward's own "
                    "gradient +0.27 at 512 samples); the demo's 8-sample epochs show the mechanics, not an effect "
                    "(docs/fine_tuning.md: Fine-tuning the painter). The reward's gradient, below, moves the paintings within "
                    "minutes.")
    r.heading("4. Reward-gradient fine-tuning (DRaFT-K) against the same scorer")
    r.paragraph(f"The scorer is differentiable, so the reward's gradient flows through the VAE decode and the last "
                f"{cfg.reward_grad_backprop_steps} denoising steps into the LoRA: "
                f"{cfg.reward_grad_epochs} epochs of 2 updates of 4 samples.")
    _finetune_section(r, out, summary, "reward_grad", "reward-gradient fine-tuning")

    r.heading(f"5. Best-of-{cfg.rerank_n} reranking, before and after fine-tuning (same seeds)")
    r.table([[label, summary[f"rerank_mean_{phase}"], summary[f"rerank_best_{phase}"]]
             for phase, (_, label) in RERANK_PHASES.items()],
            header=["pipeline", "mean reward of all candidates", "mean reward of the picked best"])
    r.images([out / "rerank" / phase / "contact_sheet.png" for phase in RERANK_PHASES],
             [f"{label} (best framed red)" for _, label in RERANK_PHASES.values()])

    r.heading("Timings")
    r.table([[name, seconds, summary["cpu_s"].get(name)] for name, seconds in summary["timings_s"].items()]
            + [["total", summary["total_s"], sum(summary["cpu_s"].values())]],
            header=["step", "wall seconds", "CPU seconds (all threads)"])
    r.heading("Settings")
    r.table([[k, v] for k, v in summary["settings"].items()], header=["setting", "value"])
    return r.write(out / "report.html")
