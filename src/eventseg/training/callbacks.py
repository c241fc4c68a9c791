"""Training callbacks: reproducible randomness per step, early stopping that waits for the
model to beat its constant guess, and the end-of-run summary."""

from __future__ import annotations

import math
import time

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint


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


class BaselineEarlyStopping(EarlyStopping):
    """Early stopping whose patience does not count while the model is no better than its
    constant guess.

    `baseline` (set before fit; None: plain early stopping) is the constant guess's value of
    `baseline_monitor` on the validation customers. While that metric is not below it, an epoch
    without improvement costs no patience, so a slow start (a small data set, a few steps per
    epoch) can never end training at a model that predicts less than the mean does; the
    schedule's epoch cap still ends it. Below the baseline it is Lightning's EarlyStopping.
    """

    def __init__(self, *args, baseline_monitor: str = "val/loss_future", baseline: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.baseline_monitor = baseline_monitor
        self.baseline = baseline
        self._guarded: float | None = None

    def _run_early_stopping_check(self, trainer: L.Trainer) -> None:
        value = trainer.callback_metrics.get(self.baseline_monitor)
        self._guarded = None if value is None else float(value)
        super()._run_early_stopping_check(trainer)

    def waiting_for_baseline(self) -> bool:
        """True while the guarded metric is known and not below the baseline."""
        return self.baseline is not None and self._guarded is not None and math.isfinite(self._guarded) \
            and not self._guarded < self.baseline

    def _evaluate_stopping_criteria(self, current: torch.Tensor) -> tuple[bool, str | None]:
        if not self.waiting_for_baseline() or not torch.isfinite(current) or (
                self.divergence_threshold is not None and self.monitor_op(-current, -self.divergence_threshold)):
            return super()._evaluate_stopping_criteria(current)
        reason = None
        if self.monitor_op(current - self.min_delta, self.best_score.to(current.device)):
            reason = self._improvement_message(current)
            self.best_score, self.wait_count = current, 0
        return False, reason  # no better than the constant guess yet: patience does not count


def future_comparison(metrics: dict, constant: dict) -> dict:
    """Each future term's validation loss beside its constant guess's, and whether it beats it.

    metrics: validation metrics ("val/loss_future_count", ...); constant: `constant_baseline`'s
    ("loss_future_count", ...). {"terms": {term: {"val_loss", "constant", "beats_constant",
    "val_loss_abs", "constant_abs"}}, "beats_constant_guess": val/loss_future < its constant}.
    """
    if not constant or "val/loss_future" not in metrics:
        return {}
    terms = {}
    for key, base in constant.items():
        name = key.removeprefix("loss_")
        if key.endswith("_abs") or name == "future" or f"val/{key}" not in metrics:
            continue
        value = float(metrics[f"val/{key}"])
        row = {"val_loss": value, "constant": float(base), "beats_constant": value < base}
        if f"{key}_abs" in constant and f"val/{key}_abs" in metrics:
            row.update(val_loss_abs=float(metrics[f"val/{key}_abs"]), constant_abs=float(constant[f"{key}_abs"]))
        terms[name] = row
    total, base = float(metrics["val/loss_future"]), float(constant["loss_future"])
    out = {"terms": terms, "val_loss": total, "constant": base, "beats_constant_guess": total < base}
    if "loss_future_abs" in constant and "val/loss_future_abs" in metrics:
        out.update(val_loss_abs=float(metrics["val/loss_future_abs"]), constant_abs=float(constant["loss_future_abs"]))
    return out


def comparison_lines(comparison: dict) -> list[str]:
    """The console table of `future_comparison`."""
    if not comparison:
        return []
    rows = [("future (total)", comparison["val_loss"], comparison["constant"], comparison["beats_constant_guess"])]
    rows += [(name, r["val_loss"], r["constant"], r["beats_constant"]) for name, r in comparison["terms"].items()]
    width = max(len(r[0]) for r in rows)
    lines = ["", "future objective vs its constant guess (validation, best epoch; normalised: 1.0 = the constant)",
             f"  {'term':<{width}}  {'model':>8}  {'constant':>8}  beats"]
    lines += [f"  {name:<{width}}  {value:8.4f}  {base:8.4f}  {'yes' if ok else 'NO'}" for name, value, base, ok in rows]
    verdict = "yes" if comparison["beats_constant_guess"] else "NO: the embeddings predict less than the mean does"
    return lines + [f"  beats_constant_guess: {verdict}"]


class TrainingSummary(Callback):
    """Times training epochs (validation excluded), keeps the validation metrics of the best
    epoch (the one best.ckpt holds) and prints one screen at the end of fit.

    `constant` (set before fit): the future objective's constant-guess losses on the validation
    customers, printed beside the best epoch's; `budget`: the training schedule, printed with it.
    """

    def __init__(self, monitor: str = "val/loss"):
        self.monitor = monitor
        self.train_seconds = 0.0
        self.summary: dict = {}
        self.best_metrics: dict = {}
        self.constant: dict = {}
        self.budget: dict = {}
        self._epoch_start = self._val_start = None

    def state_dict(self) -> dict:
        return {"best_metrics": dict(self.best_metrics)}  # a resumed run still reports the best epoch

    def load_state_dict(self, state_dict: dict) -> None:
        self.best_metrics = dict(state_dict.get("best_metrics", {}))

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_start = time.perf_counter()

    def on_validation_start(self, trainer, pl_module) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._epoch_start is not None and self._val_start is not None and not trainer.sanity_checking:
            self._epoch_start += time.perf_counter() - self._val_start  # validation time is not training time
        loss = trainer.callback_metrics.get(self.monitor)
        if not trainer.sanity_checking and loss is not None and math.isfinite(float(loss)):
            best = self.best_metrics.get(self.monitor)
            if best is None or float(loss) < best:
                self.best_metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
                self.best_metrics["epoch"] = trainer.current_epoch + 1
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
        comparison = future_comparison(self.best_metrics, self.constant)
        if comparison:
            self.summary["future_vs_constant"] = comparison
            self.summary["beats_constant_guess"] = comparison["beats_constant_guess"]
        if trainer.is_global_zero:
            shown = {k: v for k, v in self.summary.items() if k != "future_vs_constant"}
            if self.budget:
                shown["budget"] = ", ".join(f"{k} {v}" for k, v in self.budget.items() if k in ("batch_size", "epochs", "steps_per_epoch", "planned_steps"))
            width = max(len(k) for k in shown)
            lines = [f"  {k:<{width}}  {v}" for k, v in shown.items()]
            print("\n".join(["", "training summary", *lines, *comparison_lines(comparison), ""]))
