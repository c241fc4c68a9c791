"""The train stage: fit the sequence encoder on a prepared dataset. `train(cfg)` is pure:
config in, metrics and objects out; eventseg train only composes the config."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from eventseg.data.datamodule import EventDataModule
from eventseg.data.prepare import PreparedData, prepare_from_config
from eventseg.data.split import TRAIN, VAL
from eventseg.data.store import SequenceStore
from eventseg.objectives.future import constant_baseline, constant_guess, constant_term_losses
from eventseg.run.artifacts import write_json
from eventseg.run.config import check_training_config, plain
from eventseg.run.errors import ConfigError
from eventseg.run.layout import RunLayout, entry_name
from eventseg.run.manifest import combined_hash
from eventseg.training.callbacks import BaselineEarlyStopping, RunIdentity, TrainingSummary
from eventseg.training.checkpoint import CheckpointError, data_state, load_checkpoint, read_run_identity
from eventseg.training.store import CHECKPOINT, ModelStore, verified_checkpoint


@dataclass
class TrainResult:
    metrics: dict
    checkpoint: Path | None
    model: L.LightningModule
    datamodule: EventDataModule
    prepared: PreparedData = field(repr=False)


def is_launcher_child() -> bool:
    """DDP re-runs the script once per extra device; those copies must not redo shared work."""
    return int(os.environ.get("LOCAL_RANK", "0")) > 0 or int(os.environ.get("NODE_RANK", "0")) > 0


def prepared_data(cfg: DictConfig) -> PreparedData:
    prepared_dir = RunLayout(cfg.out_dir).prepared
    if not is_launcher_child():
        prepare_from_config(cfg.data, cfg.out_dir)
    return PreparedData.load(prepared_dir)  # memory-mapped: workers and ranks share pages


def build_model(cfg_model, cfg_objective, prepared: PreparedData) -> L.LightningModule:
    """The training module from the `model` and `objective` config groups and the prepared data's encoders."""
    from eventseg.training.module import SequenceEncoderModule

    options = dict(plain(cfg_model))
    options.pop("name", None)
    objective = plain(cfg_objective) or {}
    return SequenceEncoderModule(
        feature_spec=prepared.encoders.feature_spec.to_dict(),
        data_state=data_state(prepared.encoders, prepared.store.max_len),
        objectives=objective.get("weights"),
        contrastive=objective.get("contrastive"),
        future=objective.get("future"),
        **options,
    )


# What makes two trainings the same model: resuming requires the first set to match; reusing a
# finished model in another run folder requires both (the trainer's schedule changes the result).
IDENTITY_KEYS = ("model", "objective", "loader", "seed")
SCHEDULE_KEYS = ("trainer", "callbacks", "compile", "trainer_budget")


def train_identity(cfg: DictConfig, prepared_hash: str, keys=IDENTITY_KEYS) -> dict:
    """The prepared data's content hash and the training config, without paths or display settings."""
    config = {k: plain(cfg.get(k)) for k in keys}
    if isinstance(config.get("trainer"), dict):
        config["trainer"] = {k: v for k, v in config["trainer"].items() if k != "enable_progress_bar"}
    if isinstance(config.get("callbacks"), dict) and isinstance(config["callbacks"].get("model_checkpoint"), dict):
        config["callbacks"]["model_checkpoint"] = {k: v for k, v in config["callbacks"]["model_checkpoint"].items() if k != "dirpath"}
    return {"prepared": prepared_hash, "config": config}


def model_identity(cfg: DictConfig, prepared_dir: Path) -> dict:
    """What a stored model is: the prepared data's content and every setting that changes the
    training (the fingerprint of its entry in the model store)."""
    return train_identity(cfg, prepared_hash(prepared_dir), keys=IDENTITY_KEYS + SCHEDULE_KEYS)


def _check_resume(ckpt_path: str, identity: dict) -> None:
    """Refuse to resume from a checkpoint another run (other data or model settings) wrote."""
    load_checkpoint(verified_checkpoint(ckpt_path))  # a clear error now beats a KeyError deep inside Lightning
    saved = read_run_identity(ckpt_path)
    if saved is None:
        raise CheckpointError(f"ckpt_path={ckpt_path} records no run identity (written by an older eventseg): "
                              "it cannot be checked to belong to this run; train without ckpt_path")
    if saved != identity:
        what = "prepared data" if saved.get("prepared") != identity["prepared"] else "training config " + ", ".join(
            sorted(k for k in identity["config"] if saved.get("config", {}).get(k) != identity["config"][k]))
        raise CheckpointError(f"ckpt_path={ckpt_path} belongs to another run (its {what} differs from this one's): "
                              "resume only the run that wrote it, with the same data and settings, or drop ckpt_path")


