"""Configuration of Diffusion-DPO fine-tuning (YAML + ``--key value``)."""

from __future__ import annotations

from dataclasses import dataclass

from alignment.run_config import AlignmentRunConfig
from alignment.run_config import config_field as _f


@dataclass
class DiffusionDPOConfig(AlignmentRunConfig):
    """Diffusion-DPO settings (Wallace et al. 2023): preference pairs, DPO loss against the frozen start.

    Pairs come from ``pairs_file`` (offline: ``{prompt, chosen, rejected}`` image paths) or, without it,
    are made each epoch: ``prompts_per_epoch`` prompts, ``samples_per_prompt`` images each from the
    current policy, ranked by ``reward``; the best and the worst image of a prompt form its pair (a
    prompt whose images tie gives none). One *epoch* is ``train_num_inner_epochs`` passes over its
    pairs in micro-batches of ``train_batch_size`` pairs. Each pair is noised at one random timestep,
    with the same noise for both images. Numbers are per process.
    """

    # shared fields whose default or meaning is DPO's own
    output_dir: str = _f("runs/dpo", "run folder: metrics.jsonl, reward_curve.png, eval grids, checkpoint-N/")
    reward: str = _f("brightness", "reward spec ranking the sampled images into pairs, and scoring held-out "
                                   "prompts (with pairs_file: held-out scoring only)")
    learning_rate: float = _f(1e-4, "AdamW learning rate")

    # DPO
    beta: float = _f(5000.0, "DPO temperature on the denoising-error margins (Diffusion-DPO: 5000 for SD 1.5, "
                             "2500 for SDXL); larger keeps the policy closer to the reference")
    pairs_file: str | None = _f(None, "JSON list or JSON Lines of {prompt, chosen, rejected} image paths (relative "
                                      "to the file); unset: pairs are sampled and ranked each epoch")
    samples_per_prompt: int = _f(4, "images sampled per prompt to make a pair (best vs worst by the reward)")
    prompts_per_epoch: int = _f(4, "prompts sampled per epoch and process (without pairs_file)")
    train_num_inner_epochs: int = _f(1, "passes over each epoch's pairs")

    def uses_reference_policy(self) -> bool:
        return True  # the DPO loss is relative to the starting model

    def validate(self, num_processes: int = 1) -> None:
        """The shared checks, then DPO's own (naming the field)."""
        super().validate(num_processes)
        if not self.beta > 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")
        for name in ("samples_per_prompt", "prompts_per_epoch", "train_num_inner_epochs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.samples_per_prompt < 2 and not self.pairs_file:
            raise ValueError("samples_per_prompt must be >= 2 to make a pair (or give pairs_file)")
