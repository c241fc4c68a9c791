"""Propensity heads on frozen customer embeddings, the baselines they must beat, and metrics.

`PropensityHeads` predicts every binary label (probability) and continuous target at once.
`evaluate_propensity` fits heads and two baselines on the same customer split and reports
test metrics side by side, so the user sees whether the embedding earns its keep:
- `rfm_logistic`: logistic regression on signed-log1p recency/frequency/monetary/tenure;
- `aggregate_hgb`: gradient-boosted trees on the hand-made aggregates of eventseg.features;
- `oracle` (when a truth table is given): the true probabilities, the ceiling.

Calibration is Platt scaling (a logistic fit on the score's logit) on the validation split,
not isotonic regression: the validation split is small (10% of customers), where isotonic
steps overfit and create ties that blunt ranking (AUC, top-decile lift), while Platt's two
parameters are stable, monotone (ranking unchanged) and fix exactly the over/under-
confidence a network trained with early stopping typically shows. With `calibrate: auto` it
is applied only if it lowers ECE on validation, measured out-of-fold (5 folds) so the
calibrator is never judged on the rows it was fitted on.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Mapping

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import average_precision_score, roc_auc_score
from torch import nn
from torch.nn import functional as F

from eventseg.artifacts import atomic_path
from eventseg.safe_skops import SKOPS_DATA_TYPES, skops_dumps_checked, skops_loads_checked
from eventseg.errors import UserError
from eventseg.data.encoders import signed_log1p
from eventseg.data.labels import build_labels
from eventseg.data.schema import OUTPUT_ID, EventSchema, id_key
from eventseg.data.split import SPLITS, TEST, TRAIN, VAL, assign_splits
from eventseg.features import RFM_COLUMNS, AggregateFeatureBuilder, as_validated, rfm_from_aggregates

KINDS = ("mlp", "logistic", "hgb")
CALIBRATE = ("auto", True, False)
_EPS = 1e-6


# --- metrics ---------------------------------------------------------------------------------


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """Sum over equal-width score bins of (bin share) * |observed rate - mean score|."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    b = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    n = np.bincount(b, minlength=n_bins)
    gap = np.abs(np.bincount(b, weights=y, minlength=n_bins) - np.bincount(b, weights=p, minlength=n_bins))
    return float(gap.sum() / len(y))  # sum_b n_b/N * |sum_y/n_b - sum_p/n_b|


def top_decile_lift(y: np.ndarray, p: np.ndarray) -> float:
    """Positive rate among the top 10% by score over the overall positive rate.

    Ties at the decile boundary count at their average rate (what a random tie-break gives
    on average), so a constant score has lift exactly 1 whatever the row order.
    """
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    k = max(1, int(np.ceil(0.1 * len(y))))
    threshold = np.sort(p)[::-1][k - 1]
    above, tied = p > threshold, p == threshold
    positives = y[above].sum() + (k - above.sum()) * y[tied].mean()
    return float((positives / k) / y.mean())


def classification_metrics(y, p, n_bins: int = 10) -> dict:
    """ROC-AUC, PR-AUC (average precision), Brier, top-decile lift, ECE, n and positives.

    With one class only, the ranking metrics (AUC, PR-AUC, lift) are undefined: they are
    None and `reason` says why; Brier and ECE are still computed.
    """
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    if len(y) == 0:
        return {"n": 0, "positives": 0, "roc_auc": None, "pr_auc": None, "brier": None,
                "top_decile_lift": None, "ece": None, "reason": "no labelled rows"}  # fmt: skip
    positives = int(y.sum())
    out = {
        "n": int(len(y)),
        "positives": positives,
        "base_rate": positives / len(y),
        "brier": float(np.mean((p - y) ** 2)),
        "ece": expected_calibration_error(y, p, n_bins),
    }
    if positives in (0, len(y)):
        which = "all 1" if positives else "all 0"
        reason = f"only one class ({which}) among {len(y)} rows: ranking metrics undefined"
        out.update(roc_auc=None, pr_auc=None, top_decile_lift=None, reason=reason)
    else:
        out.update(
            roc_auc=float(roc_auc_score(y, p)),
            pr_auc=float(average_precision_score(y, p)),
            top_decile_lift=top_decile_lift(y, p),
        )
    return out


def regression_metrics(y, pred) -> dict:
    """MAE, RMSE and R² (1 - SSE / SST; None when the target is constant)."""
    y, pred = np.asarray(y, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    if len(y) == 0:
        return {"n": 0, "mae": None, "rmse": None, "r2": None, "reason": "no labelled rows"}
    sst = float(((y - y.mean()) ** 2).sum())
    sse = float(((y - pred) ** 2).sum())
    return {
        "n": int(len(y)),
        "mean": float(y.mean()),
        "mae": float(np.abs(y - pred).mean()),
        "rmse": float(np.sqrt(sse / len(y))),
        "r2": 1.0 - sse / sst if sst > 0 else None,
    }


# --- calibration -----------------------------------------------------------------------------


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


class PlattCalibrator:
    """p -> sigmoid(a * logit(p) + b), fitted by (almost unpenalised) logistic regression."""

    def __init__(self, a: float = 1.0, b: float = 0.0):
        self.a, self.b = float(a), float(b)

    def fit(self, p: np.ndarray, y: np.ndarray) -> "PlattCalibrator":
        lr = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(p)[:, None], np.asarray(y, dtype=np.int64))
        self.a, self.b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
        return self

    def transform(self, p: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.a * _logit(p) + self.b)))

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b}


