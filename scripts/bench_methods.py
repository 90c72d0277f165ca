"""Which fine-tuning method to use: held-out reward gain per 1,000 generated samples and per CPU-minute.

Each method runs from its preset (``configs/<method>_painter.yaml`` on the painter with the shipped
scorer's reward; Flow-GRPO, which needs a flow-matching model, on the tiny SD3 with brightness,
``configs/flow_grpo_tiny.yaml``) for every seed, and again on a reward without signal as its null
control (``random``, an image hash; ``brightness*0`` for reward-gradient, which needs a gradient),
the trained reward then watched as an eval reward so its
held-out change is measured on the same fixed noise. The gain is the paired held-out change of the
trained reward between the first and last evaluation (``alignment.eval_scores``), with the judge's
beside it where the preset watches it. CPU time is the process's (all threads).

    python -m scripts.bench_methods --methods ddpo,reward_grad,dpo,flow_grpo --seeds 0,1 --epochs 10 \\
        --out runs/bench_methods

``bench_methods.json`` is rewritten after every run, so a stopped benchmark keeps what it finished;
``--resume`` continues each run from its newest checkpoint (a finished run only re-reads its
evaluations). The CPU time of a resumed run covers only what this invocation trained: such rows carry
``"resumed": true`` and are left out of the per-minute figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Method:
    """A trainer, its preset, and how many images one epoch generates (per process)."""

    name: str
    preset: str
    module: str
    config_cls: str
    trainer_cls: str

    @property
    def control_reward(self) -> str:
        """The null control's reward: an image hash (no learnable signal); for reward-gradient, which needs a
        differentiable reward, zero times brightness (no gradient at all: the optimiser alone)."""
        return "brightness*0" if self.name == "reward_grad" else "random"

    def samples_per_epoch(self, cfg: Any) -> int:
        if self.name == "reward_grad":
            return cfg.samples_per_epoch
        if self.name == "dpo":
            return 0 if cfg.pairs_file else cfg.prompts_per_epoch * cfg.samples_per_prompt
        return cfg.sample_batch_size * cfg.sample_num_batches_per_epoch  # ddpo, flow_grpo


METHODS = {m.name: m for m in [
    Method("ddpo", "configs/ddpo_painter.yaml", "alignment", "DDPOConfig", "DDPOTrainer"),
    Method("reward_grad", "configs/reward_grad_painter.yaml", "alignment", "RewardGradConfig", "RewardGradTrainer"),
    Method("dpo", "configs/dpo_painter.yaml", "alignment", "DiffusionDPOConfig", "DiffusionDPOTrainer"),
    Method("flow_grpo", "configs/flow_grpo_tiny.yaml", "alignment", "FlowGRPOConfig", "FlowGRPOTrainer"),
]}


def run_one(method: Method, seed: int, control: bool, out: Path, overrides: dict[str, Any],
            resume: bool = False) -> dict[str, Any]:
    """Train one (method, seed, reward-or-control) run; return its gains, sample count and CPU time.

    Args:
        resume: continue from the newest checkpoint in ``out`` (``resume_from: latest``).
    """
    import importlib

    from alignment.eval_scores import compare_evaluations
    from alignment.run_state import resolve_resume
    from alignment.reward_worker import metric_name
    from artquant_core.config import parse_config

    package = importlib.import_module(method.module)
    config_cls, trainer_cls = getattr(package, method.config_cls), getattr(package, method.trainer_cls)
    preset = parse_config(config_cls, ["--config", str(ROOT / method.preset)])
    trained = preset.reward
    values = {"output_dir": str(out), "seed": seed, **overrides}
    if control:  # the same run on a reward without signal; the trained reward is only watched
        values.update(reward=method.control_reward, eval_rewards=list(dict.fromkeys([trained, *preset.eval_rewards])))
    if resume:
        values["resume_from"] = "latest"
    cfg = parse_config(config_cls, ["--config", str(ROOT / method.preset)], **values)
    resumed = resume and resolve_resume(str(out), "latest") is not None
    cpu0, wall0 = time.process_time(), time.perf_counter()
    trainer_cls(cfg).train()
    cpu_min, wall_s = (time.process_time() - cpu0) / 60, time.perf_counter() - wall0
    changes = compare_evaluations(out)["rewards"]
    own = changes[metric_name(trained)]
    samples = method.samples_per_epoch(cfg) * cfg.num_epochs
    row = {"method": method.name, "seed": seed, "reward": f"{cfg.reward} (control)" if control else trained,
           "watched": trained, "change": own["change"], "se": own["se"], "samples": samples,
           "cpu_min": cpu_min, "wall_s": wall_s,
           "gain_per_1k_samples": 1000 * own["change"] / samples if samples else None,
           "gain_per_cpu_min": own["change"] / cpu_min if cpu_min > 0 and not resumed else None,
           "resumed": resumed}
    if "judge" in changes:
        row.update(judge_change=changes["judge"]["change"], judge_se=changes["judge"]["se"])
    return row


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per method: mean gain over seeds, the control's, their difference, and the costs."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method and not r["reward"].endswith("(control)")]
        ctrl = [r for r in rows if r["method"] == method and r["reward"].endswith("(control)")]
        if not mine:
            continue
        gain = statistics.mean(r["change"] for r in mine)
        control = statistics.mean(r["change"] for r in ctrl) if ctrl else None
        net = gain - control if control is not None else gain
        samples = statistics.mean(r["samples"] for r in mine)
        timed = [r["cpu_min"] for r in mine if not r.get("resumed")]  # a resumed run's time is partial
        cpu = statistics.mean(timed) if timed else 0.0
        out.append({"method": method, "reward": mine[0]["reward"], "seeds": len(mine), "gain": gain,
                    "gain_spread": (max(r["change"] for r in mine) - min(r["change"] for r in mine)) / 2,
                    "control_gain": control, "net_gain": net, "samples": samples, "cpu_min": cpu,
                    "net_gain_per_1k_samples": 1000 * net / samples if samples else None,
                    "net_gain_per_cpu_min": net / cpu if cpu > 0 else None,
                    "judge_change": statistics.mean(r["judge_change"] for r in mine) if "judge_change" in mine[0]
                    else None})
    return out


def write_results(out: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Write ``out/bench_methods.json`` (every run so far and their summary) atomically; the summary."""
    from artquant_core.records import write_json_atomic

    summary = summarize(rows)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "bench_methods.json", {"runs": rows, "summary": summary}, indent=1)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench_methods", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--methods", default=",".join(METHODS), help="comma list of " + ", ".join(METHODS))
    parser.add_argument("--seeds", default="0,1", help="comma list of seeds")
    parser.add_argument("--epochs", type=int, default=None, help="override each preset's num_epochs")
    parser.add_argument("--eval-every", type=int, default=None, help="override each preset's eval_every")
    parser.add_argument("--no-control", action="store_true", help="skip the random-reward null controls")
    parser.add_argument("--out", default="runs/bench_methods", help="folder of the runs and bench_methods.json")
    parser.add_argument("--resume", action="store_true", help="continue every run from its newest checkpoint")
    args = parser.parse_args(argv)
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        parser.error(f"--methods: unknown {unknown}; known: {', '.join(METHODS)}")
    overrides = {k: v for k, v in {"num_epochs": args.epochs, "eval_every": args.eval_every}.items() if v is not None}
    rows = []
    for name in names:
        for seed in [int(s) for s in args.seeds.split(",")]:
            for control in ([False] if args.no_control else [False, True]):
                out = Path(args.out) / f"{name}_seed{seed}{'_control' if control else ''}"
                print(f"{name} seed {seed}{' (random-reward control)' if control else ''} -> {out}", flush=True)
                rows.append(run_one(METHODS[name], seed, control, out, overrides, resume=args.resume))
                summary = write_results(Path(args.out), rows)
    print(f"\n{'method':<12} {'reward':<11} {'gain':>8} {'control':>8} {'net':>8} {'/1k smp':>8} {'/CPU-min':>9} "
          f"{'judge':>8}")
    for s in summary:
        fmt = lambda v, w=8: f"{v:>{w}.4f}" if isinstance(v, float) else f"{'-':>{w}}"  # noqa: E731
        print(f"{s['method']:<12} {s['reward']:<11} {fmt(s['gain'])} {fmt(s['control_gain'])} {fmt(s['net_gain'])} "
              f"{fmt(s['net_gain_per_1k_samples'])} {fmt(s['net_gain_per_cpu_min'], 9)} {fmt(s['judge_change'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