def checkpoint_dir(cfg_callbacks) -> Path | None:
    """Where the model-checkpoint callback writes while training runs (None without one)."""
    mc = (cfg_callbacks or {}).get("model_checkpoint")
    return Path(mc.dirpath) if mc and mc.get("dirpath") else None


# How unset trainer.max_epochs / loader.batch_size are chosen (configs/trainer/default.yaml).
BUDGET_DEFAULTS = {"auto": True, "batch_size": 256, "epochs": 10, "min_steps": 1000, "max_epochs": 100,
                   "min_batches_per_epoch": 50, "min_batch_size": 32}


def budget_options(cfg_budget) -> dict:
    """trainer_budget with defaults filled in; a bad value is a ConfigError before any work."""
    options = {**BUDGET_DEFAULTS, **(plain(cfg_budget) or {})}
    unknown = set(options) - set(BUDGET_DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown trainer_budget keys {sorted(unknown)}; known: {sorted(BUDGET_DEFAULTS)}")
    if not isinstance(options["auto"], bool):
        raise ConfigError(f"trainer_budget.auto={options['auto']!r} must be true or false")
    for key in ("batch_size", "epochs", "max_epochs", "min_batches_per_epoch", "min_batch_size", "min_steps"):
        value, least = options[key], 0 if key == "min_steps" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(f"trainer_budget.{key}={value!r} must be an integer >= {least} (default {BUDGET_DEFAULTS[key]})")
    return options


def world_size(trainer_cfg) -> int:
    """Processes a DDP run splits each epoch's batches between (1 without DDP)."""
    trainer_cfg = trainer_cfg or {}
    if "ddp" not in str(trainer_cfg.get("strategy", "")):
        return 1
    devices = trainer_cfg.get("devices", 1)
    if isinstance(devices, int) and devices > 0:
        n = devices
    elif isinstance(devices, str) and devices.isdigit():
        n = int(devices)
    elif OmegaConf.is_list(devices) or isinstance(devices, (list, tuple)):
        n = len(devices)
    else:  # "auto" / -1: every GPU, or one CPU process
        n = torch.cuda.device_count() if torch.cuda.is_available() and str(trainer_cfg.get("accelerator")) != "cpu" else 1
    return max(1, n) * int(trainer_cfg.get("num_nodes", 1) or 1)


def _batches_per_epoch(n_customers: int, batch_size: int, world: int, limit) -> int:
    batches = math.ceil(math.ceil(n_customers / batch_size) / world)
    if isinstance(limit, int) and not isinstance(limit, bool):
        batches = min(batches, limit)
    elif isinstance(limit, float) and limit < 1.0:
        batches = max(1, int(batches * limit))
    return max(1, batches)


def training_budget(cfg: DictConfig, n_train: int, world: int = 1) -> dict:
    """The batch size and number of epochs this training runs with.

    A number set in loader.batch_size or trainer.max_epochs is used as it is. Left unset (null,
    the default), it comes from trainer_budget and the number of training customers: the batch
    is trainer_budget.batch_size, lowered (to no less than min_batch_size) until an epoch has
    min_batches_per_epoch batches; the epochs are trainer_budget.epochs, raised (to at most
    max_epochs) until training runs min_steps optimizer steps. With the defaults a 16,000-customer
    training set keeps batch 256 and gets up to 16 epochs (1,008 steps); a 2,600-customer one gets
    batch 52 and up to 20 epochs (1,020 steps) instead of 10 epochs of 11 batches. Planned on
    world_size ranks, each taking its share of the batches. trainer_budget.auto=false: the unset
    ones are trainer_budget.batch_size and .epochs, as they are. Early stopping still ends training
    sooner (see BaselineEarlyStopping).
    """
    options = budget_options(cfg.get("trainer_budget"))
    loader, trainer_cfg = cfg.get("loader") or {}, cfg.get("trainer") or {}
    n = max(1, int(n_train))
    batch, epochs = loader.get("batch_size"), trainer_cfg.get("max_epochs")
    out = {"auto": options["auto"], "train_customers": int(n_train), "world_size": world,
           "batch_size_from": "loader.batch_size" if batch is not None else "trainer_budget",
           "epochs_from": "trainer.max_epochs" if epochs is not None else "trainer_budget"}
    if batch is None:
        batch = options["batch_size"]
        if options["auto"]:
            wanted = n // (options["min_batches_per_epoch"] * world)
            batch = min(batch, max(options["min_batch_size"], wanted))
    per_epoch = _batches_per_epoch(n, int(batch), world, trainer_cfg.get("limit_train_batches"))
    if epochs is None:
        epochs = options["epochs"]
        if options["auto"]:
            epochs = min(options["max_epochs"], max(epochs, math.ceil(options["min_steps"] / per_epoch)))
    out.update(batch_size=int(batch), epochs=int(epochs), steps_per_epoch=per_epoch, planned_steps=per_epoch * int(epochs),
               min_steps=options["min_steps"] if options["auto"] else None)
    return out


def _with_budget(cfg: DictConfig, budget: dict) -> DictConfig:
    """cfg with the batch size and epochs the budget chose written in (what the run really uses)."""
    run_cfg = cfg.copy()
    OmegaConf.update(run_cfg, "loader.batch_size", budget["batch_size"], force_add=True)
    OmegaConf.update(run_cfg, "trainer.max_epochs", budget["epochs"], force_add=True)
    return run_cfg


def _budget_line(budget: dict) -> str:
    chosen = [what for what, key in (("batch", "batch_size_from"), ("epochs", "epochs_from")) if budget[key] == "trainer_budget"]
    if not chosen:
        how = "both as set"
    elif not budget["auto"]:
        how = f"{' and '.join(chosen)} from trainer_budget, auto=false"
    else:
        how = (f"{' and '.join(chosen)} chosen for {budget['train_customers']:,} training customers, trainer_budget.min_steps="
               f"{budget['min_steps']}; set loader.batch_size / trainer.max_epochs, or trainer_budget.auto=false, to fix them")
    return (f"[train] budget: batch {budget['batch_size']}, {budget['steps_per_epoch']} steps per epoch, "
            f"up to {budget['epochs']} epochs = {budget['planned_steps']:,} steps ({how})")


def train(cfg: DictConfig, prepared: PreparedData | None = None, *, prepared_dir: str | os.PathLike | None = None) -> TrainResult:
    """Train on `prepared` (saved in `prepared_dir`, by default `<out_dir>/prepared`), or prepare
    the configured data first.

    The batch size and epochs come from `training_budget`; with the future objective, each
    term is scaled by its constant guess's loss on the training customers, and early stopping
    waits until the model beats its constant guess on the validation customers. The best
    checkpoint goes to the model store (`paths.checkpoints_dir`, eventseg.training.store) and
    train_metrics.json names its entry; `<out_dir>/checkpoints/` holds the checkpoints only while
    training (last.ckpt: the resume point of an interrupted run, `ckpt_path=`).
    """
    check_training_config(cfg)
    budget_options(cfg.get("trainer_budget"))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    prepared = prepared if prepared is not None else prepared_data(cfg)
    prepared_dir = Path(prepared_dir) if prepared_dir is not None else RunLayout(cfg.out_dir).prepared
    stored_as = model_identity(cfg, prepared_dir) if prepared_dir.exists() else None  # in memory: not stored
    store = ModelStore(cfg.paths.checkpoints_dir)
    budget = training_budget(cfg, int((prepared.splits == TRAIN).sum()), world_size(cfg.get("trainer")))
    cfg = _with_budget(cfg, budget)
    identity = train_identity(cfg, stored_as["prepared"] if stored_as else "in-memory")
    ckpt_dir = checkpoint_dir(cfg.get("callbacks"))
    if cfg.get("ckpt_path"):
        _check_resume(str(cfg.ckpt_path), identity)
    elif ckpt_dir is not None and ckpt_dir.exists() and not is_launcher_child():
        shutil.rmtree(ckpt_dir)  # this run's own folder: a fresh training replaces it, never best-v1.ckpt
    model = build_model(cfg.model, cfg.get("objective"), prepared)
    datamodule = EventDataModule(prepared.store, prepared.splits, seed=cfg.seed, **cfg.loader)
    constant: dict = {}
    head = getattr(model, "future_head", None)
    if head is not None:
        # before training: the constant guess (the training customers' mean target), its loss on
        # them (the scales the loss divides by) and on the validation customers (the bar the model
        # must clear, for early stopping and the summary)
        guess = constant_guess(head, datamodule.eval_dataloader(TRAIN))
        head.set_term_scale(constant_term_losses(head, datamodule.eval_dataloader(TRAIN), guess=guess))
        constant = constant_baseline(head, datamodule.val_dataloader(), guess=guess)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    callbacks.append(RunIdentity(identity))
    for c in callbacks:
        if isinstance(c, BaselineEarlyStopping):
            c.baseline = constant.get(c.baseline_monitor.removeprefix("val/"))
        if isinstance(c, TrainingSummary):
            c.constant, c.budget = constant, budget
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    trainer_options = dict(cfg.trainer)
    if not sys.stdout.isatty():
        trainer_options["enable_progress_bar"] = False  # a log file gets the summary, not bar redraws
    trainer = L.Trainer(**trainer_options, callbacks=callbacks, logger=loggers or False)
    if trainer.is_global_zero and not cfg.trainer.get("fast_dev_run"):
        print(_budget_line(budget), flush=True)
    if cfg.get("compile"):
        model.compile()  # compiles forward in place, so checkpoint keys stay those of the plain module
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))

    summary_cb = next((c for c in callbacks if isinstance(c, TrainingSummary)), None)
    summary = summary_cb.summary if summary_cb is not None else {}
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    metrics.update(summary)
    metrics["budget"] = budget
    if summary_cb is not None and summary_cb.best_metrics:
        metrics["best_epoch"] = summary_cb.best_metrics
    metrics["trivial_baseline"] = trivial_baseline(prepared.store, prepared.splits)
    metrics["trivial_baseline"].update(constant)
    comparison = summary.get("future_vs_constant")
    if comparison and not comparison["beats_constant_guess"] and trainer.is_global_zero and not cfg.trainer.get("fast_dev_run"):
        warnings.warn(_no_better_than_constant(comparison, budget), stacklevel=2)
    best, last = metrics.pop("best_checkpoint", None), metrics.pop("last_checkpoint", None)
    checkpoint = Path(best or last) if best or last else None
    if trainer.is_global_zero and not cfg.trainer.get("fast_dev_run"):
        if best and stored_as is not None:
            metrics = store.publish(stored_as, Path(best), metrics)
            checkpoint = store.entry(stored_as) / CHECKPOINT
            for done in {best, last} - {None}:  # training is over: nothing left to resume
                Path(done).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                Path(best).parent.rmdir()
        write_json(metrics, RunLayout(cfg.out_dir).train_metrics)
    return TrainResult(metrics, checkpoint, model, datamodule, prepared)


