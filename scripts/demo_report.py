"""What ``artquant demo`` hands back: ``summary.json`` (numbers) and ``report.html`` (numbers and pictures)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from scripts.demo_config import DemoConfig
from scripts.report_html import HtmlReport

#: summary key -> (step, key in that step's results)
_FROM_STEPS = {
    "ceiling_srcc": ("data", "ceiling_srcc"),
    "baseline_test_srcc": ("data", "baseline_test_srcc"),
    "scorer_pretrained_test_srcc": ("pretrained_eval", "pretrained_test_srcc"),
    "scorer_source": ("pretrained_eval", "scorer_source"),
    "scorer_test_srcc": ("evaluate", "scorer_test_srcc"),
    "scorer_test_plcc": ("evaluate", "scorer_test_plcc"),
    "scorer_test_mae": ("evaluate", "scorer_test_mae"),
    "n_test": ("evaluate", "n_test"),
    "scorer_train_loss": ("finetune", "train_loss"),
    "ddpo_reward_first": ("ddpo", "ddpo_reward_first"),
    "ddpo_reward_last": ("ddpo", "ddpo_reward_last"),
    "ddpo_eval_reward_first": ("ddpo", "ddpo_eval_reward_first"),
    "ddpo_eval_reward_last": ("ddpo", "ddpo_eval_reward_last"),
    "ddpo_watch_reward": ("ddpo", "ddpo_watch_name"),
    "ddpo_watch_first": ("ddpo", "ddpo_watch_first"),
    "ddpo_watch_last": ("ddpo", "ddpo_watch_last"),
    "ddpo_samples_per_s": ("ddpo", "ddpo_samples_per_s"),
    "rerank_mean_before": ("rerank", "rerank_mean_before"),
    "rerank_best_before": ("rerank", "rerank_best_before"),
    "rerank_mean_after": ("rerank", "rerank_mean_after"),
    "rerank_best_after": ("rerank", "rerank_best_after"),
}


def build_summary(cfg: DemoConfig, done: dict[str, dict[str, Any]], run_s: float) -> dict[str, Any]:
    """Flat numbers of the run. ``total_s`` sums every step's time (across resumed runs too);
    ``run_s`` is this invocation's wall time."""
    summary: dict[str, Any] = {key: done[step][field] for key, (step, field) in _FROM_STEPS.items()}
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


def _ddpo_curves(out: Path, watch: str) -> list[Path]:
    """The trained reward and the watched one on separate axes (their scales differ by orders of magnitude)."""
    from alignment.reward_worker import metric_name
    from artquant_core.plots import plot_curves
    from artquant_core.tracking import read_metrics

    rows = [r for r in read_metrics(out / "ddpo") if "epoch" in r]
    folder = out / "ddpo"
    return [plot_curves(rows, "epoch", ["reward_mean", "eval_artquant_mean"], folder / "demo_artquant_curve.png",
                        title="DDPO: ArtQuant reward", std_suffix="_std", ylabel="reward (0-1)"),
            plot_curves(rows, "epoch", [f"eval_{metric_name(watch)}_mean"], folder / "demo_watch_curve.png",
                        title=f"watched, never trained on: {watch}", std_suffix="_std", ylabel=watch)]


def write_report(cfg: DemoConfig, out: Path, done: dict[str, dict[str, Any]], summary: dict[str, Any]) -> Path:
    """``out/report.html``: every picture embedded, so the one file is the whole report."""
    from artquant_core.checkpoint import latest_checkpoint

    r = HtmlReport("ArtQuant toolkit demo")
    rated = "" if cfg.rater == "overall" else f", scored by a rater who judges {cfg.rater.replace('_', ' ')} only"
    r.paragraph(f"SynthArt data ({cfg.n_images} procedural paintings, seed {cfg.seed}{rated}) → scorer fine-tuned "
                f"({cfg.scorer_tasks}) → evaluated on the held-out test split → used as the reward of DDPO on a "
                f"tiny Stable Diffusion → best-of-{cfg.rerank_n} reranking before and after. Total "
                f"{summary['total_s']:.0f} s of compute.")
    if "FALLBACK" in summary["scorer_source"]:
        r.paragraph("Note: the shipped pretrained tiny scorer is missing from this install, so fine-tuning "
                    "started from the random-init tiny scorer; its SRCC is far below what the shipped weights give.")

    r.heading("1. Scorer: fine-tuned on SynthArt, tested on unseen paintings")
    r.table([
        ["noise ceiling (clean vs noisy ground truth)", summary["ceiling_srcc"]],
        ["fine-tuned scorer", summary["scorer_test_srcc"]],
        [f"before fine-tuning ({summary['scorer_source']})", summary["scorer_pretrained_test_srcc"]],
        ["pixel-statistics ridge baseline", summary["baseline_test_srcc"]],
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
    r.table([
        ["training reward (artquant, mean of the epoch's samples)", summary["ddpo_reward_first"],
         summary["ddpo_reward_last"]],
        ["held-out prompts, artquant", summary["ddpo_eval_reward_first"], summary["ddpo_eval_reward_last"]],
        [f"held-out prompts, {summary['ddpo_watch_reward']} (hacking watch, never trained on)",
         summary["ddpo_watch_first"], summary["ddpo_watch_last"]],
    ], header=["reward", "first epoch", "last epoch"])
    curves = _ddpo_curves(out, summary["ddpo_watch_reward"])
    r.images(curves, ["ArtQuant reward: training samples (mean ± std) and held-out prompts",
                      f"{summary['ddpo_watch_reward']} on held-out prompts (a jump here = reward hacking)"])
    grids = sorted((out / "ddpo" / "eval").glob("epoch_*.png"))
    if grids:
        r.images([grids[0], grids[-1]], ["held-out samples before DDPO (artquant reward under each)",
                                         "same prompts and seeds after DDPO"])
    checkpoint = latest_checkpoint(out / "ddpo")
    r.paragraph(f"LoRA weights: {checkpoint}/pytorch_lora_weights.safetensors "
                "(StableDiffusionPipeline.load_lora_weights).")

    r.heading(f"4. Best-of-{cfg.rerank_n} reranking, before and after DDPO (same seeds)")
    r.table([["before DDPO", summary["rerank_mean_before"], summary["rerank_best_before"]],
             ["after DDPO", summary["rerank_mean_after"], summary["rerank_best_after"]]],
            header=["pipeline", "mean reward of all candidates", "mean reward of the picked best"])
    r.images([out / "rerank" / "before" / "contact_sheet.png", out / "rerank" / "after" / "contact_sheet.png"],
             ["before DDPO (best framed red)", "after DDPO (best framed red)"])

    r.heading("Timings")
    r.table([[name, seconds, summary["cpu_s"].get(name)] for name, seconds in summary["timings_s"].items()]
            + [["total", summary["total_s"], sum(summary["cpu_s"].values())]],
            header=["step", "wall seconds", "CPU seconds (all threads)"])
    r.heading("Settings")
    r.table([[k, v] for k, v in summary["settings"].items()], header=["setting", "value"])
    return r.write(out / "report.html")
