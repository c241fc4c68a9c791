"""Are the frozen heads still right? Scores made at an as-of date against what then happened.

Labels come from the events after the date exactly as the pipeline builds them
(`eventseg.data.labels.build_labels`: purchase within H days, churn = no event in H days,
spend in H days), so a backtest needs events that cover the whole horizon; a date whose
horizon is not over yet is reported as pending, never scored on a partial window. A head is
backtested when its label has one of those names (a run whose labels came from a file of
other outcomes gets none, and the summary says so).

An AUC drop counts only when it exceeds the configured threshold *and* its 95% interval
(Hanley–McNeil standard errors of both AUCs, independent samples) excludes zero: a few
hundred customers move an AUC by ±0.05 on their own.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from eventseg.data.labels import build_labels
from eventseg.data.schema import OUTPUT_ID, EventSchema
from eventseg.propensity.metrics import classification_metrics, regression_metrics
from eventseg.run.columns import prediction_column, probability_column, score_names
from eventseg.segmentation.profiles import Z95


def auc_standard_error(auc: float, positives: int, negatives: int) -> float | None:
    """Hanley & McNeil (1982): the sampling error of an AUC from its value and class counts."""
    if auc is None or positives < 1 or negatives < 1:
        return None
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)) / (positives * negatives)
    return math.sqrt(max(var, 0.0))


def auc_drop(reference: dict | None, observed: dict) -> dict | None:
    """reference AUC − backtest AUC with a 95% interval; None without both AUCs."""
    if not reference or reference.get("roc_auc") is None or observed.get("roc_auc") is None:
        return None
    ref, now = float(reference["roc_auc"]), float(observed["roc_auc"])
    se_ref = auc_standard_error(ref, int(reference["positives"]), int(reference["n"]) - int(reference["positives"]))
    se_now = auc_standard_error(now, int(observed["positives"]), int(observed["n"]) - int(observed["positives"]))
    drop = ref - now
    out = {"reference_auc": round(ref, 4), "drop": round(drop, 4), "ci_low": None, "ci_high": None}
    if se_ref is not None and se_now is not None:
        half = Z95 * math.hypot(se_ref, se_now)
        out.update(ci_low=round(drop - half, 4), ci_high=round(drop + half, 4))
    return out


def backtest(events: pd.DataFrame, schema: EventSchema, cutoff: pd.Timestamp, scored: pd.DataFrame, *,
             horizon_days: int, purchase_filter=None, references: dict | None = None) -> dict:
    """Per backtestable label at `cutoff`: ROC-AUC, calibration (Brier, ECE, mean score vs rate), drop."""
    end = cutoff + pd.Timedelta(days=int(horizon_days))
    last = events[schema.time_col].max()
    if last < end - pd.Timedelta(days=1):  # the last day of the window must hold data
        return {"status": "pending", "reason": f"the {horizon_days}-day horizon after {cutoff.date()} ends "
                f"{end.date()}; the events end {last.date()}"}
    labels = build_labels(events, schema, cutoff, int(horizon_days), amount_col=schema.amount_col,
                          purchase_filter=purchase_filter)
    labels = labels.rename(columns={schema.id_col: OUTPUT_ID})
    joined = scored.merge(labels, on=OUTPUT_ID, how="inner")
    out: dict = {"status": "scored", "horizon_days": int(horizon_days), "customers": int(len(joined)), "labels": {}}
    for label in [c for c in labels.columns if c != OUTPUT_ID]:
        y = joined[label].to_numpy(dtype=np.float64)
        if probability_column(label) in joined.columns:
            p = joined[probability_column(label)].to_numpy(dtype=np.float64)
            metrics = classification_metrics(y, p)
            metrics["mean_score"] = float(p.mean()) if len(p) else None
            metrics["drop"] = auc_drop((references or {}).get(label), metrics)
            out["labels"][label] = _rounded(metrics)
        elif prediction_column(label) in joined.columns:
            out["labels"][label] = _rounded(regression_metrics(y, joined[prediction_column(label)].to_numpy(dtype=np.float64)))
    if not out["labels"]:
        heads = score_names(scored.columns)
        out["status"] = "not comparable"
        out["reason"] = ("the run has no propensity heads (it was fitted without labels): nothing to backtest" if not heads
                         else f"no head predicts a label built from events ({', '.join(labels.columns[1:])}); "
                              f"the run's heads: {heads}")
    return out


def reference_metrics(propensity_metrics: dict | None) -> dict:
    """label -> the published candidate's test metrics in the run (what a backtest is compared with)."""
    refs = {}
    for label, outcome in ((propensity_metrics or {}).get("outcomes") or {}).items():
        candidate = (outcome.get("candidates") or {}).get(outcome.get("selected") or "", {})
        if candidate.get("test"):
            refs[label] = candidate["test"]
    return refs


def _rounded(d: dict) -> dict:
    return {k: (round(v, 4) if isinstance(v, float) and np.isfinite(v) else v) for k, v in d.items()}
