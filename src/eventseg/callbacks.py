"""Training callbacks: reproducible randomness per step, and the end-of-run summary."""

from __future__ import annotations

import time

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint


class StepSeed(Callback):
    """Seed the global RNG from (seed, global step, rank) before every training step.

    Dropout and input corruption then depend only on the step, not on what ran before, so a
    run resumed from a mid-epoch checkpoint draws exactly what the uninterrupted run drew.
    """

    def __init__(self, seed: int = 0):
        self.seed = seed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        step_seed = (self.seed * 1_000_003 + trainer.global_step * 97 + trainer.global_rank) % (2**63)
        torch.manual_seed(step_seed)


class RunIdentity(Callback):
    """Write what this training is (prepared data hash + model settings) into every checkpoint,
    so resuming can refuse a checkpoint that another run wrote."""

    KEY = "eventseg_run"

    def __init__(self, identity: dict):
        self.identity = identity

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint[self.KEY] = self.identity


class TrainingSummary(Callback):
    """Times training epochs (validation excluded) and prints one screen at the end of fit."""

    def __init__(self):
        self.train_seconds = 0.0
        self.summary: dict = {}
        self._epoch_start = self._val_start = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_start = time.perf_counter()

    def on_validation_start(self, trainer, pl_module) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._epoch_start is not None and self._val_start is not None and not trainer.sanity_checking:
            self._epoch_start += time.perf_counter() - self._val_start  # validation time is not training time
        loss = trainer.callback_metrics.get("val/loss")
        if trainer.is_global_zero and not trainer.sanity_checking and loss is not None:
            # one line per epoch: the log shows progress even with the progress bar off
            print(f"[train] epoch {trainer.current_epoch + 1}/{trainer.max_epochs}  step {trainer.global_step}  "
                  f"val/loss {float(loss):.4f}", flush=True)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._epoch_start is not None:
            self.train_seconds += time.perf_counter() - self._epoch_start
            self._epoch_start = None

    def on_fit_end(self, trainer: L.Trainer, pl_module) -> None:
        ckpt = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
        best = ckpt.best_model_score if ckpt is not None else None
        events = getattr(pl_module, "events_seen", 0)
        self.summary = {
            "epochs": trainer.current_epoch,
            "global_steps": trainer.global_step,
            "best_val_loss": None if best is None else float(best),
            "train_seconds": round(self.train_seconds, 2),
            "events_trained": events,
            "events_per_second": round(events / self.train_seconds) if self.train_seconds > 0 else None,
            "best_checkpoint": (ckpt.best_model_path or None) if ckpt else None,
            "last_checkpoint": (ckpt.last_model_path or None) if ckpt else None,
        }
        if trainer.is_global_zero:
            width = max(len(k) for k in self.summary)
            lines = [f"  {k:<{width}}  {v}" for k, v in self.summary.items()]
            print("\n".join(["", "training summary", *lines, ""]))
