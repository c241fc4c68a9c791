"""Supervised fine-tuning: the run's trained encoder and a small head over all binary labels,
trained end to end on the labels (propensity.finetune; the `finetuned` candidate).

The self-supervised encoder learns what predicts a customer's *own* next events; a label such as
"buys in the next 30 days" may need other parts of the history. Fine-tuning lets the labels
reshape the encoder (the CoLES paper reports 0.827 against 0.817 for frozen embeddings on bank
churn). Here it is one more candidate: its logits are scored by the same selection as every
other candidate, so it publishes only where it wins on validation. The run's exported embeddings
and segments keep the self-supervised encoder: segments describe behaviour, not one label.

The head reads z and, beside it, the run's other representation columns (the standardised
aggregates of the hybrid), so the fine-tuned network starts from everything the frozen heads see.
Early stopping uses a seeded slice of the training customers; validation stays unseen.
Saved as JSON plus tensors (torch.load(weights_only=True)); the encoder's architecture comes
from the run's own checkpoint, so nothing in the saved files can run code.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted
from torch import nn
from torch.nn import functional as F

from eventseg.data.store import SequenceStore
from eventseg.embedding.embed import length_batches, resolve_device
from eventseg.propensity.persistence import REMEDY, HeadsFileError
from eventseg.run.artifacts import atomic_path
from eventseg.run.config import check_known_settings, plain
from eventseg.run.errors import ConfigError

FINETUNE_DIR = "finetune"
FORMAT = "eventseg.finetuned_encoder/1"
PREDICT_BATCH = 512


class FineTunedNetwork(nn.Module):
    """encoder(events) -> z; [z, side columns] -> hidden layers -> one logit per binary label."""

    def __init__(self, encoder: nn.Module, n_side: int, n_labels: int, hidden=(64,), dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        layers, width = [], int(encoder.bottleneck.out_features) + int(n_side)
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU(), nn.Dropout(float(dropout))]
            width = int(h)
        layers.append(nn.Linear(width, int(n_labels)))
        self.head = nn.Sequential(*layers)

    def forward(self, batch, side: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.encoder.encode(batch), side.to(torch.float32)], dim=1))


def encoder_only(model: nn.Module) -> nn.Module:
    """A copy of the trained encoder without its decoder and objective heads (never trained here)."""
    encoder = copy.deepcopy(model).cpu()
    encoder.decoder = encoder.heads = encoder.future_head = None
    return encoder


class FineTunedEncoder(BaseEstimator):
    """Fine-tune a trained encoder with a multi-label head (scikit-learn estimator contract).

    encoder_lr is small (the encoder is already trained; a large step forgets it), head_lr is
    the usual MLP rate. max_epochs is an upper bound; early stopping on `validation_fraction` of
    the training customers decides, and the best epoch's weights are kept.
    """

    def __init__(self, encoder_lr: float = 3e-4, head_lr: float = 1e-3, weight_decay: float = 0.01, hidden=(64,),
                 dropout: float = 0.1, max_epochs: int = 20, patience: int = 3, batch_size: int = 64,
                 validation_fraction: float = 0.1, device: str = "auto", seed: int = 0):
        self.encoder_lr = encoder_lr
        self.head_lr = head_lr
        self.weight_decay = weight_decay
        self.hidden = hidden
        self.dropout = dropout
        self.max_epochs = max_epochs
        self.patience = patience
        self.batch_size = batch_size
        self.validation_fraction = validation_fraction
        self.device = device
        self.seed = seed

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None, seed: int = 0) -> "FineTunedEncoder":
        """From the `propensity.finetune` config block (`enabled` is the pipeline's switch, not a parameter)."""
        cfg = {k: v for k, v in plain(cfg or {}).items() if k != "enabled"}
        check_known_settings(cfg, ["enabled", *cls._get_param_names()], "propensity.finetune")
        tuner = cls(**{"seed": seed, **cfg})
        tuner.check_params()
        return tuner

    def check_params(self) -> None:
        if not float(self.encoder_lr) >= 0:  # 0 keeps the encoder frozen: the control for what fine-tuning adds
            raise ConfigError(f"propensity.finetune.encoder_lr must be >= 0, got {self.encoder_lr}")
        for name in ("head_lr", "max_epochs", "patience", "batch_size"):
            if not float(getattr(self, name)) > 0:
                raise ConfigError(f"propensity.finetune.{name} must be > 0, got {getattr(self, name)}")
        if not 0 < float(self.validation_fraction) < 1:
            raise ConfigError(f"propensity.finetune.validation_fraction must be in (0, 1), got {self.validation_fraction}")

    # fitting ----------------------------------------------------------------------------------

    def fit(self, model: nn.Module, store: SequenceStore, rows, Y: np.ndarray, side: np.ndarray | None = None,
            labels=None) -> "FineTunedEncoder":
        """Fine-tune on store rows `rows` with labels Y [len(rows), n_labels] (NaN: unknown).

        `side`: extra columns for every store row [n_customers, k] (None: z alone).
        """
        self.check_params()
        started = time.perf_counter()
        rows, Y = np.asarray(rows, dtype=np.int64), np.asarray(Y, dtype=np.float32)
        if Y.ndim != 2 or len(Y) != len(rows):
            raise ValueError(f"Y must be [len(rows), labels], got {Y.shape} for {len(rows)} rows")
        side = self._side(store, side)
        labelled = ~np.isnan(Y).all(axis=1)
        rows, Y = rows[labelled], Y[labelled]
        rng = np.random.default_rng(int(self.seed))
        order = rng.permutation(len(rows))
        n_stop = max(1, int(round(float(self.validation_fraction) * len(rows))))
        if len(rows) - n_stop < 1:
            raise ValueError(f"fine-tuning needs labelled training customers; got {len(rows)}")
        stop, fit = order[:n_stop], order[n_stop:]
        device = resolve_device(self.device)
        torch.manual_seed(int(self.seed))
        self.labels_ = [str(c) for c in labels] if labels is not None else [f"y{j}" for j in range(Y.shape[1])]
        self.n_side_ = int(side.shape[1])
        network = FineTunedNetwork(encoder_only(model), self.n_side_, Y.shape[1], self.hidden, self.dropout).to(device)
        optimiser = torch.optim.AdamW(
            [{"params": network.encoder.parameters(), "lr": float(self.encoder_lr)},
             {"params": network.head.parameters(), "lr": float(self.head_lr)}], weight_decay=float(self.weight_decay))
        targets, known = torch.from_numpy(np.nan_to_num(Y)), torch.from_numpy(~np.isnan(Y)).float()

        def loss_of(logits, at):
            per = F.binary_cross_entropy_with_logits(logits, targets[at].to(device), reduction="none") * known[at].to(device)
            return per.sum() / known[at].to(device).sum().clamp_min(1.0)

        def stop_loss() -> float:
            with torch.no_grad():
                logits = torch.from_numpy(self._logits(network, store, side, rows[stop], device))
                return float(loss_of(logits.to(device), stop))

        start = best = stop_loss()
        best_state, best_epoch, waited, epochs = copy.deepcopy(network.state_dict()), 0, 0, 0
        for epoch in range(1, int(self.max_epochs) + 1):
            network.train()
            shuffled = rng.permutation(fit)
            for i in range(0, len(shuffled), int(self.batch_size)):
                at = np.sort(shuffled[i:i + int(self.batch_size)])
                batch = store.batch(rows[at]).apply(lambda t: t.to(device))
                loss = loss_of(network(batch, side[rows[at]].to(device)), at)
                optimiser.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(network.parameters(), 1.0)
                optimiser.step()
            epochs, current = epoch, stop_loss()
            if current < best - 1e-4:
                best, best_state, best_epoch, waited = current, copy.deepcopy(network.state_dict()), epoch, 0
            else:
                waited += 1
                if waited >= int(self.patience):
                    break
        network.load_state_dict(best_state)
        self.network_ = network.cpu().eval()
        self.fit_info_ = {"epochs_run": epochs, "best_epoch": best_epoch, "start_stop_loss": round(start, 5),
                          "best_stop_loss": round(best, 5), "train_rows": int(len(fit)), "early_stopping_rows": int(n_stop),
                          "side_columns": self.n_side_, "seconds": round(time.perf_counter() - started, 3)}
        return self

    # prediction -------------------------------------------------------------------------------

    @staticmethod
    def _side(store: SequenceStore, side) -> torch.Tensor:
        side = np.zeros((store.n_customers, 0), np.float32) if side is None else np.asarray(side, dtype=np.float32)
        if side.ndim != 2 or len(side) != store.n_customers:
            raise ValueError(f"side columns must be [customers, k] for the store's {store.n_customers} customers, got {side.shape}")
        if not np.isfinite(side).all():
            raise ValueError("side columns hold NaN/infinite values: pass the run's standardised representation columns")
        return torch.from_numpy(np.ascontiguousarray(side))

    @staticmethod
    def _logits(network: FineTunedNetwork, store: SequenceStore, side: torch.Tensor, rows: np.ndarray, device) -> np.ndarray:
        network.eval()
        out = np.empty((len(rows), network.head[-1].out_features), dtype=np.float32)
        position = np.empty(store.n_customers, dtype=np.int64)  # store row -> output row (rows are unique)
        position[rows] = np.arange(len(rows))
        with torch.inference_mode():
            for idx in length_batches(store.lengths, rows, PREDICT_BATCH):
                batch = store.batch(idx).apply(lambda t: t.to(device))
                logits = network(batch, side[idx].to(device)).float().cpu().numpy()
                out[position[idx]] = logits
        return out

    def decision_function(self, store: SequenceStore, side: np.ndarray | None = None) -> np.ndarray:
        """[customers, labels] logits for every customer of `store` (store order)."""
        check_is_fitted(self, "network_")
        side = self._side(store, side)
        if side.shape[1] != self.n_side_:
            raise ValueError(f"side columns: {side.shape[1]} given, the fine-tuned head was fitted on {self.n_side_}")
        rows = np.arange(store.n_customers, dtype=np.int64)
        device = resolve_device(self.device)
        network = self.network_.to(device)
        try:
            return self._logits(network, store, side, rows, device) if len(rows) else np.empty((0, len(self.labels_)), np.float32)
        finally:
            self.network_ = network.cpu()

    # persistence ------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """A directory: finetune.json (parameters, labels, fit facts) and network.pt (tensors only)."""
        check_is_fitted(self, "network_")
        meta = {"format": FORMAT, "params": {**self.get_params(), "hidden": [int(h) for h in self.hidden]},
                "labels": self.labels_, "n_side": self.n_side_, "fit_info": self.fit_info_}
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.mkdir()
            (tmp / "finetune.json").write_text(json.dumps(meta, indent=2))
            torch.save(self.network_.state_dict(), tmp / "network.pt")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, model: nn.Module, device: str | None = None) -> "FineTunedEncoder":
        """Rebuild on the run's own trained `model` (its architecture) and load the saved weights;
        `device` (default: the saved setting) is where decision_function runs."""
        path = Path(path)
        try:
            meta = json.loads((path / "finetune.json").read_text())
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
            tuner = cls(**meta["params"])
            tuner.labels_, tuner.n_side_, tuner.fit_info_ = [str(s) for s in meta["labels"]], int(meta["n_side"]), meta["fit_info"]
            network = FineTunedNetwork(encoder_only(model), tuner.n_side_, len(tuner.labels_), tuner.hidden, tuner.dropout)
            network.load_state_dict(torch.load(path / "network.pt", map_location="cpu", weights_only=True))
        except FileNotFoundError as err:
            raise HeadsFileError(f"{path} lacks {Path(err.filename).name}: the fine-tuned encoder is incomplete. {REMEDY}") from None
        except (KeyError, TypeError, ValueError, RuntimeError, UnicodeDecodeError, pickle.UnpicklingError) as err:
            raise HeadsFileError(f"{path} is not a fine-tuned encoder this eventseg reads ({type(err).__name__}: {err}). "
                                 f"{REMEDY}") from None
        tuner.network_ = network.eval()
        if device is not None:
            tuner.device = device
        return tuner
