"""Candidates per label, fitted on training customers and chosen on validation ones.

Every binary label gets the same candidates, simplest first:
- `rfm_logistic`, `aggregate_hgb`: the baselines (eventseg.propensity.baselines);
- `rep_logistic`, `rep_hgb`: logistic regression and gradient-boosted trees on the representation;
- `heads`: the configured heads (configs/heads, the multi-task MLP by default) on the representation;
- `finetuned` (only with propensity.finetune.enabled): a logistic regression on the logits of the encoder
  fine-tuned end to end with the labels (eventseg.propensity.finetune);
- `stack`: a logistic regression on the logits of all of the above, fitted on validation. Its
  validation scores are cross-fitted (each fold scored by a stack fitted on the other folds), so
  it competes on out-of-sample scores like everyone else.
Continuous targets get `aggregate_hgb`, `rep_ridge` and `rep_hgb` (regressors).

The choice: the highest validation ROC-AUC (R² for targets), except that a simpler candidate
within `tolerance` (0.002) of it wins: ties and near-ties go to the simpler model, and to a
baseline first. When few customers are labelled (propensity.selection.cv_max_customers, 10,000 by
default), binary labels are chosen instead by the mean ROC-AUC of 5-fold refits over training +
validation (`reselect_by_cross_validation`): one small validation split cannot tell candidates
apart. The fine-tuned encoder is not a contender there: it was fitted on the training
customers, so its scores for them are in-sample and no fold refit can score it out of fold.
Validation is never used to fit a candidate (the MLP early-stops on a slice of
the training customers), only to calibrate it (monotone: ROC-AUC unchanged) and to choose. A
target whose chosen regressor has validation R² <= 0 is not published.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.utils.validation import check_is_fitted

from eventseg.data.labels import label_kinds
from eventseg.propensity.baselines import CandidateInputs
from eventseg.propensity.calibration import logit, sigmoid
from eventseg.propensity.heads import PropensityHeads
from eventseg.propensity.metrics import classification_metrics, regression_metrics
from eventseg.propensity.persistence import (
    HEADS_FILE,
    MODEL_FILE,
    MODEL_FORMAT,
    REMEDY,
    HeadsFileError,
    read_saved_json,
)
from eventseg.run.artifacts import atomic_path
from eventseg.run.columns import candidate_column, prediction_column, probability_column

TOLERANCE = 0.002
STACK = "stack"
BASELINES = ("rfm_logistic", "aggregate_hgb")
REFERENCE = "rfm_logistic"  # what every binary candidate is compared with on test


@dataclass(frozen=True)
class Candidate:
    """One fitted PropensityHeads: its name for binary labels, for targets (None: none), its input."""

    name: str
    regressor: str | None
    source: str
    kind: str | None  # PropensityHeads kind; None: the heads config decides
    description: str


CANDIDATES = (  # simplest first: the order that breaks ties
    Candidate("rfm_logistic", None, "rfm", "logistic", "logistic regression on signed-log1p RFM (baseline)"),
    Candidate("aggregate_hgb", "aggregate_hgb", "aggregates", "hgb", "gradient-boosted trees on the aggregates (baseline)"),
    Candidate("rep_logistic", "rep_ridge", "representation", "logistic", "logistic regression (ridge for targets) on the representation"),
    Candidate("rep_hgb", "rep_hgb", "representation", "hgb", "gradient-boosted trees on the representation"),
    Candidate("heads", None, "representation", None, "the configured heads (configs/heads) on the representation"),
    Candidate("finetuned", None, "finetuned", "logistic",
              "logistic regression on the logits of the encoder fine-tuned end to end with the labels (propensity.finetune)"),
)
FIT_OF = {**{c.name: c.name for c in CANDIDATES}, **{c.regressor: c.name for c in CANDIDATES if c.regressor}}
BINARY_ORDER = (*(c.name for c in CANDIDATES), STACK)
REGRESSION_ORDER = tuple(c.regressor for c in CANDIDATES if c.regressor)
DESCRIPTIONS = {**{c.name: c.description for c in CANDIDATES}, "rep_ridge": "ridge regression on the representation",
                STACK: "logistic regression on the other candidates' logits, fitted on validation (cross-fitted there)"}


def select(values: Mapping[str, float | None], order: Sequence[str], tolerance: float = TOLERANCE) -> str | None:
    """The first name in `order` (simplest first) whose value is within `tolerance` of the best."""
    known = {name: v for name, v in values.items() if v is not None and np.isfinite(v)}
    if not known:
        return None
    best = max(known.values())
    return next(name for name in order if name in known and known[name] >= best - tolerance - 1e-12)


class LogitStack(BaseEstimator):
    """Logistic regression on the standardised logits of other candidates' uncalibrated scores.

    Why not scikit-learn's StackingClassifier: it refits every base model inside its own
    cross-validation, while here the bases are the candidates already fitted on the training
    customers and the stack learns only how to weigh their scores on validation (cross-fitted
    for its own evidence). StackingClassifier would refit each candidate five more times per
    label (the multi-task MLP and gradient boosting included) and could not be saved as the
    few numbers `to_dict` writes.
    """

    def __init__(self, C: float = 1.0, folds: int = 5, seed: int = 0):
        self.C = C
        self.folds = folds
        self.seed = seed

    def fit(self, P: np.ndarray, y: np.ndarray, inputs: Sequence[str] | None = None) -> "LogitStack":
        Z = logit(P)
        self.mean_, std = Z.mean(axis=0), Z.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)
        lr = LogisticRegression(C=float(self.C), max_iter=2000).fit((Z - self.mean_) / self.scale_, np.asarray(y, np.int64))
        self.coef_, self.intercept_ = lr.coef_[0].astype(np.float64), float(lr.intercept_[0])
        self.inputs_ = list(inputs) if inputs is not None else [f"x{j}" for j in range(Z.shape[1])]
        return self

    def predict_proba(self, P: np.ndarray) -> np.ndarray:
        """P(label = 1) per row (1-D), from the bases' probabilities in `inputs_` order."""
        check_is_fitted(self, "coef_")
        return sigmoid(((logit(P) - self.mean_) / self.scale_) @ self.coef_ + self.intercept_)

    def cross_fit_predict(self, P: np.ndarray, y: np.ndarray) -> np.ndarray | None:
        """Out-of-fold probabilities: each fold scored by a stack fitted on the others (None: too few rows)."""
        y = np.asarray(y, np.int64)
        k = min(int(self.folds), int(np.bincount(y, minlength=2).min()))
        if k < 2:
            return None
        oof = np.empty(len(y))
        for fit, held in StratifiedKFold(k, shuffle=True, random_state=int(self.seed)).split(P, y):
            oof[held] = clone(self).fit(P[fit], y[fit]).predict_proba(P[held])
        return oof

    def to_dict(self) -> dict:
        return {"params": self.get_params(), "inputs": self.inputs_, "mean": self.mean_.tolist(),
                "scale": self.scale_.tolist(), "coef": self.coef_.tolist(), "intercept": self.intercept_}

    @classmethod
    def from_dict(cls, d: dict) -> "LogitStack":
        stack = cls(**d["params"])
        stack.inputs_ = [str(s) for s in d["inputs"]]
        stack.mean_, stack.scale_, stack.coef_ = (np.asarray(d[k], dtype=np.float64) for k in ("mean", "scale", "coef"))
        stack.intercept_ = float(d["intercept"])
        if not len(stack.inputs_) == len(stack.mean_) == len(stack.scale_) == len(stack.coef_):
            raise ValueError("stack inputs, statistics and coefficients differ in length")
        return stack


