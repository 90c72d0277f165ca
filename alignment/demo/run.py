"""``artquant demo --out DIR [--quick]``: the toolkit's whole story on the embedded defaults.

Steps, top to bottom: fresh SynthArt data → the tiny scorer before fine-tuning,
scored on the test split → fine-tune it (joint description + score) → evaluate
against the pixel-statistics baseline and the noise ceiling, with attribute
scores and generated descriptions → build the tiny diffusion model → DDPO,
then reward-gradient fine-tuning (DRaFT-K, the scorer is differentiable), each
against the fine-tuned scorer as reward (an extra reward watched on held-out
prompts for reward hacking) → best-of-N reranking before and after each
fine-tuning, same seeds. Writes ``DIR/report.html`` (self-contained), ``DIR/summary.json`` and
``DIR/scorer/`` (loadable by ``ArtQuantScorer.from_pretrained``).

Each step's results go into ``DIR/demo_state.json`` as it finishes; a re-run
with the same settings skips finished steps (see :mod:`alignment.demo.config`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from alignment.demo.config import RERANK_PHASES, DemoConfig, open_run, parse_demo_args, save_state

TEST_BATCH = 16
EVAL_PER_PROMPT = 8  # held-out images per prompt in both fine-tunings' evaluations (fixed seeds)


def _score_records(path: Path) -> list[dict[str, Any]]:
    return [r for r in json.loads(path.read_text()) if r.get("gt_score") is not None]


def _predict(scorer, images: list, aspect: str | None = None, desc: str = "scoring") -> list[float]:
    import torch
    from tqdm.auto import tqdm

    scores: list[float] = []
    with torch.no_grad():
        for i in tqdm(range(0, len(images), TEST_BATCH), desc=desc, unit="batch", leave=False):
            scores += [float(s) for s in scorer.score(images[i:i + TEST_BATCH], aspect=aspect).score.cpu()]
    return scores


def _test_set(out: Path) -> tuple[list, list[float], list[dict[str, Any]]]:
    from artquant_core.images import load_image

    records = _score_records(out / "data" / "test.json")
    images = [load_image(out / "data" / r["image"]) for r in records]
    return images, [float(r["gt_score"]) for r in records], records


# --------------------------------------------------------------------- steps
def step_data(cfg: DemoConfig, out: Path, done: dict) -> dict[str, Any]:
    from tqdm.auto import tqdm

    from artquant_core.baseline import pixel_baselines_srcc
    from artquant_core.synthart import make_synthart

    with tqdm(total=cfg.n_images, desc="synthart", unit="img") as bar:
        records = make_synthart(out / "data", n=cfg.n_images, seed=cfg.seed, size=cfg.image_size,
                                progress=bar.update, rater=cfg.rater)
    meta = json.loads((out / "data" / "synthart_meta.json").read_text())
    baselines = pixel_baselines_srcc(records, ("global", "spatial"))  # position-blind, and with a 4x4 thumbnail
    blind, spatial = baselines["global"]["srcc"], baselines["spatial"]["srcc"]
    return {"splits": meta["splits"], "ceiling_srcc": meta["ceiling_srcc"], "baseline_test_srcc": blind,
            "baseline_spatial_test_srcc": spatial,
            "summary": f"{cfg.n_images} paintings {meta['splits']} rated by {cfg.rater!r}; noise ceiling SRCC {meta['ceiling_srcc']:.3f}, "
                       f"pixel-statistics baseline test SRCC {blind:.3f} (global), {spatial:.3f} (spatial)"}


def _start_scorer(cfg: DemoConfig):
    """The scorer fine-tuning starts from, and where it came from (the shipped weights, or a fallback)."""
    from artquant_core.tiny import build_tiny_scorer

    if cfg.scorer_model != "tiny":
        if cfg.scorer_model == "tiny-random":
            return build_tiny_scorer(seed=cfg.seed, pretrained=False), "tiny-random", "random-init tiny scorer"
        from artquant_core.scorer import ArtQuantScorer

        return ArtQuantScorer.from_pretrained(cfg.scorer_model), cfg.scorer_model, cfg.scorer_model
    try:
        return build_tiny_scorer(seed=cfg.seed, pretrained=True), "tiny", "shipped pretrained tiny scorer"
    except FileNotFoundError:
        # an install without the shipped weights: the story still runs, from random init, and says so
        return (build_tiny_scorer(seed=cfg.seed, pretrained=False), "tiny-random",
                "random-init tiny scorer (FALLBACK: the shipped pretrained weights are not in this install)")


def step_pretrained_eval(cfg: DemoConfig, out: Path, done: dict) -> dict[str, Any]:
    from artquant_core.metrics import evaluate_scores
    from artquant_core.scatter import plot_score_scatter

    scorer, model_name, source = _start_scorer(cfg)
    images, gts, _ = _test_set(out)
    preds = _predict(scorer, images, desc="test (before)")
    metrics = evaluate_scores(preds, gts)
    plot_score_scatter(preds, gts, out / "eval" / "scatter_before.png", title="test split, before fine-tuning",
                       metrics=metrics)
    return {"train_from": model_name, "scorer_source": source, "pretrained_test_srcc": metrics["srcc"],
            "pretrained_test_plcc": metrics["plcc"],
            "summary": f"{source}: test SRCC {metrics['srcc']:.3f} before fine-tuning"}


def step_finetune(cfg: DemoConfig, out: Path, done: dict) -> dict[str, Any]:
    import shutil

    from artquant_core.training import ScorerTrainingConfig, train_scorer

    shutil.rmtree(out / "scorer", ignore_errors=True)  # an interrupted fine-tune restarts cleanly
    train_cfg = ScorerTrainingConfig(
        output_dir=str(out / "scorer"), model_name_or_path=done["pretrained_eval"]["train_from"],
        train_data=str(out / "data" / "train.json"), tasks=cfg.scorer_tasks, seed=cfg.seed,
        score_weight=cfg.scorer_score_weight, description_weight=cfg.scorer_description_weight,
        description_fraction=cfg.scorer_description_fraction, attributes_per_record=cfg.scorer_attributes_per_record,
        max_steps=cfg.scorer_steps, per_device_train_batch_size=cfg.scorer_batch_size,
        learning_rate=cfg.scorer_learning_rate, warmup_ratio=0.1, logging_steps=max(1, cfg.scorer_steps // 20),
        save_strategy="no", eval_strategy="no", report_to="none")
    metrics = train_scorer(train_cfg)
    return {"train_loss": metrics["train_loss"], "steps": metrics["global_step"],
            "n_train_examples": metrics["n_train_examples"],
            "summary": f"{metrics['global_step']} steps on {metrics['n_train_examples']} examples "
                       f"({cfg.scorer_tasks}); mean loss {metrics['train_loss']:.3f}"}


def step_evaluate(cfg: DemoConfig, out: Path, done: dict) -> dict[str, Any]:
    from artquant_core import prompts
    from artquant_core.metrics import evaluate_scores
    from artquant_core.plots import image_grid
    from artquant_core.scatter import plot_score_scatter
    from artquant_core.scorer import ArtQuantScorer

    scorer = ArtQuantScorer.from_pretrained(out / "scorer").eval()
    images, gts, records = _test_set(out)
    preds = _predict(scorer, images, desc="test (after)")
    metrics = evaluate_scores(preds, gts)
    plot_score_scatter(preds, gts, out / "eval" / "scatter.png", title="test split, fine-tuned scorer",
                       metrics=metrics)
    k = min(cfg.describe_images, len(images))
    shown = images[:k]
    aspects = {"overall": _predict(scorer, shown, desc="attributes")}
    for aspect in prompts.ATTRIBUTES:
        aspects[aspect] = _predict(scorer, shown, aspect=aspect, desc=aspect)
    descriptions = scorer.describe(shown, max_new_tokens=cfg.describe_max_new_tokens)
    image_grid(shown, out / "eval" / "described.png", captions=[f"#{i} gt {gts[i]:.2f}" for i in range(k)],
               ncols=k, cell=128)
    examples = [{"id": records[i]["id"], "gt": records[i].get("attributes", {"overall": gts[i]}),
                 "pred": {a: v[i] for a, v in aspects.items()}, "description": descriptions[i]} for i in range(k)]
    before = done["pretrained_eval"]["pretrained_test_srcc"]
    return {"scorer_test_srcc": metrics["srcc"], "scorer_test_plcc": metrics["plcc"], "scorer_test_mae": metrics["mae"],
            "n_test": metrics["n"], "examples": examples,
            "summary": f"test SRCC {metrics['srcc']:.3f} (before fine-tuning {before:.3f}; pixel baselines "
                       f"{done['data']['baseline_test_srcc']:.3f} global, "
                       f"{done['data'].get('baseline_spatial_test_srcc', float('nan')):.3f} spatial; "
                       f"ceiling {done['data']['ceiling_srcc']:.3f})"}


def step_tiny_sd(cfg: DemoConfig, out: Path, done: dict) -> dict[str, Any]:
    from alignment import build_tiny_sd

    if cfg.diffusion_model in ("painter", "tiny-random"):
        path = build_tiny_sd(out / "tiny_sd", seed=cfg.seed, pretrained=cfg.diffusion_model == "painter")
    else:
        from alignment.pipeline import resolve_pretrained

        path = resolve_pretrained(cfg.diffusion_model, out)
    size = sum(f.stat().st_size for f in Path(path).rglob("*.safetensors")) / 2 ** 20
    kind = {"painter": "the shipped painter (tiny SD trained on SynthArt)",
            "tiny-random": "random-init tiny Stable Diffusion"}.get(cfg.diffusion_model, "Stable Diffusion pipeline")
    return {"path": str(path), "summary": f"{kind} ({size:.1f} MiB of weights) at {path}"}


def _prompts(cfg: DemoConfig) -> tuple[list[str], list[str]]:
    """(training prompts, held-out prompts): SynthArt captions for the painter, the generic sets otherwise."""
    if cfg.diffusion_model == "painter":
        from artquant_core.synthart.captions import painter_prompts

        return painter_prompts()
    from alignment.ddpo_config import DEFAULT_EVAL_PROMPTS, DEFAULT_PROMPTS

    return list(DEFAULT_PROMPTS), list(DEFAULT_EVAL_PROMPTS)


def _held_out_prompts(cfg: DemoConfig) -> list[str]:
    """Prompts DDPO never trains on: its evaluation and the reranking use the same ones."""
    held_out = _prompts(cfg)[1]
    return [held_out[i % len(held_out)] for i in range(cfg.held_out_prompts)]


def _watch_rewards(cfg: DemoConfig) -> list[str]:
    """Rewards scored on held-out prompts, never trained on: the configured one and the judge (when shipped)."""
    from artquant_core.tiny import pretrained_folder

    judge = cfg.watch_judge and (pretrained_folder("llava") / "config.json").is_file()
    fidelity = ["caption_match"] if cfg.diffusion_model == "painter" else []  # the prompts are SynthArt captions
    return [cfg.ddpo_eval_reward] + (["judge"] if judge else []) + fidelity


def _shared_run_settings(cfg: DemoConfig, out: Path, done: dict, run: str, eval_every: int) -> dict[str, Any]:
    """What both fine-tunings share: base model, reward, held-out evaluation, checkpoints, resume."""
    return dict(pretrained_model=done["tiny_sd"]["path"], reward=f"artquant:{out / 'scorer'}", output_dir=str(out / run),
                seed=cfg.seed, resolution=cfg.image_size, sample_num_steps=cfg.ddpo_sample_steps,
                sample_eta=1.0, guidance_scale=cfg.guidance_scale, prompts=_prompts(cfg)[0],
                eval_prompts=_held_out_prompts(cfg), eval_rewards=_watch_rewards(cfg), eval_every=eval_every,
                eval_num_per_prompt=EVAL_PER_PROMPT, checkpoint_every=eval_every, resume_from="latest")


def _ddpo_config(cfg: DemoConfig, out: Path, done: dict):
    from alignment import DDPOConfig

    return DDPOConfig(
        **_shared_run_settings(cfg, out, done, "ddpo", cfg.ddpo_eval_every), num_epochs=cfg.ddpo_epochs,
        sample_batch_size=cfg.ddpo_sample_batch_size, sample_num_batches_per_epoch=cfg.ddpo_batches_per_epoch,
        train_batch_size=cfg.ddpo_train_batch_size, learning_rate=cfg.ddpo_learning_rate,
        clip_range=cfg.ddpo_clip_range, train_num_inner_epochs=cfg.ddpo_inner_epochs,
        train_skip_last_steps=cfg.ddpo_skip_last_steps)


def _reward_grad_config(cfg: DemoConfig, out: Path, done: dict):
    from alignment import RewardGradConfig

    return RewardGradConfig(
        **_shared_run_settings(cfg, out, done, "reward_grad", cfg.reward_grad_eval_every),
        num_epochs=cfg.reward_grad_epochs, train_steps_per_epoch=2, train_batch_size=2,
        train_gradient_accumulation_steps=2, truncated_backprop_steps=cfg.reward_grad_backprop_steps,
        learning_rate=cfg.reward_grad_learning_rate)


def _finetune_result(cfg: DemoConfig, run_dir: Path, prefix: str, epochs: int) -> dict[str, Any]:
    """First/last training and held-out rewards of a fine-tuning run, and the paired held-out change."""
    from alignment.eval_scores import compare_evaluations
    from alignment.reward_worker import metric_name
    from artquant_core.tracking import read_metrics

    rows = [r for r in read_metrics(run_dir) if "step" in r]
    train_rows = [r for r in rows if "reward_mean" in r]
    eval_rows = [r for r in rows if "eval_artquant_mean" in r]
    watch = f"eval_{metric_name(cfg.ddpo_eval_reward)}_mean"
    paired_all = compare_evaluations(run_dir)["rewards"]
    paired = paired_all["artquant"]
    v = {"reward_first": train_rows[0]["reward_mean"], "reward_last": train_rows[-1]["reward_mean"],
         "eval_reward_first": eval_rows[0]["eval_artquant_mean"],
         "eval_reward_last": eval_rows[-1]["eval_artquant_mean"],
         "eval_change": paired["change"], "eval_change_se": paired["se"],
         "eval_improved_fraction": paired["improved_fraction"], "watch_name": cfg.ddpo_eval_reward,
         "watch_first": eval_rows[0].get(watch), "watch_last": eval_rows[-1].get(watch), "epochs": epochs,
         "judge_first": eval_rows[0].get("eval_judge_mean"), "judge_last": eval_rows[-1].get("eval_judge_mean"),
         "judge_change": paired_all.get("judge", {}).get("change"),
         "judge_change_se": paired_all.get("judge", {}).get("se"),
         "caption_match_first": eval_rows[0].get("eval_caption_match_mean"),
         "caption_match_last": eval_rows[-1].get("eval_caption_match_mean"),
         "reward_hacking": any(r.get("reward_hacking") for r in eval_rows),
         "samples_per_s": train_rows[-1].get("samples_per_s")}
    result: dict[str, Any] = {f"{prefix}_{key}": value for key, value in v.items()}
    result["summary"] = (f"{epochs} epochs: training reward {v['reward_first']:.4f} -> {v['reward_last']:.4f}; "
                         f"held-out {v['eval_reward_first']:.4f} -> {v['eval_reward_last']:.4f} (paired change "
                         f"{v['eval_change']:+.4f} ± {v['eval_change_se']:.4f}); {cfg.ddpo_eval_reward} (watch) "
                         f"{v['watch_first']:.3f} -> {v['watch_last']:.3f}")
    if v["judge_first"] is not None:
        result["summary"] += f"; judge {v['judge_first']:.4f} -> {v['judge_last']:.4f}"
    if v["caption_match_first"] is not None:
        result["summary"] += f"; caption match {v['caption_match_first']:.3f} -> {v['caption_match_last']:.3f}"
    if v["reward_hacking"]:
        result["summary"] += " — REWARD HACKING: reward up, judge or caption match down"
    return result


def step_ddpo(cfg: DemoConfig, out: Path, done: dict) -> dict[str, Any]:
    from alignment import DDPOTrainer

    DDPOTrainer(_ddpo_config(cfg, out, done)).train()
    return _finetune_result(cfg, out / "ddpo", "ddpo", cfg.ddpo_epochs)


def step_reward_grad(cfg: DemoConfig, out: Path, done: dict) -> dict[str, Any]:
    from alignment import RewardGradTrainer

    RewardGradTrainer(_reward_grad_config(cfg, out, done)).train()
    return _finetune_result(cfg, out / "reward_grad", "reward_grad", cfg.reward_grad_epochs)


def _sample(pipe, prompts: list[str], cfg: DemoConfig):
    """``rerank_n`` samples per prompt in one pipeline call; image ``i`` always gets seed ``seed*1000+i``."""
    import torch

    generators = [torch.Generator().manual_seed(cfg.seed * 1000 + i) for i in range(len(prompts) * cfg.rerank_n)]
    result = pipe(prompts, num_images_per_prompt=cfg.rerank_n, num_inference_steps=cfg.ddpo_sample_steps,
                  guidance_scale=cfg.guidance_scale, eta=1.0, generator=generators, output_type="pt",
                  height=cfg.image_size, width=cfg.image_size)
    return result.images.float().clamp(0, 1).cpu()


def step_rerank(cfg: DemoConfig, out: Path, done: dict) -> dict[str, Any]:
    from alignment.pipeline import load_sd_pipeline
    from artquant_core.checkpoint import latest_checkpoint
    from reward import best_of_n, load_reward
    from reward.rerank import write_rerank_report

    spec = f"artquant:{out / 'scorer'}"
    reward = load_reward(spec)
    prompts = _held_out_prompts(cfg)
    pipe = load_sd_pipeline(done["tiny_sd"]["path"])
    pipe.set_progress_bar_config(disable=False, desc="sampling", leave=False)
    result: dict[str, Any] = {"prompts": prompts, "n": cfg.rerank_n}
    for phase, (run, _) in RERANK_PHASES.items():
        pipe.unload_lora_weights()
        if run is not None:  # the fine-tuned LoRA, loaded the way a user would (diffusers format)
            pipe.load_lora_weights(str(latest_checkpoint(out / run)))
        images = _sample(pipe, prompts, cfg)
        ranked = best_of_n(images, prompts, reward, cfg.rerank_n)
        write_rerank_report(ranked, images, out / "rerank" / phase, spec, group_labels=prompts)
        result[f"rerank_mean_{phase}"] = float(ranked.scores.mean())
        result[f"rerank_best_{phase}"] = float(ranked.best_scores.mean())
    result["summary"] = f"best-of-{cfg.rerank_n} on {len(prompts)} held-out prompts, mean reward -> best: " + ", ".join(
        f"{label} {result[f'rerank_mean_{phase}']:.4f} -> {result[f'rerank_best_{phase}']:.4f}"
        for phase, (_, label) in RERANK_PHASES.items())
    return result


STEPS: list[tuple[str, str, Callable[[DemoConfig, Path, dict], dict]]] = [
    ("data", "SynthArt data + pixel baseline", step_data),
    ("pretrained_eval", "scorer before fine-tuning", step_pretrained_eval),
    ("finetune", "fine-tune the scorer", step_finetune),
    ("evaluate", "evaluate the fine-tuned scorer", step_evaluate),
    ("tiny_sd", "diffusion model (the painter)", step_tiny_sd),
    ("ddpo", "DDPO with ArtQuantReward", step_ddpo),
    ("reward_grad", "reward-gradient fine-tuning (DRaFT-K) with ArtQuantReward", step_reward_grad),
    ("rerank", "best-of-N before/after fine-tuning", step_rerank),
]


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    """Run (or resume) every step, then write summary.json and report.html; return the summary."""
    from artquant_core.console import log_to_folder
    from alignment.demo.report import build_summary, write_report

    cfg.validate()
    out = Path(cfg.out)
    state = open_run(out, cfg.run_settings())
    log_to_folder(out)  # after open_run: it refuses a non-empty folder without a run in it
    done = state["steps"]
    start = time.perf_counter()
    for k, (name, title, fn) in enumerate(STEPS, 1):
        if name in done:
            print(f"[{k}/{len(STEPS)}] {title}: done earlier ({done[name]['seconds']:.1f} s), skipped")
            continue
        print(f"[{k}/{len(STEPS)}] {title} ...", flush=True)
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn(cfg, out, done)
        result["seconds"] = time.perf_counter() - t0
        result["cpu_seconds"] = time.process_time() - c0  # the shared-machine-proof measure
        done[name] = result
        save_state(out, state)
        print(f"[{k}/{len(STEPS)}] {title}: {result['summary']} ({result['seconds']:.1f} s)", flush=True)
    summary = build_summary(cfg, done, run_s=time.perf_counter() - start)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    report = write_report(cfg, out, done, summary)
    spatial = summary.get("baseline_spatial_test_srcc")  # absent from runs begun before the spatial baseline
    spatial_text = "n/a" if spatial is None else f"{spatial:.3f}"
    print(f"done in {summary['total_s']:.1f} s: scorer test SRCC {summary['scorer_test_srcc']:.3f} "
          f"(baselines {summary['baseline_test_srcc']:.3f} global, "
          f"{spatial_text} spatial; ceiling {summary['ceiling_srcc']:.3f}); "
          f"held-out ArtQuant reward: DDPO {summary['ddpo_eval_reward_first']:.4f} -> "
          f"{summary['ddpo_eval_reward_last']:.4f}, reward-gradient {summary['reward_grad_eval_reward_first']:.4f} -> "
          f"{summary['reward_grad_eval_reward_last']:.4f}; "
          f"open {report}")
    return summary


def main(argv: list[str]) -> int:
    from artquant_core.cli_args import wants_help

    if wants_help(argv):
        from artquant_core.config import config_help

        print(config_help(DemoConfig, "demo", extra_usage="--out DIR [--quick] ",
                          extra_options=[("--quick", "the small preset: the whole story in about a minute")]))
        return 0
    cfg = parse_demo_args(argv)
    run_demo(cfg)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
