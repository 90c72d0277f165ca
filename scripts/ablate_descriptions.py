"""Ablation: does joint description + score training beat score-only training, and does it learn faster?

Every arm starts from the same warmed-up tiny scorer (``--vision_warmup_steps``:
the vision tower regresses the scores once, then every arm trains with it frozen,
as the tiny scorer's pre-training does, so the comparison is about what the
language side learns) and is scored on the same held-out split. The arms:

* ``score_only``: score records only, ``--max_steps`` steps;
* ``joint_equal_steps``: score + description records, the same ``--max_steps``
  steps (so it sees fewer score examples: the sampler shuffles both kinds of
  example into one pool, and a batch holds them in proportion to the pool);
* ``joint_equal_score``: score + description records, for as many steps as it
  takes to see as many score examples as ``score_only`` (``--max_steps`` divided
  by the score share of the pool: twice the steps for SynthArt's one description
  per painting), once per ``--description_weights`` value.

Each arm runs once per seed in ``--seeds``. A seed sets the training order, the
question wording drawn per example and any init randomness after the warm start;
with ``--warm_start per_seed`` it also sets the random init and the warm-up of
the tower (one warm start per seed, shared by that seed's arms), with ``global``
one warm start (seeded by the first seed) serves every run. The held-out SRCC is
measured every ``--eval_every`` steps by the trainer's own validation
(``eval_strategy="steps"``), giving learning curves against steps and against
score examples seen.

Writes ``OUT/ablation.json`` (settings, per-seed curves and final metrics, and
the summary: mean, sample std and min–max across seeds per arm and per
evaluation step, and each arm's paired difference to ``score_only``) and
``OUT/ablation_curves.png`` (mean ± std bands). Runs already finished with the
same settings are reused, so an interrupted ablation picks up where it stopped.

    python -m scripts.ablate_descriptions --data /tmp/sa20k --out /tmp/ablation --vision_warmup_steps 800 \\
        --seeds 0,1,2 --max_steps 300 --batch_size 32 --description_weights 0.25,1,4 --eval_every 100
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ARM_KINDS = ("score_only", "joint_equal_steps", "joint_equal_score")
JOINT_TASKS = "score,description"
WARM_START_MODES = ("per_seed", "global")


@dataclass(frozen=True)
class Arm:
    """One training setting of the ablation."""

    name: str
    tasks: str
    description_weight: float
    max_steps: int
    score_share: float  # expected share of score examples in a batch (the pool's)

    def score_examples(self, step: int, batch_size: int) -> float:
        """Expected number of score examples seen after ``step`` optimiser steps."""
        return step * batch_size * self.score_share


def parse_list(text: str, cast: type, name: str) -> list:
    """Comma-separated values of argument ``name`` cast to ``cast``; the error names the argument."""
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise ValueError(f"{name}: expected a comma-separated list, got {text!r}")
    try:
        return [cast(s) for s in items]
    except ValueError:
        raise ValueError(f"{name}: expected comma-separated {cast.__name__} values, got {text!r}") from None


def example_pool(train_data: Path, max_train_samples: int | None) -> dict[str, int]:
    """How many score and description records the runs train on (after ``max_train_samples``)."""
    from artquant_core.records import load_records

    records = load_records(train_data, check_images=False)
    if max_train_samples:
        records = records[:max_train_samples]
    n_description = sum(1 for r in records if getattr(r, "task_type", None) == "description")
    n_score = len(records) - n_description
    if n_score == 0:
        raise ValueError(f"--data: {train_data} holds no score records (first {len(records)} records)")
    return {"score": n_score, "description": n_description}


def plan_arms(kinds: Sequence[str], max_steps: int, description_weight: float,
              description_weights: Sequence[float], pool: dict[str, int]) -> list[Arm]:
    """The arms to run, with their steps chosen so that the comparisons are the ones named."""
    unknown = [k for k in kinds if k not in ARM_KINDS]
    if unknown:
        raise ValueError(f"--arms: unknown arm(s) {unknown}; known: {', '.join(ARM_KINDS)}")
    joint_share = pool["score"] / (pool["score"] + pool["description"])
    if any(k != "score_only" for k in kinds) and pool["description"] == 0:
        raise ValueError("--arms: the joint arms need description records, and the training data has none")
    arms: list[Arm] = []
    for kind in kinds:
        if kind == "score_only":
            arms.append(Arm(kind, "score", description_weight, max_steps, 1.0))
        elif kind == "joint_equal_steps":
            arms.append(Arm(kind, JOINT_TASKS, description_weight, max_steps, joint_share))
        else:
            # a shuffled pool gives score examples at its score share: stretch the run to match score_only
            steps = round(max_steps / joint_share)
            for weight in description_weights:
                arms.append(Arm(f"{kind}_w{weight:g}", JOINT_TASKS, weight, steps, joint_share))
    return arms


def srcc_standard_error(srcc: float, n: int) -> float:
    """Approximate standard error of a Spearman correlation over ``n`` items (Bonett & Wright's variance).

    Fisher's z of SRCC has variance (1 + r²/2) / (n - 3); mapped back through
    dr/dz = 1 - r², which is what one eval set of ``n`` images can resolve.
    """
    if n <= 3:
        return float("nan")
    return (1.0 - srcc ** 2) * math.sqrt((1.0 + srcc ** 2 / 2.0) / (n - 3))


def spread(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (ddof 1; 0 for one value), min and max of ``values``."""
    values = [float(v) for v in values]
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="SynthArt folder (train.json, test.json)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--model", default="tiny-random")
    parser.add_argument("--tiny_kwargs", default="vision_layers=2,text_layers=2")
    parser.add_argument("--max_steps", type=int, default=80, help="steps of score_only and joint_equal_steps")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--description_weight", type=float, default=1.0,
                        help="description loss weight of joint_equal_steps")
    parser.add_argument("--description_weights", default="1",
                        help="description loss weights of joint_equal_score, one arm each (e.g. 0.25,1,4)")
    parser.add_argument("--max_train_samples", type=int, default=8000)
    parser.add_argument("--max_eval_samples", type=int, default=500)
    parser.add_argument("--seeds", default="0", help="comma-separated seeds, one run of every arm each")
    parser.add_argument("--arms", default=",".join(ARM_KINDS), help=f"comma-separated, from {', '.join(ARM_KINDS)}")
    parser.add_argument("--eval_every", type=int, default=0,
                        help="held-out SRCC every N steps (learning curves); 0 = at the end only")
    parser.add_argument("--vision_warmup_steps", type=int, default=0,
                        help="warm the vision tower up first, then train every arm with it frozen")
    parser.add_argument("--warm_start", default="per_seed", choices=WARM_START_MODES,
                        help="one warm start per seed (its init and warm-up seeded by it) or one for all runs")
    args = parser.parse_args(argv)
    for name in ("max_steps", "batch_size", "max_eval_samples"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.eval_every < 0 or args.vision_warmup_steps < 0:
        raise ValueError(f"--eval_every and --vision_warmup_steps must be >= 0, got {args.eval_every} and "
                         f"{args.vision_warmup_steps}")
    seeds = parse_list(args.seeds, int, "--seeds")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds: repeated seed in {args.seeds!r}")
    weights = parse_list(args.description_weights, float, "--description_weights")
    if any(w < 0 for w in weights) or args.description_weight < 0:
        raise ValueError(f"--description_weight(s) must be >= 0, got {args.description_weight} and {weights}")

    data, out = Path(args.data), Path(args.out)
    for name in ("train.json", "test.json"):
        if not (data / name).is_file():
            raise FileNotFoundError(f"--data: {data / name} not found (make one with `artquant synthart`)")
    pool = example_pool(data / "train.json", args.max_train_samples)
    arms = plan_arms(parse_list(args.arms, str, "--arms"), args.max_steps, args.description_weight, weights, pool)
    settings = {**vars(args), "seeds": seeds, "description_weights": weights, "pool": pool,
                "arms": [asdict(a) for a in arms]}

    runs: dict[str, dict[str, dict]] = {arm.name: {} for arm in arms}
    started = time.perf_counter()
    for seed in seeds:  # seed-major: an ablation stopped early still has whole seeds
        warm_seed = seed if args.warm_start == "per_seed" else seeds[0]
        model, tiny_kwargs = start_model(args, data / "train.json", out, warm_seed)
        for arm in arms:
            folder = out / f"seed{seed}" / arm.name
            runs[arm.name][str(seed)] = run_arm(arm, seed, model, tiny_kwargs, args, data, folder)
            write_report(out, settings, arms, runs, time.perf_counter() - started)
    report = write_report(out, settings, arms, runs, time.perf_counter() - started)
    print(json.dumps(report["summary"], indent=2))
    return 0


def start_model(args, train_data: Path, out: Path, seed: int) -> tuple[str, str]:
    """Model name and tiny kwargs every arm of ``seed`` starts from (the warm start when one is asked for)."""
    if not args.vision_warmup_steps:
        return args.model, args.tiny_kwargs if args.model == "tiny-random" else ""
    folder = out / (f"warm_start_seed{seed}" if args.warm_start == "per_seed" else "warm_start")
    return str(warm_start(args, train_data, folder, seed)), ""


def warm_start(args, train_data: Path, folder: Path, seed: int) -> Path:
    """``--model`` (random tiny init seeded by ``seed``) with its vision tower warmed up; done once, then reused."""
    from artquant_core.checkpoint import atomic_directory
    from artquant_core.config import parse_config
    from artquant_core.records import load_records
    from artquant_core.training import ScorerTrainingConfig
    from artquant_core.training.train import load_scorer_for_training
    from artquant_core.training.vision_warmup import vision_warmup, warmup_targets

    wanted = {"model": args.model, "tiny_kwargs": args.tiny_kwargs, "steps": args.vision_warmup_steps, "seed": seed}
    if (folder / "config.json").is_file():
        found = json.loads((folder / "warm_start.json").read_text()) if (folder / "warm_start.json").is_file() else {}
        if found != wanted:
            raise ValueError(f"--out: {folder} holds a warm start made with {found or 'unknown settings'}, not "
                             f"{wanted}; use another --out or remove it")
        return folder
    started = time.perf_counter()
    config = parse_config(ScorerTrainingConfig, [], output_dir=str(folder), model_name_or_path=args.model,
                          tiny_kwargs=args.tiny_kwargs if args.model == "tiny-random" else "", seed=seed)
    scorer = load_scorer_for_training(config)
    paths, _, targets = warmup_targets(load_records(train_data), train_data.parent)
    vision_warmup(scorer, paths, targets, args.vision_warmup_steps, seed=seed, progress=False)
    with atomic_directory(folder) as tmp:
        scorer.save_pretrained(tmp)
        (Path(tmp) / "warm_start.json").write_text(json.dumps(wanted) + "\n")
    print(f"warm start {folder}: {time.perf_counter() - started:.0f} s", flush=True)
    return folder


def run_arm(arm: Arm, seed: int, model: str, tiny_kwargs: str, args, data: Path, folder: Path) -> dict[str, Any]:
    """Train one arm for one seed (or reuse a finished run with the same settings); its curve and final metrics."""
    from artquant_core.config import parse_config
    from artquant_core.tracking import read_metrics
    from artquant_core.training import ScorerTrainingConfig, train_scorer

    settings = {"arm": asdict(arm), "seed": seed, "model": model, "tiny_kwargs": tiny_kwargs,
                "batch_size": args.batch_size, "learning_rate": args.learning_rate,
                "max_train_samples": args.max_train_samples, "max_eval_samples": args.max_eval_samples,
                "eval_every": args.eval_every, "data": str(data)}
    done = folder / "ablation_run.json"
    if done.is_file():
        previous = json.loads(done.read_text())
        if previous.get("settings") == settings:
            print(f"reusing {folder}", flush=True)
            return previous["result"]
    shutil.rmtree(folder, ignore_errors=True)  # a half-written run would mix two runs' metrics
    started = time.perf_counter()
    config = parse_config(ScorerTrainingConfig, [], output_dir=str(folder), model_name_or_path=model,
                          tiny_kwargs=tiny_kwargs, freeze_vision_tower=bool(args.vision_warmup_steps),
                          train_data=str(data / "train.json"), eval_data=str(data / "test.json"),
                          tasks=arm.tasks, score_weight=1.0, description_weight=arm.description_weight,
                          max_steps=arm.max_steps, per_device_train_batch_size=args.batch_size,
                          learning_rate=args.learning_rate, warmup_ratio=0.05, logging_steps=10,
                          save_strategy="no", eval_strategy="steps" if args.eval_every else "no",
                          eval_steps=args.eval_every or None, max_train_samples=args.max_train_samples,
                          max_eval_samples=args.max_eval_samples, seed=seed, disable_tqdm=True)
    metrics = train_scorer(config)
    wall = time.perf_counter() - started
    # the trainer logs every validation to metrics.jsonl; the final one may repeat the last step's
    curve: dict[int, float] = {}
    for row in read_metrics(folder):
        if "eval_srcc" in row and "step" in row:
            curve.setdefault(int(row["step"]), float(row["eval_srcc"]))
    curve.setdefault(int(metrics["global_step"]), float(metrics["eval_srcc"]))
    steps = sorted(curve)
    result = {"steps": steps, "srcc": [curve[s] for s in steps],
              "score_examples": [arm.score_examples(s, args.batch_size) for s in steps],
              "final": {k: metrics[k] for k in ("eval_srcc", "eval_plcc", "eval_mae", "eval_n", "train_loss",
                                                "global_step", "n_train_examples") if k in metrics},
              "wall_s": round(wall, 1)}
    done.write_text(json.dumps({"settings": settings, "result": result}, indent=2) + "\n")
    print(f"seed {seed} {arm.name}: {arm.max_steps} steps in {wall:.0f} s, final SRCC "
          f"{metrics['eval_srcc']:.3f}", flush=True)
    return result


def summarise(arms: Sequence[Arm], runs: dict[str, dict[str, dict]], batch_size: int, n_eval: int) -> dict[str, Any]:
    """Across-seed statistics per arm: final SRCC, curve points, and paired differences to score_only."""
    summary: dict[str, Any] = {}
    reference = runs.get("score_only", {})
    for arm in arms:
        by_seed = runs[arm.name]
        if not by_seed:
            continue
        finals = [r["final"]["eval_srcc"] for r in by_seed.values()]
        entry: dict[str, Any] = {"final_srcc": spread(finals), "max_steps": arm.max_steps,
                                 "description_weight": arm.description_weight if arm.tasks != "score" else 0.0,
                                 "score_examples": arm.score_examples(arm.max_steps, batch_size),
                                 "wall_s": spread([r["wall_s"] for r in by_seed.values()])}
        entry["srcc_standard_error_eval_set"] = srcc_standard_error(entry["final_srcc"]["mean"], n_eval)
        common = sorted(set.intersection(*(set(r["steps"]) for r in by_seed.values())))
        entry["curve"] = [{"step": s, **spread([r["srcc"][r["steps"].index(s)] for r in by_seed.values()])}
                          for s in common]
        paired = [by_seed[s]["final"]["eval_srcc"] - reference[s]["final"]["eval_srcc"]
                  for s in by_seed if s in reference]
        if arm.name != "score_only" and paired:
            entry["minus_score_only"] = spread(paired)
        summary[arm.name] = entry
    return summary


def write_report(out: Path, settings: dict, arms: Sequence[Arm], runs: dict[str, dict[str, dict]],
                 wall: float) -> dict[str, Any]:
    """``ablation.json`` and ``ablation_curves.png`` from the runs so far."""
    n_eval = next((r["final"].get("eval_n") for by_seed in runs.values() for r in by_seed.values()
                   if r["final"].get("eval_n")), settings["max_eval_samples"])
    summary = summarise(arms, runs, settings["batch_size"], int(n_eval))
    report = {"settings": settings, "spread": "mean, sample std (ddof 1) and min-max across seeds",
              "n_eval_images": int(n_eval), "wall_s": round(wall, 1), "summary": summary, "runs": runs}
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation.json").write_text(json.dumps(report, indent=2) + "\n")
    if any(runs.values()):
        plot_learning_curves(arms, runs, settings["batch_size"], out / "ablation_curves.png")
    return report


def plot_learning_curves(arms: Sequence[Arm], runs: dict[str, dict[str, dict]], batch_size: int,
                         path: Path) -> Path:
    """Held-out SRCC against steps and against score examples seen: mean line, ± std band, one colour per arm."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import numpy as np

    from artquant_core.plots import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110, sharey=True)
    for arm in arms:
        by_seed = list(runs[arm.name].values())
        if not by_seed:
            continue
        steps = sorted(set.intersection(*(set(r["steps"]) for r in by_seed)))
        values = np.array([[r["srcc"][r["steps"].index(s)] for s in steps] for r in by_seed])
        mean = values.mean(0)
        std = values.std(0, ddof=1) if len(by_seed) > 1 else np.zeros_like(mean)
        label = f"{arm.name} ({len(by_seed)} seeds)"
        for ax, xs in ((axes[0], np.array(steps, dtype=float)),
                       (axes[1], np.array([arm.score_examples(s, batch_size) for s in steps]))):
            line, = ax.plot(xs, mean, marker="o", ms=3, label=label)
            ax.fill_between(xs, mean - std, mean + std, color=line.get_color(), alpha=0.15)
    axes[0].set_xlabel("optimiser steps")
    axes[1].set_xlabel("score examples seen (expected)")
    axes[0].set_ylabel("held-out SRCC (mean ± std across seeds)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle("score-only vs joint description + score training")
    return save_figure(fig, path)


if __name__ == "__main__":
    raise SystemExit(main())