class PropensityModel(BaseEstimator):
    """Every candidate for every label, and the one each label publishes.

    heads: the `heads` candidate's PropensityHeads parameters (a configs/heads group; None:
    defaults); its `calibrate` setting applies to every candidate. seed: the candidates' and
    the stack folds' seed (the heads keep their own).
    """

    def __init__(self, heads: Mapping | None = None, tolerance: float = TOLERANCE, stack_folds: int = 5, seed: int = 0):
        self.heads = heads
        self.tolerance = tolerance
        self.stack_folds = stack_folds
        self.seed = seed

    # fitting ----------------------------------------------------------------------------------

    def _candidate(self, cand: Candidate, heads: PropensityHeads) -> PropensityHeads:
        if cand.kind is None:
            return clone(heads)
        return PropensityHeads(kind=cand.kind, calibrate=heads.calibrate, seed=int(self.seed))

    def _covers(self, cand: Candidate, heads: PropensityHeads, binary: list, continuous: list) -> tuple[list, list]:
        """Which labels this candidate is fitted for; a rep_* model the heads already are is not fitted twice."""
        same_as_heads = cand.source == "representation" and cand.kind == heads.kind and not heads.concat_rfm
        if same_as_heads and cand.kind is not None and binary:
            self.notes_[cand.name] = f"same model as heads (heads.kind={heads.kind}): not fitted twice"
        b = [] if same_as_heads and cand.kind is not None else list(binary)
        return b, list(continuous) if cand.regressor else []

    def fit(self, train: CandidateInputs, y_train: pd.DataFrame, val: CandidateInputs, y_val: pd.DataFrame,
            kinds: tuple[list, list] | None = None) -> "PropensityModel":
        """Fit every candidate on `train`, score `val`, cross-fit the stacks and choose per label."""
        binary, continuous = kinds if kinds is not None else label_kinds(y_train)[:2]
        heads = PropensityHeads.from_config(dict(self.heads) if self.heads is not None else None)
        self.binary_, self.continuous_ = list(binary), list(continuous)
        self.aggregate_columns_ = [str(c) for c in train.aggregates.columns]
        self.notes_, self.fits_, self.stacks_ = {}, {}, {}
        for cand in CANDIDATES:
            b, c = self._covers(cand, heads, self.binary_, self.continuous_)
            if (not b and not c) or not train.has(cand.source):
                continue
            rfm = (train.rfm, val.rfm) if cand.kind is None else (None, None)
            self.fits_[cand.name] = self._candidate(cand, heads).fit(
                train.matrix(cand.source), y_train, val.matrix(cand.source), y_val, rfm=rfm[0], rfm_val=rfm[1], kinds=(b, c))
        columns, raw = self._columns(val, set(self.fits_))
        self.validation_, self.selected_, self.published_ = {}, {}, {}
        for label in self.binary_:
            y = y_val[label].to_numpy(np.float64)
            known = ~np.isnan(y)
            own = {name: candidate_column(name, probability_column(label)) for name in BINARY_ORDER}
            per = {name: classification_metrics(y[known], columns[col][known]) for name, col in own.items() if col in columns}
            bases = [name for name in BINARY_ORDER if (name, label) in raw]
            if len(bases) >= 2:
                P = np.column_stack([raw[name, label][known] for name in bases])
                stack = LogitStack(folds=self.stack_folds, seed=self.seed)
                oof = stack.cross_fit_predict(P, y[known])
                if oof is not None:
                    per[STACK] = {**classification_metrics(y[known], oof), "scores": "cross-fitted (out of fold)"}
                    self.stacks_[label] = stack.fit(P, y[known], bases)
            self.validation_[label] = per
            self.selected_[label] = select({n: m.get("roc_auc") for n, m in per.items()}, BINARY_ORDER, self.tolerance)
        for target in self.continuous_:
            y = y_val[target].to_numpy(np.float64)
            known = ~np.isnan(y)
            own = {name: candidate_column(name, prediction_column(target)) for name in REGRESSION_ORDER}
            per = {name: regression_metrics(y[known], columns[col][known]) for name, col in own.items() if col in columns}
            chosen = select({n: m.get("r2") for n, m in per.items()}, REGRESSION_ORDER, self.tolerance)
            self.validation_[target], self.selected_[target] = per, chosen
            r2 = per[chosen]["r2"] if chosen else None
            self.published_[target] = chosen if r2 is not None and r2 > 0 else None
        return self

    def reselect_by_cross_validation(self, inputs: CandidateInputs, labels: pd.DataFrame, rows: np.ndarray,
                                     folds: int = 5) -> dict:
        """Choose each binary label's candidate by its mean ROC-AUC over `folds` refits on `rows`
        (the labelled training + validation customers), each scored on the fold it did not see.

        With a few hundred validation customers one split's AUCs differ by more than the
        candidates do; every labelled customer scored once out of fold gives the choice
        several times the evidence. The published models stay the ones fitted on the training
        split (calibrated on validation): only the choice changes. The stack, itself fitted on
        a validation split, is not a contender here. {label: {"cv_roc_auc": {...}, "selected": name}}.
        """
        check_is_fitted(self, "selected_")
        pool = np.flatnonzero(rows)
        inputs = dataclasses.replace(inputs, finetuned=None)  # in-sample on training rows: not refittable per fold
        if "finetuned" in self.fits_:
            self.notes_["finetuned"] = ("not a contender under cross-validated selection: the encoder was fine-tuned on "
                                        "the training customers, so their scores are in-sample; reported on test")
        out = {}
        for label in self.binary_:
            y = labels[label].to_numpy(np.float64)[pool]
            known = pool[~np.isnan(y)]
            y_known = labels[label].to_numpy(np.float64)[known]
            per_fold: dict[str, list[float]] = {}
            for fit_pos, held_pos in StratifiedKFold(folds, shuffle=True, random_state=self.seed).split(known, y_known):
                a, b = known[fit_pos], known[held_pos]
                fold = PropensityModel(heads=self.heads, tolerance=self.tolerance, stack_folds=self.stack_folds, seed=self.seed)
                fold.fit(inputs.take(a), labels.iloc[a][[label]], inputs.take(b), labels.iloc[b][[label]], kinds=([label], []))
                for name, metrics in fold.validation_[label].items():
                    if name != STACK and metrics.get("roc_auc") is not None:
                        per_fold.setdefault(name, []).append(metrics["roc_auc"])
            cv = {name: float(np.mean(v)) for name, v in per_fold.items() if len(v) == folds}
            chosen = select(cv, BINARY_ORDER, self.tolerance)
            if chosen is not None and f"{chosen}" in self.fits_:
                self.selected_[label] = chosen
            out[label] = {"cv_roc_auc": {k: round(v, 4) for k, v in cv.items()}, "selected": self.selected_[label]}
        self.cross_validation_ = out
        return out

    # scoring ----------------------------------------------------------------------------------

    def _columns(self, inputs: CandidateInputs, fits: set[str]) -> tuple[dict, dict]:
        """Calibrated `<candidate>__p_<label>` / `<candidate>__pred_<target>` columns of the given
        fits (and the stacks they feed), plus the uncalibrated probabilities {(fit, label): p}."""
        if list(inputs.aggregates.columns.astype(str)) != self.aggregate_columns_:
            raise ValueError("the aggregates have other columns than the propensity models were fitted on: build them "
                             "with the run's aggregate builder (aggregates.json)")
        columns, raw = {}, {}
        for name in [c.name for c in CANDIDATES if c.name in fits and c.name in self.fits_]:
            cand, model = next(c for c in CANDIDATES if c.name == name), self.fits_[name]
            X, rfm = inputs.matrix(cand.source), inputs.rfm if cand.kind is None else None
            P = model.predict_proba(X, rfm, calibrated=False)
            for j, (label, p) in enumerate(zip(model.binary_, model.calibrate_proba(P).T)):
                columns[candidate_column(name, probability_column(label))], raw[name, label] = p, P[:, j]
            for target, pred in zip(model.continuous_, model.predict(X, rfm).T):
                columns[candidate_column(cand.regressor, prediction_column(target))] = pred
        for label, stack in self.stacks_.items():
            if all((b, label) in raw for b in stack.inputs_):
                bases = np.column_stack([raw[b, label] for b in stack.inputs_])
                columns[candidate_column(STACK, probability_column(label))] = stack.predict_proba(bases)
        return columns, raw

    def required_fits(self, names: Sequence[str] | None = None) -> set[str]:
        """The fitted candidates that scoring `names` (default: every published choice) needs."""
        check_is_fitted(self, "selected_")
        if names is None:
            names = [self.selected_[b] for b in self.binary_ if self.selected_.get(b)]
            names += [n for n in self.published_.values() if n]
        fits = {FIT_OF[n] for n in names if n != STACK}
        if STACK in names:
            fits |= {b for label, stack in self.stacks_.items() if self.selected_.get(label) == STACK for b in stack.inputs_}
        return fits

    def candidate_scores(self, inputs: CandidateInputs) -> pd.DataFrame:
        """Every available candidate's column for every label (`<candidate>__p_<label>`, `..__pred_<target>`)."""
        check_is_fitted(self, "selected_")
        return pd.DataFrame(self._columns(inputs, set(self.fits_))[0])

    def scores(self, inputs: CandidateInputs) -> pd.DataFrame:
        """The published scores: `p_<label>` from each label's chosen candidate, `pred_<target>` for
        targets whose chosen regressor has validation R² > 0."""
        columns, _ = self._columns(inputs, self.required_fits())
        return pd.DataFrame(self.published_from(columns), index=pd.RangeIndex(len(inputs)))

    def published_from(self, columns) -> dict:
        """{published score column: the chosen candidate's column} out of candidate columns."""
        check_is_fitted(self, "selected_")
        out = {probability_column(b): columns[candidate_column(self.selected_[b], probability_column(b))]
               for b in self.binary_ if self.selected_.get(b)}
        out.update({prediction_column(t): columns[candidate_column(n, prediction_column(t))]
                    for t, n in self.published_.items() if n})
        return out

    # persistence (the file format: eventseg.propensity.persistence) ------------------------------

    def save(self, path: str | os.PathLike, candidates: str = "selected") -> Path:
        """model.json + one heads directory per fitted candidate the published scores need
        (`candidates="selected"`) or every candidate (`"all"`)."""
        if candidates not in ("selected", "all"):
            raise ValueError(f"candidates must be 'selected' or 'all', got {candidates!r}")
        fits = self.required_fits() if candidates == "selected" else set(self.fits_)
        stacks = {label: s.to_dict() for label, s in self.stacks_.items()
                  if all(b in fits for b in s.inputs_) and (candidates == "all" or self.selected_.get(label) == STACK)}
        meta = {
            "format": MODEL_FORMAT,
            "params": {**self.get_params(), "heads": None if self.heads is None else dict(self.heads)},
            "binary": self.binary_, "continuous": self.continuous_,
            "selected": self.selected_, "published": self.published_,
            "aggregate_columns": self.aggregate_columns_, "notes": self.notes_,
            "fits": sorted(fits), "stacks": stacks,
        }
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.mkdir()
            for name in sorted(fits):
                self.fits_[name].save(tmp / name)
            (tmp / MODEL_FILE).write_text(json.dumps(meta, indent=2, default=str))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PropensityModel":
        """A model written by save(); every part loads as PropensityHeads.load does (no code from files)."""
        path = Path(path)
        if not (path / MODEL_FILE).exists():
            if (path / HEADS_FILE).exists():
                raise HeadsFileError(f"{path} holds heads written by an older eventseg (no {MODEL_FILE}: one model for "
                                     f"every label, without the choice between candidates). {REMEDY}")
            raise FileNotFoundError(f"{path} holds no saved propensity model (no {MODEL_FILE})")
        meta = read_saved_json(path / MODEL_FILE)
        try:
            if meta["format"] != MODEL_FORMAT:
                raise ValueError(f"format {meta['format']!r}, expected {MODEL_FORMAT!r}")
            fits = [str(f) for f in meta["fits"]]
            if not set(fits) <= set(FIT_OF.values()) or any(not re.fullmatch(r"[a-z_]+", f) for f in fits):
                raise ValueError(f"unknown candidate(s) {sorted(set(fits) - set(FIT_OF.values()))}")
            model = cls(**meta["params"])
            model.binary_, model.continuous_ = list(meta["binary"]), list(meta["continuous"])
            model.selected_, model.published_ = dict(meta["selected"]), dict(meta["published"])
            chosen = [model.selected_.get(b) for b in model.binary_] + list(model.published_.values())
            if not all(n is None or n in BINARY_ORDER or n in REGRESSION_ORDER for n in chosen):
                raise ValueError(f"unknown chosen candidate among {chosen}")
            model.aggregate_columns_, model.notes_ = list(meta["aggregate_columns"]), dict(meta["notes"])
            model.stacks_ = {str(label): LogitStack.from_dict(d) for label, d in meta["stacks"].items()}
            unstacked = [b for b in model.binary_ if model.selected_.get(b) == STACK and b not in model.stacks_]
            if unstacked:
                raise ValueError(f"no stack saved for {unstacked}, which publish the stack's scores")
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise HeadsFileError(f"{path / MODEL_FILE} is corrupt ({type(err).__name__}: {err}). {REMEDY}") from None
        absent = [name for name in fits if not (path / name / HEADS_FILE).exists()]
        if absent:
            raise HeadsFileError(f"{path} lacks the saved candidate(s) {absent} that {MODEL_FILE} lists. {REMEDY}")
        model.validation_ = {}
        model.fits_ = {name: PropensityHeads.load(path / name) for name in fits}
        missing = sorted(model.required_fits() - set(model.fits_))
        if missing:
            raise HeadsFileError(f"{path} lacks the saved candidate(s) {missing} that its published scores need. {REMEDY}")
        return model
