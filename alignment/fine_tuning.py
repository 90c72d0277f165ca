"""The epoch / evaluate / checkpoint loop every diffusion fine-tuning trainer runs.

A trainer subclasses :class:`FineTuningTrainer` and writes only its algorithm:
``train_epoch(epoch)`` (sample, score, update; returns the epoch's metrics)
and, when it keeps state across epochs, ``trainer_state()`` /
``load_trainer_state()`` (saved inside every checkpoint). The loop is the same
for all: resume, then per epoch evaluate on held-out prompts (every
``eval_every``), train, log a row, checkpoint (every ``checkpoint_every``);
a final evaluation and checkpoint at the end.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable

from alignment.run_config import AlignmentRunConfig
from alignment.run_setup import AlignmentSetup


class FineTuningTrainer(ABC):
    """Base of the trainers. ``Trainer(config, reward=None).train() -> dict`` (the last metrics row).

    Args:
        config: the trainer's config (an ``AlignmentRunConfig`` subclass); checked before anything loads.
        reward: a reward following the protocol (``reward(images, prompts) -> (B,)``, ``.name``);
            ``None`` loads ``config.reward`` with ``reward.load_reward``.
    """

    #: shown in progress bars and curve titles
    method: str = "alignment"

    def __init__(self, config: AlignmentRunConfig, reward: Callable | None = None) -> None:
        self.config = config
        self.setup = AlignmentSetup(config, reward, method=self.method, check_reward=self.check_reward)

    @property
    def accelerator(self):
        """The run's ``accelerate.Accelerator`` (process index, main process, gathering)."""
        return self.setup.accelerator

    # ------------------------------------------------------- for subclasses
    def check_reward(self, reward: Any) -> None:
        """Refuse a reward this algorithm cannot train on (called before any model loads)."""

    @abstractmethod
    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """One epoch of the algorithm: sample, score, update. Returns its metrics row."""

    def trainer_state(self) -> dict[str, Any]:
        """JSON-able state carried across epochs, saved in each checkpoint."""
        return {}

    def load_trainer_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`trainer_state` returned."""

    def close(self) -> None:
        """Release the trainer's own resources (worker threads)."""

    # ---------------------------------------------------------------- loop
    def evaluate(self, epoch: int) -> dict[str, float]:
        """Held-out evaluation (see :meth:`AlignmentSetup.evaluate`)."""
        return self.setup.evaluate(epoch)

    def save_checkpoint(self, epochs_done: int) -> None:
        self.setup.save_checkpoint(epochs_done, self.trainer_state())

    def train(self) -> dict[str, Any]:
        """Run the remaining epochs (resuming if ``resume_from`` says so); returns the last row logged."""
        cfg, s = self.config, self.setup
        start, state = s.resume()
        if s.resume_dir is not None:
            self.load_trainer_state(state)
        s.open_tracker(resume_step=start - 1 if s.resume_dir is not None else None)
        final: dict[str, Any] = {}
        try:
            for epoch in s.progress(range(start, cfg.num_epochs), initial=start):
                row: dict[str, Any] = {"epoch": epoch}
                if cfg.eval_every and epoch % cfg.eval_every == 0:
                    row.update(self.evaluate(epoch))
                row.update(self.train_epoch(epoch))
                final = s.log(row, epoch)
                if cfg.checkpoint_every and (epoch + 1) % cfg.checkpoint_every == 0 and epoch + 1 < cfg.num_epochs:
                    self.save_checkpoint(epoch + 1)
            if start < cfg.num_epochs:
                if cfg.eval_every:
                    final = {**final, **s.log({"epoch": cfg.num_epochs, **self.evaluate(cfg.num_epochs)},
                                              cfg.num_epochs)}
                self.save_checkpoint(cfg.num_epochs)
            s.finish()  # all processes meet here, so none exits while another still trains
        finally:
            self.close()
            s.close()  # no collective call: an error on one process must not wait for the others
        return final