def choose_calibration(
    p: np.ndarray, y: np.ndarray, mode="auto", seed: int = 0, folds: int = 5
) -> tuple[PlattCalibrator | None, dict]:
    """Fit Platt scaling on validation scores and decide whether to use it.

    `auto`: use it if its out-of-fold ECE (each fold calibrated by the other folds) is below
    the raw ECE. `True`: always (when both classes are present); `False`: never.
    """
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.float64)
    info: dict[str, Any] = {"method": "platt", "mode": str(mode), "applied": False}
    if mode is False:
        return None, info
    if len(y) < 2 * folds or y.min() == y.max():
        info["reason"] = f"validation has {len(y)} labelled rows with {int(y.sum())} positives: too few to calibrate"
        return None, info
    info["val_ece_raw"] = expected_calibration_error(y, p)
    if mode == "auto":
        fold = np.random.default_rng(seed).permutation(len(y)) % folds
        oof = np.empty(len(y))
        for f in range(folds):
            fit_rows = fold != f
            if y[fit_rows].min() == y[fit_rows].max():
                info["reason"] = "a calibration fold has one class: too few positives to judge calibration"
                return None, info
            oof[~fit_rows] = PlattCalibrator().fit(p[fit_rows], y[fit_rows]).transform(p[~fit_rows])
        info["val_ece_calibrated_oof"] = expected_calibration_error(y, oof)
        if info["val_ece_calibrated_oof"] >= info["val_ece_raw"]:
            return None, info
    calibrator = PlattCalibrator().fit(p, y)
    info.update(applied=True, **calibrator.to_dict())
    return calibrator, info


# --- the multi-task network ------------------------------------------------------------------


class MultiTaskMLP(L.LightningModule):
    """Shared hidden layers, one logit per binary label; BCE masked where a label is missing."""

    def __init__(
        self, n_inputs: int, n_labels: int, hidden=(64,), dropout: float = 0.1, lr: float = 1e-3, weight_decay: float = 1e-4
    ):
        super().__init__()
        self.save_hyperparameters()
        layers, width = [], n_inputs
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU(), nn.Dropout(dropout)]
            width = int(h)
        layers.append(nn.Linear(width, n_labels))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _loss(self, batch) -> torch.Tensor:
        x, y, mask = batch
        loss = F.binary_cross_entropy_with_logits(self(x), y, reduction="none")
        return (loss * mask).sum() / mask.sum().clamp_min(1.0)

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(batch[0]))
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self._loss(batch), on_step=False, on_epoch=True, batch_size=len(batch[0]))

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


class _BestWeights(Callback):
    """Keep the weights of the best validation epoch (early stopping stops a few epochs later)."""

    def __init__(self):
        self.best, self.state, self.epoch = float("inf"), None, None

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        loss = float(trainer.callback_metrics["val/loss"])
        if loss < self.best:
            self.best, self.epoch = loss, trainer.current_epoch
            self.state = copy.deepcopy({k: v.detach().cpu() for k, v in pl_module.state_dict().items()})


@contextmanager
def _small_model_run():
    """Run a seconds-long fit of a tiny network quietly and on one CPU thread.

    Lightning's hardware banner, small-data advice and a torch/Lightning pytree deprecation
    notice are noise here. Intra-op threads buy nothing on matrices this small and, on a
    shared machine, spin against other processes (measured: 30 epochs of 2k rows took 1.5 s
    on one thread, 12 s on two busy cores), so the thread count is lowered for the fit only.
    """
    from lightning.fabric.utilities.warnings import PossibleUserWarning

    logger = logging.getLogger("lightning.pytorch")
    level, threads = logger.level, torch.get_num_threads()
    logger.setLevel(logging.WARNING)
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PossibleUserWarning)
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            yield
    finally:
        logger.setLevel(level)
        torch.set_num_threads(threads)


def _masked_tensors(X: np.ndarray, Y: np.ndarray) -> torch.utils.data.TensorDataset:
    """Inputs, labels with unknowns as 0, and the mask of known labels."""
    arrays = (X, np.nan_to_num(Y), ~np.isnan(Y))
    return torch.utils.data.TensorDataset(*(torch.from_numpy(a.astype(np.float32)) for a in arrays))


# --- heads -----------------------------------------------------------------------------------


