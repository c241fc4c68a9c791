"""Stage 2, train: fit the sequence autoencoder on a prepared dataset. `train(cfg)` is pure:
config in, metrics and objects out; scripts/train.py only composes the config."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from eventseg.artifacts import write_json
from eventseg.checkpoint import CheckpointError, data_state, load_checkpoint, read_run_identity
from eventseg.config import check_training_config, plain
from eventseg.data.datamodule import EventDataModule
from eventseg.data.split import VAL
from eventseg.data.store import SequenceStore
from eventseg.callbacks import RunIdentity
from eventseg.models.future import constant_baseline
from eventseg.prepare import PreparedData, prepare_from_config
from eventseg.runs import combined_hash


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
    prepared_dir = Path(cfg.out_dir) / "prepared"
    if not is_launcher_child():
        prepare_from_config(cfg.data, cfg.out_dir)
    return PreparedData.load(prepared_dir)  # memory-mapped: workers and ranks share pages


def build_model(cfg: DictConfig, prepared: PreparedData) -> L.LightningModule:
    from eventseg.models.autoencoder import SequenceAutoencoder

    options = OmegaConf.to_container(cfg.model, resolve=True)
    options.pop("name", None)
    objective = OmegaConf.to_container(cfg.objective, resolve=True) if cfg.get("objective") else {}
    return SequenceAutoencoder(
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
SCHEDULE_KEYS = ("trainer", "callbacks", "compile")


def train_identity(cfg: DictConfig, prepared_hash: str, keys=IDENTITY_KEYS) -> dict:
    """The prepared data's content hash and the training config, without paths or display settings."""
    config = {k: plain(cfg.get(k)) for k in keys}
    if isinstance(config.get("trainer"), dict):
        config["trainer"] = {k: v for k, v in config["trainer"].items() if k != "enable_progress_bar"}
    if isinstance(config.get("callbacks"), dict) and isinstance(config["callbacks"].get("model_checkpoint"), dict):
        config["callbacks"]["model_checkpoint"] = {k: v for k, v in config["callbacks"]["model_checkpoint"].items() if k != "dirpath"}
    return {"prepared": prepared_hash, "config": config}


def _check_resume(ckpt_path: str, identity: dict) -> None:
    """Refuse to resume from a checkpoint another run (other data or model settings) wrote."""
    load_checkpoint(ckpt_path)  # a clear error now beats a KeyError deep inside Lightning
    saved = read_run_identity(ckpt_path)
    if saved is None:
        raise CheckpointError(f"ckpt_path={ckpt_path} records no run identity (written by an older eventseg): "
                              "it cannot be checked to belong to this run; train without ckpt_path")
    if saved != identity:
        what = "prepared data" if saved.get("prepared") != identity["prepared"] else "training config " + ", ".join(
            sorted(k for k in identity["config"] if saved.get("config", {}).get(k) != identity["config"][k]))
        raise CheckpointError(f"ckpt_path={ckpt_path} belongs to another run (its {what} differs from this one's): "
                              "resume only the run that wrote it, with the same data and settings, or drop ckpt_path")


def checkpoint_dir(cfg: DictConfig) -> Path | None:
    mc = (cfg.get("callbacks") or {}).get("model_checkpoint")
    return Path(mc.dirpath) if mc and mc.get("dirpath") else None


def train(cfg: DictConfig, prepared: PreparedData | None = None) -> TrainResult:
    """Train on `prepared`, or prepare the configured data first."""
    check_training_config(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    prepared = prepared if prepared is not None else prepared_data(cfg)
    prepared_dir = Path(cfg.out_dir) / "prepared"
    identity = train_identity(cfg, prepared_hash(prepared_dir) if prepared_dir.exists() else "in-memory")
    ckpt_dir = checkpoint_dir(cfg)
    if cfg.get("ckpt_path"):
        _check_resume(str(cfg.ckpt_path), identity)
    elif ckpt_dir is not None and ckpt_dir.exists() and not is_launcher_child():
        shutil.rmtree(ckpt_dir)  # this run's own folder: a fresh training replaces it, never best-v1.ckpt
    model = build_model(cfg, prepared)
    datamodule = EventDataModule(prepared.store, prepared.splits, seed=cfg.seed, **cfg.loader)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    callbacks.append(RunIdentity(identity))
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    trainer_options = dict(cfg.trainer)
    if not sys.stdout.isatty():
        trainer_options["enable_progress_bar"] = False  # a log file gets the summary, not bar redraws
    trainer = L.Trainer(**trainer_options, callbacks=callbacks, logger=loggers or False)
    if cfg.get("compile"):
        model.compile()  # compiles forward in place, so checkpoint keys stay those of the plain module
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))

    summary = next((c.summary for c in callbacks if hasattr(c, "summary")), {})
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    metrics.update(summary)
    metrics["trivial_baseline"] = trivial_baseline(prepared.store, prepared.splits)
    if getattr(model, "future_head", None) is not None:
        metrics["trivial_baseline"].update(constant_baseline(model.future_head, datamodule.val_dataloader()))
    for key in ("best_checkpoint", "last_checkpoint"):  # relative to out_dir, so a copied run still finds them
        if metrics.get(key):
            metrics[key] = _relative_to(Path(metrics[key]), Path(cfg.out_dir))
    checkpoint = summary.get("best_checkpoint") or summary.get("last_checkpoint")
    checkpoint = Path(checkpoint) if checkpoint else None
    if trainer.is_global_zero and not cfg.trainer.get("fast_dev_run"):
        write_json(metrics, Path(cfg.out_dir) / "train_metrics.json")
    return TrainResult(metrics, checkpoint, model, datamodule, prepared)


def _relative_to(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def prepared_hash(prepared_dir: Path) -> str:
    """Content of the store, encoders and splits (not the report, which holds timings)."""
    return combined_hash([prepared_dir / "store", prepared_dir / "encoders.json", prepared_dir / "splits.npy"])


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
