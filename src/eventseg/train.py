"""Stage 2, train: fit the sequence autoencoder on a prepared dataset. `train(cfg)` is pure:
config in, metrics and objects out; scripts/train.py only composes the config."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from eventseg.artifacts import write_json
from eventseg.checkpoint import load_checkpoint, data_state
from eventseg.data.datamodule import EventDataModule
from eventseg.data.split import VAL
from eventseg.data.store import SequenceStore
from eventseg.models.future import constant_baseline
from eventseg.prepare import PreparedData, prepare_from_config


@dataclass
class TrainResult:
    metrics: dict
    checkpoint: Path | None
    model: L.LightningModule
    datamodule: EventDataModule
    prepared: PreparedData = field(repr=False)


def _is_launcher_child() -> bool:
    """DDP re-runs the script once per extra device; those copies must not redo shared work."""
    return int(os.environ.get("LOCAL_RANK", "0")) > 0 or int(os.environ.get("NODE_RANK", "0")) > 0


def prepared_data(cfg: DictConfig) -> PreparedData:
    prepared_dir = Path(cfg.out_dir) / "prepared"
    if not _is_launcher_child():
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


def train(cfg: DictConfig, prepared: PreparedData | None = None) -> TrainResult:
    """Train on `prepared`, or prepare the configured data first."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.get("ckpt_path"):
        load_checkpoint(cfg.ckpt_path)  # a clear error now beats a KeyError deep inside Lightning
    prepared = prepared if prepared is not None else prepared_data(cfg)
    model = build_model(cfg, prepared)
    datamodule = EventDataModule(prepared.store, prepared.splits, seed=cfg.seed, **cfg.loader)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    trainer = L.Trainer(**cfg.trainer, callbacks=callbacks, logger=loggers or False)
    if cfg.get("compile"):
        model.compile()  # compiles forward in place, so checkpoint keys stay those of the plain module
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))

    summary = next((c.summary for c in callbacks if hasattr(c, "summary")), {})
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    metrics.update(summary)
    metrics["trivial_baseline"] = trivial_baseline(prepared.store, prepared.splits)
    if getattr(model, "future_head", None) is not None:
        metrics["trivial_baseline"].update(constant_baseline(model.future_head, datamodule.val_dataloader()))
    checkpoint = summary.get("best_checkpoint") or summary.get("last_checkpoint")
    if trainer.is_global_zero and not cfg.trainer.get("fast_dev_run"):
        write_json(metrics, Path(cfg.out_dir) / "train_metrics.json")
    return TrainResult(metrics, Path(checkpoint) if checkpoint else None, model, datamodule, prepared)


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