def rfm_matrix(rfm) -> np.ndarray:
    """RFM frame (columns recency, frequency, monetary, tenure) -> model input."""
    if isinstance(rfm, pd.DataFrame):
        missing = [c for c in RFM_COLUMNS if c not in rfm.columns]
        if missing:
            raise ValueError(f"RFM features lack column(s) {missing}; build them with eventseg.features.rfm_features")
        rfm = rfm[list(RFM_COLUMNS)].to_numpy(dtype=np.float64)
    return signed_log1p(np.asarray(rfm, dtype=np.float64))


def label_kinds(labels: pd.DataFrame) -> tuple[list[str], list[str], dict[str, str]]:
    """Split label columns into binary (non-null values all 0/1), continuous (other numeric)
    and skipped (non-numeric or empty, with the reason)."""
    binary, continuous, skipped = [], [], {}
    for col in labels.columns:
        s = labels[col]
        if not (pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype)):
            skipped[col] = f"not numeric (dtype {s.dtype})"
            continue
        values = s.dropna().astype(np.float64)
        if len(values) == 0:
            skipped[col] = "no values"
        elif values.isin([0.0, 1.0]).all():
            binary.append(col)
        else:
            continuous.append(col)
    return binary, continuous, skipped


def _positive_proba(model, X: np.ndarray) -> np.ndarray:
    proba = model.predict_proba(X)
    classes = list(model.classes_)
    return proba[:, classes.index(1)] if 1 in classes else np.zeros(len(X))


ESTIMATORS_FILE = "estimators.skops"
LEGACY_ESTIMATORS_FILE = "estimators.joblib"  # the old pickle-based format: recognised, never loaded
# the scikit-learn heads are saved with skops and loaded only if the file names nothing but these
# types: what _fit_classifier / _fit_regressor build (with their internal parts) and plain data
ESTIMATOR_TYPES = (
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.linear_model._ridge.Ridge",
    "sklearn.dummy.DummyClassifier",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
)
ESTIMATOR_SKOPS_TYPES = SKOPS_DATA_TYPES + ESTIMATOR_TYPES + (
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",  # node tables checked on load
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.preprocessing._label.LabelEncoder",
    "sklearn._loss.loss.HalfBinomialLoss", "sklearn._loss._loss.CyHalfBinomialLoss",
    "sklearn._loss.loss.HalfPoissonLoss", "sklearn._loss._loss.CyHalfPoissonLoss",
    "sklearn._loss.loss.HalfSquaredError", "sklearn._loss._loss.CyHalfSquaredError",
    "sklearn._loss.link.LogitLink", "sklearn._loss.link.LogLink", "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.Interval",
    "numpy.random._generator.Generator",  # HistGradientBoosting's feature-subsampling generator (state only)
)


class HeadsFileError(UserError):
    """Saved propensity heads are corrupt, in the old pickle-based format, or name types eventseg does not load."""