def _no_better_than_constant(comparison: dict, budget: dict) -> str:
    losing = [f"{name} {r['val_loss']:.3f} vs {r['constant']:.3f}" for name, r in comparison["terms"].items() if not r["beats_constant"]]
    return (f"the trained model does not beat its constant guess on validation: val/loss_future "
            f"{comparison['val_loss']:.4f} vs {comparison['constant']:.4f} for giving every customer the training mean "
            f"(terms that lose: {', '.join(losing) or 'none alone'}), after {budget['planned_steps']:,} planned steps at batch "
            f"{budget['batch_size']}. Its embeddings then say little about what customers do next. Likely fix: more "
            "optimizer steps (trainer_budget.min_steps, trainer.max_epochs) or a smaller loader.batch_size; for a "
            "losing value mix, fewer classes (objective.future.top_k); see future_vs_constant in train_metrics.json")


def prepared_hash(prepared_dir: Path) -> str:
    """Content of the store, encoders and splits (not the report, which holds timings)."""
    parts = (RunLayout.prepared_store, RunLayout.prepared_encoders, RunLayout.prepared_splits)
    return combined_hash([Path(prepared_dir) / entry_name(part) for part in parts])


def trivial_baseline(store: SequenceStore, splits: np.ndarray) -> dict:
    """Validation scores of predicting the most frequent code / the mean for every event.

    Reconstruction accuracy means something only beside this: a model whose per-field
    accuracy does not beat it has put nothing about the customer into the embedding.
    """
    rows = np.concatenate([np.arange(store.offsets[i], store.offsets[i + 1]) for i in np.flatnonzero(splits == VAL)])
    out = {}
    for j, name in enumerate(store.categorical_fields):
        codes = np.asarray(store.categorical[rows, j])
        out[f"acc_{name}"] = float(np.bincount(codes).max() / len(codes))
    values = torch.from_numpy(np.asarray(store.numeric[rows]))
    huber = torch.nn.functional.huber_loss(values, values.mean(0, keepdim=True).expand_as(values), reduction="none").mean(0)
    out.update({f"loss_{name}": float(h) for name, h in zip(store.numeric_features, huber)})
    return out
