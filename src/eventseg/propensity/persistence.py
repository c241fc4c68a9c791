"""Saved propensity models that cannot run code when loaded.

A `PropensityHeads` directory: heads.json (parameters, labels, input statistics, calibrators),
network.pt (tensors only, read with torch.load(weights_only=True)) and estimators.skops (the
scikit-learn models, loaded only if the file names nothing but ESTIMATOR_SKOPS_TYPES). A
`PropensityModel` directory (a run's `heads/`): model.json (which candidate each label
publishes, the stacks' coefficients) and one such directory per candidate it needs; it is
written and read by PropensityModel.save / load (eventseg.propensity.selection), which know the
candidates, so this module depends on no model class.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from eventseg.propensity.calibration import PlattCalibrator
from eventseg.propensity.network import MultiTaskMLP
from eventseg.run.artifacts import atomic_path
from eventseg.run.errors import UserError
from eventseg.run.safe_skops import SKOPS_DATA_TYPES, skops_dumps_checked, skops_loads_checked

ESTIMATORS_FILE = "estimators.skops"
LEGACY_ESTIMATORS_FILE = "estimators.joblib"  # the old pickle-based format: recognised, never loaded
MODEL_FILE = "model.json"
HEADS_FILE = "heads.json"  # one saved PropensityHeads: its settings and fitted facts
MODEL_FORMAT = "eventseg.propensity_model/2"
# the scikit-learn heads are saved with skops and loaded only if the file names nothing but these
# types: what PropensityHeads builds (with their internal parts) and plain data
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
REMEDY = "Re-run the pipeline (eventseg run ...) to write new heads."


class HeadsFileError(UserError):
    """Saved propensity heads are corrupt, in an old format, or name types eventseg does not load."""


def read_saved_json(file: Path) -> dict:
    """A saved JSON file; HeadsFileError (not a traceback) when it is not JSON."""
    try:
        return json.loads(file.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise HeadsFileError(f"{file} is not valid JSON ({err}). {REMEDY}") from None


# --- one PropensityHeads ---------------------------------------------------------------------


def save_heads(heads, path: str | os.PathLike) -> Path:
    """A directory: heads.json, network.pt (when an MLP), estimators.skops (when any)."""
    if not hasattr(heads, "mean_"):
        raise RuntimeError("PropensityHeads is not fitted: nothing to save")
    path = Path(path)
    meta = {
        "config": heads.config,
        "binary": heads.binary_,
        "continuous": heads.continuous_,
        "fill": heads.fill_.tolist(),
        "mean": heads.mean_.tolist(),
        "scale": heads.scale_.tolist(),
        "calibrators": {k: c.to_dict() for k, c in heads.calibrators_.items()},
        "fit_info": heads.fit_info_,
        "estimators": sorted(heads.estimators_),
        "estimators_file": ESTIMATORS_FILE if heads.estimators_ else None,
    }
    estimators = None
    if heads.estimators_:  # before writing anything: a model load would refuse leaves no directory
        estimators = skops_dumps_checked(
            heads.estimators_, ESTIMATOR_SKOPS_TYPES, "the propensity heads' scikit-learn models", ValueError,
            f"Only {[t.rsplit('.', 1)[1] for t in ESTIMATOR_TYPES]} are saved.")
    with atomic_path(path) as tmp:
        tmp.mkdir()
        (tmp / HEADS_FILE).write_text(json.dumps(meta, indent=2, default=str))
        if heads.network_ is not None:
            torch.save({"hparams": dict(heads.network_.hparams), "state_dict": heads.network_.state_dict()}, tmp / "network.pt")
        if estimators is not None:
            (tmp / ESTIMATORS_FILE).write_bytes(estimators)
    return path


def load_heads(path: str | os.PathLike, cls):
    """Heads written by save_heads(). Nothing in the directory can run code: heads.json is JSON,
    network.pt is read with torch.load(weights_only=True), estimators.skops with skops against
    ESTIMATOR_SKOPS_TYPES (checked with skops.io.get_untrusted_types first); an old
    estimators.joblib is refused, never unpickled. HeadsFileError for anything else."""
    path = Path(path)
    if not (path / HEADS_FILE).exists():
        raise FileNotFoundError(f"{path} holds no saved propensity heads (no heads.json)")
    meta = read_saved_json(path / HEADS_FILE)
    try:
        heads = cls(**meta["config"])
        heads.binary_, heads.continuous_ = list(meta["binary"]), list(meta["continuous"])
        heads.fill_, heads.mean_, heads.scale_ = (np.asarray(meta[k], dtype=np.float64) for k in ("fill", "mean", "scale"))
        heads.n_features_in_ = len(heads.mean_)
        heads.calibrators_ = {k: PlattCalibrator.from_dict(v) for k, v in meta["calibrators"].items()}
        heads.fit_info_ = meta["fit_info"]
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise HeadsFileError(f"{path / HEADS_FILE} is corrupt ({type(err).__name__}: {err}). {REMEDY}") from None
    heads.network_, heads.estimators_ = None, {}
    if (path / "network.pt").exists():
        saved = torch.load(path / "network.pt", map_location="cpu", weights_only=True)
        heads.network_ = MultiTaskMLP(**saved["hparams"])
        heads.network_.load_state_dict(saved["state_dict"])
        heads.network_.eval()
    if heads.kind == "mlp" and heads.binary_ and heads.network_ is None:
        raise HeadsFileError(f"{path} has no network.pt for the binary labels {heads.binary_}. {REMEDY}")
    needed = set(heads.continuous_) | (set(heads.binary_) if heads.kind != "mlp" else set())
    file = path / ESTIMATORS_FILE
    if file.exists():
        estimators = skops_loads_checked(file.read_bytes(), ESTIMATOR_SKOPS_TYPES, str(file), HeadsFileError, REMEDY)
        if not isinstance(estimators, dict) or not all(
                isinstance(k, str) and f"{type(v).__module__}.{type(v).__name__}" in ESTIMATOR_TYPES
                for k, v in estimators.items()):
            raise HeadsFileError(f"{file} is corrupt: not a mapping of label to a scikit-learn head. {REMEDY}")
        heads.estimators_ = estimators
    elif (path / LEGACY_ESTIMATORS_FILE).exists():
        raise HeadsFileError(
            f"{path} holds {LEGACY_ESTIMATORS_FILE}, the old pickle-based format: it is not loaded, because "
            f"unpickling a file can run arbitrary code. {REMEDY}")
    missing = sorted(needed - set(heads.estimators_))
    if missing:
        raise HeadsFileError(f"{path} has no saved model for {missing} ({ESTIMATORS_FILE} missing or incomplete). {REMEDY}")
    return heads