class PropensityHeads:
    """Predict every label of a table from an embedding matrix (optionally + RFM features).

    Kinds: `mlp` (one multi-task network for all binary labels, Lightning, early stopping on
    validation loss, missing labels masked out of the loss), `logistic` (one scikit-learn
    logistic regression per label) and `hgb` (gradient-boosted trees per label; used by the
    aggregate baseline). Continuous targets get a regressor per target: Ridge for `logistic`
    (a linear head), HistGradientBoostingRegressor for the others (Poisson loss when the
    target is non-negative, as spend usually is). Inputs are median-filled and standardised
    with training statistics stored in the object, so `predict_*` on new customers needs
    only the same inputs.
    """

    def __init__(
        self,
        kind: str = "mlp",
        hidden=(64,),
        dropout: float = 0.1,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        max_epochs: int = 50,
        batch_size: int = 256,
        patience: int = 5,
        C: float = 1.0,
        concat_rfm: bool = False,
        calibrate="auto",
        accelerator: str = "auto",
        seed: int = 0,
    ):
        if kind not in KINDS:
            raise ValueError(f"heads kind must be one of {KINDS}, got {kind!r}")
        if calibrate not in CALIBRATE:
            raise ValueError(f"calibrate must be one of auto, true, false; got {calibrate!r}")
        self.config = dict(
            kind=kind, hidden=[int(h) for h in hidden], dropout=float(dropout), lr=float(lr),
            weight_decay=float(weight_decay), max_epochs=int(max_epochs), batch_size=int(batch_size),
            patience=int(patience), C=float(C), concat_rfm=bool(concat_rfm), calibrate=calibrate,
            accelerator=str(accelerator), seed=int(seed),
        )  # fmt: skip
        self.binary_: list[str] = []
        self.continuous_: list[str] = []
        self.fill_: np.ndarray | None = None
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.network_: MultiTaskMLP | None = None
        self.estimators_: dict[str, Any] = {}  # label -> fitted scikit-learn model
        self.calibrators_: dict[str, PlattCalibrator] = {}
        self.fit_info_: dict = {}

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> "PropensityHeads":
        """From a `heads` config group (configs/heads/*.yaml) or a plain dict."""
        if cfg is None:
            return cls()
        if not isinstance(cfg, dict):
            from omegaconf import OmegaConf

            cfg = OmegaConf.to_container(cfg, resolve=True)
        return cls(**cfg)

    @property
    def kind(self) -> str:
        return self.config["kind"]

    @property
    def n_inputs(self) -> int | None:
        return None if self.mean_ is None else len(self.mean_)

    # inputs -----------------------------------------------------------------------------------

    def _raw_inputs(self, X, rfm) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"inputs must be a 2-D matrix [customers, features], got shape {X.shape}")
        if self.config["concat_rfm"]:
            if rfm is None:
                raise ValueError(
                    "these heads use RFM features (concat_rfm=true): pass rfm=rfm_features(...) for the same customers"
                )
            R = rfm_matrix(rfm)
            if len(R) != len(X):
                raise ValueError(
                    f"rfm has {len(R)} rows but the embeddings {len(X)}: they must describe the same customers, in order"
                )
            X = np.hstack([X, R])
        return X

    def _inputs(self, X, rfm) -> np.ndarray:
        X = self._raw_inputs(X, rfm)
        if self.mean_ is None:
            raise RuntimeError("PropensityHeads is not fitted: call fit first")
        if X.shape[1] != len(self.mean_):
            raise ValueError(f"inputs have {X.shape[1]} columns; these heads were fitted on {len(self.mean_)}")
        X = np.where(np.isnan(X), self.fill_, X)
        return (X - self.mean_) / self.scale_

    # fitting ----------------------------------------------------------------------------------

    def fit(
        self, X, y: pd.DataFrame, X_val, y_val: pd.DataFrame, *, rfm=None, rfm_val=None, kinds: tuple[list, list] | None = None
    ) -> "PropensityHeads":
        """Fit on (X, y), early-stop and calibrate on (X_val, y_val).

        `y`/`y_val`: one column per label, NaN where unknown. `kinds`: (binary, continuous)
        column lists; detected from `y` when not given.
        """
        started = time.perf_counter()
        binary, continuous = kinds if kinds is not None else label_kinds(y)[:2]
        if not binary and not continuous:
            raise ValueError(f"no usable label columns among {list(y.columns)}: need 0/1 or numeric columns")
        self.binary_, self.continuous_ = list(binary), list(continuous)
        self.network_, self.estimators_, self.calibrators_ = None, {}, {}
        raw = self._raw_inputs(X, rfm)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column: filled with 0 below
            self.fill_ = np.nan_to_num(np.nanmedian(raw, axis=0))
        filled = np.where(np.isnan(raw), self.fill_, raw)
        self.mean_ = filled.mean(axis=0)
        self.scale_ = np.where(filled.std(axis=0) > 0, filled.std(axis=0), 1.0)
        Xt, Xv = self._inputs(X, rfm), self._inputs(X_val, rfm_val)
        Yb, Yb_val = y[self.binary_].to_numpy(np.float64), y_val[self.binary_].to_numpy(np.float64)
        self.fit_info_ = {"kind": self.kind, "n_inputs": Xt.shape[1], "train_rows": len(Xt), "val_rows": len(Xv)}

        if self.binary_:
            if self.kind == "mlp":
                self._fit_network(Xt, Yb, Xv, Yb_val)
            else:
                for j, label in enumerate(self.binary_):
                    self.estimators_[label] = self._fit_classifier(Xt, Yb[:, j])
        for target in self.continuous_:
            self.estimators_[target] = self._fit_regressor(Xt, y[target].to_numpy(np.float64))

        raw_val = self._binary_scores(Xv)
        self.fit_info_["calibration"] = {}
        for j, label in enumerate(self.binary_):
            known = ~np.isnan(Yb_val[:, j])
            calibrator, info = choose_calibration(
                raw_val[known, j], Yb_val[known, j], self.config["calibrate"], self.config["seed"]
            )
            if calibrator is not None:
                self.calibrators_[label] = calibrator
            self.fit_info_["calibration"][label] = info
        self.fit_info_["seconds"] = round(time.perf_counter() - started, 3)
        return self

    def _fit_network(self, Xt, Yt, Xv, Yv) -> None:
        cfg = self.config
        L.seed_everything(cfg["seed"], verbose=False)
        train_rows, val_rows = ~np.isnan(Yt).all(axis=1), ~np.isnan(Yv).all(axis=1)
        if not val_rows.any():
            raise ValueError("no validation customer has a binary label: early stopping needs some")
        network = MultiTaskMLP(Xt.shape[1], len(self.binary_), cfg["hidden"], cfg["dropout"], cfg["lr"], cfg["weight_decay"])
        best = _BestWeights()
        loader = torch.utils.data.DataLoader
        with _small_model_run():
            trainer = L.Trainer(
                accelerator=cfg["accelerator"], devices=1, max_epochs=cfg["max_epochs"], logger=False,
                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                num_sanity_val_steps=0,
                callbacks=[EarlyStopping(monitor="val/loss", mode="min", patience=cfg["patience"]), best],
            )  # fmt: skip
            trainer.fit(
                network,
                loader(_masked_tensors(Xt[train_rows], Yt[train_rows]), batch_size=cfg["batch_size"], shuffle=True),
                loader(_masked_tensors(Xv[val_rows], Yv[val_rows]), batch_size=8192),
            )
        network.load_state_dict(best.state)
        self.network_ = network.cpu().eval()
        self.fit_info_.update(epochs_run=trainer.current_epoch, best_epoch=best.epoch, best_val_loss=best.best)

    def _fit_classifier(self, X: np.ndarray, y: np.ndarray):
        known = ~np.isnan(y)
        X, y = X[known], y[known].astype(np.int64)
        if len(np.unique(y)) < 2:
            return DummyClassifier(strategy="prior").fit(X, y)  # one class in training: predict its rate
        if self.kind == "logistic":
            return LogisticRegression(C=self.config["C"], max_iter=2000).fit(X, y)
        return HistGradientBoostingClassifier(early_stopping=True, random_state=self.config["seed"]).fit(X, y)

    def _fit_regressor(self, X: np.ndarray, y: np.ndarray):
        known = ~np.isnan(y)
        X, y = X[known], y[known]
        if self.kind == "logistic":
            return Ridge(alpha=1.0).fit(X, y)
        loss = "poisson" if y.min() >= 0 and y.max() > 0 else "squared_error"
        # heavy-tailed targets: smaller, slower trees than the defaults (synthetic spend, aggregate
        # features: test R² 0.002 with defaults, 0.080 with these)
        return HistGradientBoostingRegressor(
            loss=loss, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=50, early_stopping=True, random_state=self.config["seed"]
        ).fit(X, y)

    # prediction -------------------------------------------------------------------------------

    def _binary_scores(self, Xs: np.ndarray) -> np.ndarray:
        """Uncalibrated probabilities for standardised inputs."""
        if not self.binary_:
            return np.empty((len(Xs), 0))
        if self.kind == "mlp":
            with torch.no_grad():
                chunks = [torch.sigmoid(self.network_(torch.from_numpy(Xs[i : i + 65536].astype(np.float32)))).numpy()
                          for i in range(0, len(Xs), 65536)]  # fmt: skip
            return np.concatenate(chunks).astype(np.float64) if chunks else np.empty((0, len(self.binary_)))
        return np.stack([_positive_proba(self.estimators_[label], Xs) for label in self.binary_], axis=1)

    def predict_proba(self, X, rfm=None) -> np.ndarray:
        """[customers, binary labels] calibrated probabilities, columns in `binary_` order."""
        P = self._binary_scores(self._inputs(X, rfm))
        for j, label in enumerate(self.binary_):
            if label in self.calibrators_:
                P[:, j] = self.calibrators_[label].transform(P[:, j])
        return P

    def predict(self, X, rfm=None) -> np.ndarray:
        """[customers, continuous targets] predictions, columns in `continuous_` order."""
        Xs = self._inputs(X, rfm)
        if not self.continuous_:
            return np.empty((len(Xs), 0))
        return np.stack([self.estimators_[t].predict(Xs) for t in self.continuous_], axis=1)

    def scores(self, X, rfm=None) -> pd.DataFrame:
        """`p_<label>` for binary labels and `pred_<target>` for continuous ones."""
        P, R = self.predict_proba(X, rfm), self.predict(X, rfm)
        columns = {f"p_{c}": P[:, j] for j, c in enumerate(self.binary_)}
        columns.update({f"pred_{c}": R[:, j] for j, c in enumerate(self.continuous_)})
        return pd.DataFrame(columns)

    # persistence ------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """A directory: heads.json (config, labels, input statistics, calibrators), the
        network weights (network.pt, tensors only) and the scikit-learn models (estimators.skops,
        skops format: loaded against ESTIMATOR_SKOPS_TYPES, never unpickled)."""
        if self.mean_ is None:
            raise RuntimeError("PropensityHeads is not fitted: nothing to save")
        path = Path(path)
        meta = {
            "config": self.config,
            "binary": self.binary_,
            "continuous": self.continuous_,
            "fill": self.fill_.tolist(),
            "mean": self.mean_.tolist(),
            "scale": self.scale_.tolist(),
            "calibrators": {k: c.to_dict() for k, c in self.calibrators_.items()},
            "fit_info": self.fit_info_,
            "estimators": sorted(self.estimators_),
            "estimators_file": ESTIMATORS_FILE if self.estimators_ else None,
        }
        estimators = None
        if self.estimators_:  # before writing anything: a model load would refuse leaves no directory
            estimators = skops_dumps_checked(
                self.estimators_, ESTIMATOR_SKOPS_TYPES, "the propensity heads' scikit-learn models", ValueError,
                f"Only {[t.rsplit('.', 1)[1] for t in ESTIMATOR_TYPES]} are saved.")
        with atomic_path(path) as tmp:
            tmp.mkdir()
            (tmp / "heads.json").write_text(json.dumps(meta, indent=2, default=str))
            if self.network_ is not None:
                torch.save({"hparams": dict(self.network_.hparams), "state_dict": self.network_.state_dict()}, tmp / "network.pt")
            if estimators is not None:
                (tmp / ESTIMATORS_FILE).write_bytes(estimators)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PropensityHeads":
        """Heads written by save(). Nothing in the directory can run code: heads.json is JSON,
        network.pt is read with torch.load(weights_only=True), estimators.skops with skops against
        ESTIMATOR_SKOPS_TYPES (checked with skops.io.get_untrusted_types first); an old
        estimators.joblib is refused, never unpickled. HeadsFileError for anything else."""
        path = Path(path)
        if not (path / "heads.json").exists():
            raise FileNotFoundError(f"{path} holds no saved propensity heads (no heads.json)")
        remedy = "Re-run the pipeline (python scripts/pipeline.py ...) to write new heads."
        try:
            meta = json.loads((path / "heads.json").read_text())
        except (ValueError, UnicodeDecodeError) as err:
            raise HeadsFileError(f"{path / 'heads.json'} is not valid JSON ({err}). {remedy}") from None
        try:
            heads = cls(**meta["config"])
            heads.binary_, heads.continuous_ = list(meta["binary"]), list(meta["continuous"])
            heads.fill_, heads.mean_, heads.scale_ = (np.asarray(meta[k], dtype=np.float64) for k in ("fill", "mean", "scale"))
            heads.calibrators_ = {k: PlattCalibrator(**v) for k, v in meta["calibrators"].items()}
            heads.fit_info_ = meta["fit_info"]
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise HeadsFileError(f"{path / 'heads.json'} is corrupt ({type(err).__name__}: {err}). {remedy}") from None
        if (path / "network.pt").exists():
            saved = torch.load(path / "network.pt", map_location="cpu", weights_only=True)
            heads.network_ = MultiTaskMLP(**saved["hparams"])
            heads.network_.load_state_dict(saved["state_dict"])
            heads.network_.eval()
        if heads.kind == "mlp" and heads.binary_ and heads.network_ is None:
            raise HeadsFileError(f"{path} has no network.pt for the binary labels {heads.binary_}. {remedy}")
        needed = set(heads.continuous_) | (set(heads.binary_) if heads.kind != "mlp" else set())
        file = path / ESTIMATORS_FILE
        if file.exists():
            estimators = skops_loads_checked(file.read_bytes(), ESTIMATOR_SKOPS_TYPES, str(file), HeadsFileError, remedy)
            if not isinstance(estimators, dict) or not all(
                    isinstance(k, str) and f"{type(v).__module__}.{type(v).__name__}" in ESTIMATOR_TYPES
                    for k, v in estimators.items()):
                raise HeadsFileError(f"{file} is corrupt: not a mapping of label to a scikit-learn head. {remedy}")
            heads.estimators_ = estimators
        elif (path / LEGACY_ESTIMATORS_FILE).exists():
            raise HeadsFileError(
                f"{path} holds {LEGACY_ESTIMATORS_FILE}, the old pickle-based format: it is not loaded, because "
                f"unpickling a file can run arbitrary code. {remedy}")
        missing = sorted(needed - set(heads.estimators_))
        if missing:
            raise HeadsFileError(f"{path} has no saved model for {missing} ({ESTIMATORS_FILE} missing or incomplete). {remedy}")
        return heads


# --- joining labels to embeddings ------------------------------------------------------------


def _id_key(values) -> pd.Series:
    """Ids as a Series; floats holding whole numbers (ids read back through NaN-able columns) as int64."""
    s = pd.Series(np.asarray(values))
    if pd.api.types.is_float_dtype(s.dtype) and s.notna().all() and (s == np.floor(s)).all():
        s = s.astype(np.int64)
    return s


def _matching_keys(ids, other) -> tuple[pd.Series, pd.Series, str | None]:
    """Make two id columns comparable; say what was coerced (None when nothing was)."""
    a, b = _id_key(ids), _id_key(other)
    a_num, b_num = pd.api.types.is_numeric_dtype(a.dtype), pd.api.types.is_numeric_dtype(b.dtype)
    if a_num == b_num:
        return a, b, None
    # as text, never text parsed as numbers: '0123' and '123' must not both match the id 123
    return a.astype(str), b.astype(str), f"ids compared as text ({a.dtype} vs {b.dtype})"


def align_to_ids(
    ids, table: pd.DataFrame, id_col: str, what: str = "labels", columns: list[str] | None = None
) -> tuple[pd.DataFrame, dict]:
    """Rows of `table` in the order of `ids` (NaN rows where an id has none), plus a report.

    Ids in the table but not in `ids` are counted (`unmatched_rows`), not used.
    """
    if id_col not in table.columns:
        raise ValueError(f"{what} table has no id column '{id_col}'; its columns: {list(table.columns)}")
    table_ids = table[id_col]
    if table_ids.isna().any():
        raise ValueError(f"{what} table: {int(table_ids.isna().sum())} row(s) with a null '{id_col}'")
    dupes = table_ids.duplicated()
    if dupes.any():
        raise ValueError(
            f"{what} table: {int(dupes.sum())} duplicate '{id_col}' value(s), e.g. {table_ids[dupes].iloc[0]!r}; "
            "expected one row per customer"
        )
    left, right, coercion = _matching_keys(ids, table_ids.to_numpy())
    pos = pd.Index(right).get_indexer(left)
    matched = pos >= 0
    if not matched.any():
        raise ValueError(
            f"no {what} id matches a customer id of the embeddings: embedding ids look like "
            f"{list(np.asarray(ids)[:3])} ({np.asarray(ids).dtype}), {what} ids like "
            f"{list(table_ids.iloc[:3])} ({table_ids.dtype})"
        )
    cols = [c for c in (columns if columns is not None else table.columns) if c != id_col]
    values = table[cols].iloc[np.where(matched, pos, 0)].reset_index(drop=True)
    numeric = [c for c in cols if pd.api.types.is_numeric_dtype(values[c].dtype) or pd.api.types.is_bool_dtype(values[c].dtype)]
    values = values.astype({c: np.float64 for c in numeric})
    values.loc[~matched] = np.nan
    report = {
        "rows": len(table),
        "matched_customers": int(matched.sum()),
        "customers_without_row": int((~matched).sum()),
        "unmatched_rows": int(len(table) - matched.sum()),
    }
    if coercion:
        report["id_coercion"] = coercion
    return values, report


# --- evaluation ------------------------------------------------------------------------------


def evaluate_propensity(
    ids,
    embeddings,
    labels_df: pd.DataFrame | None,
    events_df: pd.DataFrame,
    schema: EventSchema,
    heads_cfg: Mapping[str, Any] | None = None,
    seed: int = 0,
    *,
    truth: pd.DataFrame | None = None,
    cutoff=None,
    horizon_days: int = 30,
    split_fractions=(0.8, 0.1, 0.1),
    top_k_categories: int = 10,
    aggregates: pd.DataFrame | None = None,
    splits: np.ndarray | None = None,
) -> dict:
    """Fit heads and both baselines on the customer split, report test metrics, score everyone.

    ids, embeddings: one row per customer (embeddings of history before the cutoff).
    labels_df: customer id + label columns (binary 0/1 or numeric targets); None builds
        them from `events_df` with `cutoff` and `horizon_days` (eventseg.data.labels).
    events_df: the events; baseline features use only those strictly before `cutoff`
        (or all of them when no cutoff is given).
    truth: optional customer id + `p_<label>` (and `expected_<target>`) columns: the oracle.
    seed: the split seed (eventseg.data.split.assign_splits; 0 train, 1 val, 2 test).
    aggregates, splits: a run's own aggregate table (indexed by id, built as of `cutoff`) and
        split codes per id; given, the baselines use them instead of rebuilding either.

    Returns {"metrics": JSON-ready dict, "scores": DataFrame for every customer (OUTPUT_ID, split,
    p_<label>, pred_<target>), "baseline_scores": {name: DataFrame}, "heads": the fitted
    PropensityHeads, "baselines": {name: PropensityHeads}}.
    """
    started = time.perf_counter()
    ids = np.asarray(ids)
    E = np.asarray(embeddings, dtype=np.float32)
    if E.ndim != 2 or len(E) != len(ids):
        raise ValueError(f"embeddings must be [customers, dim] with one row per id: got {E.shape} for {len(ids)} ids")
    if pd.Index(ids).has_duplicates:
        raise ValueError("embedding customer ids are not unique")
    events = as_validated(events_df, schema)
    if labels_df is None:
        if cutoff is None:
            raise ValueError("no labels: pass a labels table (labels.path) or a cutoff to build them from the events")
        labels_df = build_labels(events, schema, cutoff, horizon_days, amount_col=schema.amount_col)
    labels, label_report = align_to_ids(ids, labels_df, id_key(labels_df.columns, schema.id_col), "labels")
    binary, continuous, skipped = label_kinds(labels)
    if not binary and not continuous:
        raise ValueError(f"labels table has no usable label column: {skipped}")
    labels = labels[binary + continuous]
    labelled = labels.notna().any(axis=1).to_numpy()
    label_report.update(binary=binary, continuous=continuous, skipped=skipped, unlabelled_customers=int((~labelled).sum()))

    splits = assign_splits(ids, seed, split_fractions) if splits is None else np.asarray(splits)
    as_of = cutoff
    if aggregates is None:
        train_ids = ids[splits == TRAIN]
        builder = AggregateFeatureBuilder(schema, top_k_categories).fit(events.loc[events[schema.id_col].isin(train_ids)], as_of)
        aggregates = builder.transform(events, as_of)
    agg = aggregates.reindex(ids)
    rfm = rfm_from_aggregates(agg, schema)
    without_history = int(rfm["frequency"].isna().sum())

    fit_rows = {s: (splits == s) & labelled for s in (TRAIN, VAL)}
    for s, rows in fit_rows.items():
        if not rows.any():
            raise ValueError(f"no labelled customer in the {SPLITS[s]} split: {label_report}")
    calibrate = (heads_cfg or {}).get("calibrate", "auto")
    models = {
        "heads": (PropensityHeads.from_config(heads_cfg), E, rfm),
        "rfm_logistic": (PropensityHeads(kind="logistic", calibrate=calibrate, seed=seed), rfm_matrix(rfm), None),
        "aggregate_hgb": (PropensityHeads(kind="hgb", calibrate=calibrate, seed=seed), agg.to_numpy(np.float64), None),
    }
    all_scores = {}
    tr, va = fit_rows[TRAIN], fit_rows[VAL]
    for name, (model, X, R) in models.items():
        R_tr, R_va = (R.iloc[tr], R.iloc[va]) if R is not None else (None, None)
        model.fit(X[tr], labels[tr], X[va], labels[va], rfm=R_tr, rfm_val=R_va, kinds=(binary, continuous))
        all_scores[name] = model.scores(X, R)

    test = splits == TEST
    oracle, truth_report = None, None
    if truth is not None:
        wanted = [f"p_{c}" for c in binary] + [f"expected_{c}" for c in continuous]
        present = [c for c in wanted if c in truth.columns]
        oracle, truth_report = align_to_ids(ids, truth, id_key(truth.columns, schema.id_col), "truth", columns=present)
    results: dict[str, dict] = {}
    for label in binary + continuous:
        y = labels[label].to_numpy()
        rows = test & ~np.isnan(y)
        per_model = {}
        for name, scores in all_scores.items():
            column = f"p_{label}" if label in binary else f"pred_{label}"
            per_model[name] = _label_metrics(label in binary, y[rows], scores[column].to_numpy()[rows])
        oracle_col = f"p_{label}" if label in binary else f"expected_{label}"
        if oracle is not None and oracle_col in oracle.columns:
            o = oracle[oracle_col].to_numpy()
            known = rows & ~np.isnan(o)
            per_model["oracle"] = _label_metrics(label in binary, y[known], o[known])
        results[label] = per_model

    metrics = {
        "labels": label_report,
        "split_seed": seed,
        "split_counts": {s: int((splits == i).sum()) for i, s in enumerate(SPLITS)},
        "labelled_split_counts": {s: int(((splits == i) & labelled).sum()) for i, s in enumerate(SPLITS)},
        "features": {"as_of": None if as_of is None else str(pd.Timestamp(as_of)), "aggregate_columns": agg.shape[1],
                     "customers_without_history": without_history},  # fmt: skip
        "test": results,
        "summary": _summary(results, binary, continuous),
        "fit": {name: model.fit_info_ for name, (model, _, _) in models.items()},
        "seconds": round(time.perf_counter() - started, 3),
    }
    if truth_report is not None:
        metrics["truth"] = truth_report

    def framed(scores: pd.DataFrame) -> pd.DataFrame:
        return pd.concat([pd.DataFrame({OUTPUT_ID: ids, "split": np.asarray(SPLITS)[splits]}), scores], axis=1)

    return {
        "metrics": metrics,
        "scores": framed(all_scores["heads"]),
        "baseline_scores": {name: framed(s) for name, s in all_scores.items() if name != "heads"},
        "heads": models["heads"][0],
        "baselines": {name: m for name, (m, _, _) in models.items() if name != "heads"},
    }


def _label_metrics(is_binary: bool, y: np.ndarray, p: np.ndarray) -> dict:
    return classification_metrics(y, p) if is_binary else regression_metrics(y, p)


def _summary(results: dict, binary: list[str], continuous: list[str]) -> dict:
    """Headline per label: test ROC-AUC (binary) or R² (continuous) per model, and whether
    the heads beat the best baseline."""
    out = {}
    for label, per_model in results.items():
        key = "roc_auc" if label in binary else "r2"
        row = {name: m.get(key) for name, m in per_model.items()}
        baselines = [row[b] for b in ("rfm_logistic", "aggregate_hgb") if row.get(b) is not None]
        row["metric"] = key
        row["heads_beat_baselines"] = None if row["heads"] is None or not baselines else bool(row["heads"] > max(baselines))
        out[label] = row
    return out
