"""How far has a DDPO run's policy moved from its starting model? The KL of each DDIM step, on its own samples.

A DDPO checkpoint's LoRA is loaded into the run's preset; the policy samples ``n``
trajectories (the preset's sampler: steps, eta, guidance, prompts), and for every
recorded step the Gaussian KL between the policy's step and the starting model's
(LoRA adapters switched off) is averaged over latent elements and samples — the
quantity ``kl_coef`` weighs in training. Comparing a run with its ``--reward random``
control tells learning from the optimiser's random walk: the painter's DDPO at lr 3e-3
without a KL term had moved as far as its control (0.0121 against 0.0112, mean over the
trained steps), at lr 1e-3 2.5 times as far (0.0014 against 0.00056); docs/fine_tuning.md,
"DDPO's null control".

    python -m scripts.policy_drift runs/ddpo_painter/checkpoint-40 --config configs/ddpo_painter.yaml [--n 32]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path
from typing import Sequence


def policy_drift(checkpoint: str | Path, config: str | Path, n: int = 32, overrides: Sequence[str] = ()
                 ) -> dict[str, object]:
    """``{"kl_per_step": [...], "kl_mean_trained": float}`` of the DDPO checkpoint under its preset ``config``.

    ``kl_mean_trained`` averages the steps training uses (``train_skip_last_steps`` left out); ``n`` must be a
    multiple of the preset's ``sample_batch_size``.
    """
    import torch

    from alignment import DDPOConfig, DDPOTrainer
    from artquant_core.config import parse_config

    checkpoint = Path(checkpoint)
    if not (checkpoint / "trainer_state.json").is_file():
        raise FileNotFoundError(f"{checkpoint}: not a DDPO checkpoint folder (no trainer_state.json)")
    with tempfile.TemporaryDirectory() as scratch:
        preset = parse_config(DDPOConfig, ["--config", str(config), *overrides])
        if n < 1 or n % preset.sample_batch_size:
            raise ValueError(f"--n must be a positive multiple of sample_batch_size = {preset.sample_batch_size}, "
                             f"got {n}")
        batches = n // preset.sample_batch_size
        # the preset's sampler, one epoch of n trajectories, no evaluation; any kl_coef > 0 makes chunk_loss
        # compute the KL (its value does not depend on the weight)
        cfg = dataclasses.replace(preset, output_dir=scratch, resume_from=str(checkpoint), kl_coef=1.0,
                                  eval_prompts=[], eval_rewards=[], sample_num_batches_per_epoch=batches,
                                  train_batch_size=preset.sample_batch_size,
                                  train_gradient_accumulation_steps=batches)
        trainer = DDPOTrainer(cfg)
        try:
            trainer.setup.resume()
            samples, _ = trainer.sample(0)
            recorded = samples["timesteps"].shape[0]
            everyone = torch.arange(samples["latents"].shape[0])
            per_step = []
            with torch.no_grad():
                for col in range(recorded):
                    _, stats = trainer.chunk_loss(samples, everyone, torch.full((len(everyone), 1), col))
                    per_step.append(float(stats["kl"]))
        finally:
            trainer.close()
    trained = per_step[:recorded - cfg.train_skip_last_steps]
    return {"kl_per_step": per_step, "kl_mean_trained": sum(trained) / len(trained)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="a DDPO checkpoint folder (checkpoint-N of a run)")
    parser.add_argument("--config", required=True, help="the run's preset, e.g. configs/ddpo_painter.yaml")
    parser.add_argument("--n", type=int, default=32, help="trajectories sampled (a multiple of sample_batch_size)")
    args, overrides = parser.parse_known_args(argv)
    result = policy_drift(args.checkpoint, args.config, args.n, overrides)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
