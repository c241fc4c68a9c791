"""Fit every candidate on the customer split, choose per label on validation, report on test.

For each binary label `propensity_metrics.json` says how every candidate did on validation and
test (ROC-AUC, PR-AUC, Brier, top-decile lift, ECE), how far each is from the RFM logistic
regression on test (a paired bootstrap interval: every candidate on the same resamples), which
candidate publishes `p_<label>`, and a plain verdict: "beats RFM by +0.012 [+0.004, +0.020]",
"within noise of RFM: ...", "worse than RFM: ..." or "no better than RFM here: scores come from
RFM logistic". A continuous target whose chosen regressor does not beat the mean on validation
(R² <= 0) is not published, and the metrics say so.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from eventseg.data.labels import align_to_ids, build_labels, label_kinds, parse_purchase_filter, screen_labels
from eventseg.data.schema import OUTPUT_ID, EventSchema, id_key
from eventseg.data.split import SPLITS, TEST, TRAIN, VAL, assign_splits
from eventseg.features.aggregates import AggregateFeatureBuilder, as_validated
from eventseg.propensity.baselines import CandidateInputs
from eventseg.propensity.metrics import (
    classification_metrics,
    paired_auc_differences,
    regression_metrics,
    verdict_number,
)
from eventseg.propensity.selection import (
    BINARY_ORDER,
    DESCRIPTIONS,
    REFERENCE,
    REGRESSION_ORDER,
    TOLERANCE,
    PropensityModel,
)
from eventseg.run.columns import candidate_column, is_candidate_probability, prediction_column, probability_column
from eventseg.run.config import check_known_settings
from eventseg.run.errors import UserError

SELECTION_DEFAULTS = {"tolerance": TOLERANCE, "stack_folds": 5, "n_boot": 1000, "bootstrap_seed": 0,
                      "cv_folds": 5, "cv_max_customers": 10_000}


def binary_verdict(selected: str, vs_reference: Mapping[str, Any]) -> str:
    """The plain sentence for a label: the chosen candidate's test ROC-AUC against RFM's."""
    if selected == REFERENCE:
        return "no better than RFM here: scores come from RFM logistic"
    diff, lo, hi = vs_reference.get("difference"), vs_reference.get("ci_low"), vs_reference.get("ci_high")
    if diff is None or lo is None or hi is None:
        return f"not comparable with RFM on test ({selected}): the test split has too few of one class"
    text = f"{verdict_number(diff, True)} [{verdict_number(lo, True)}, {verdict_number(hi, True)}]"
    if lo > 0:
        return f"beats RFM by {text}"
    if hi < 0:
        return f"worse than RFM: {text}"
    return f"within noise of RFM: {text}"


def regression_verdict(selected: str | None, validation_r2: float | None, published: str | None) -> str:
    if selected is None or validation_r2 is None:
        return "not published: validation R\u00b2 undefined (the target is constant on validation)"
    if published is None:
        return f"not published: validation R\u00b2 {verdict_number(validation_r2)} \u2264 0"
    return f"published from {published}: validation R\u00b2 {verdict_number(validation_r2)}"


def _selection_settings(selection_cfg: Mapping[str, Any] | None) -> dict:
    """The selection settings (propensity.selection), defaults filled in, checked before any fitting."""
    selection = {**SELECTION_DEFAULTS, **dict(selection_cfg or {})}
    check_known_settings(selection, SELECTION_DEFAULTS, "propensity.selection", UserError)
    return selection


def evaluate_propensity(
    ids,
    embeddings,
    labels_df: pd.DataFrame | None,
    events_df: pd.DataFrame,
    schema: EventSchema,
    heads_cfg: Mapping[str, Any] | None = None,
    seed: int = 0,
    *,
    selection_cfg: Mapping[str, Any] | None = None,
    truth: pd.DataFrame | None = None,
    cutoff=None,
    horizon_days: int = 30,
    purchase_filter=None,
    split_fractions=(0.8, 0.1, 0.1),
    top_k_categories: int = 10,
    aggregates: pd.DataFrame | None = None,
    splits: np.ndarray | None = None,
    finetune: Callable[[pd.DataFrame, np.ndarray], np.ndarray] | None = None,
) -> dict:
    """Fit every candidate, choose per label on validation, report test metrics, score everyone.

    ids, embeddings: one row per customer (the representation of history before the cutoff).
    labels_df: customer id + label columns (binary 0/1 or numeric targets); None builds
        them from `events_df` with `cutoff`, `horizon_days` and `purchase_filter`.
    events_df: the events; baseline features use only those strictly before `cutoff`.
    heads_cfg: a configs/heads group: the `heads` candidate's own parameters.
    selection_cfg: how each label's published candidate is chosen (propensity.selection; unset
        keys keep their defaults).
    truth: optional customer id + `p_<label>` (and `expected_<target>`) columns: the oracle.
    seed: the split seed (eventseg.data.split.assign_splits; 0 train, 1 val, 2 test).
    aggregates, splits: a run's own aggregate table (indexed by id, built as of `cutoff`) and
        split codes per id; given, the candidates use them instead of rebuilding either.
    finetune: optional `(binary labels aligned to ids, training-row mask) -> logits [ids, labels]`
        (the pipeline fine-tunes its encoder there, propensity.finetune); the `finetuned` candidate
        is fitted on those logits.

    Returns {"metrics": JSON-ready dict, "scores": DataFrame for every customer (OUTPUT_ID, split,
    published p_<label> / pred_<target>), "candidate_scores": OUTPUT_ID + `<candidate>__p_<label>`
    for every binary candidate, "labels": the modelled labels aligned to `ids`, "model": the fitted
    PropensityModel}.
    """
    started = time.perf_counter()
    ids = np.asarray(ids)
    E = np.asarray(embeddings, dtype=np.float32)
    if E.ndim != 2 or len(E) != len(ids):
        raise ValueError(f"embeddings must be [customers, dim] with one row per id: got {E.shape} for {len(ids)} ids")
    if pd.Index(ids).has_duplicates:
        raise ValueError("embedding customer ids are not unique")
    selection = _selection_settings(selection_cfg)
    flt = parse_purchase_filter(purchase_filter)
    events = as_validated(events_df, schema) if labels_df is None or aggregates is None else None
    if labels_df is None:
        if cutoff is None:
            raise ValueError("no labels: pass a labels table (labels.path) or a cutoff to build them from the events")
        labels_df = build_labels(events, schema, cutoff, horizon_days, amount_col=schema.amount_col, purchase_filter=flt)
        what_counts = f"events with {flt}" if flt else "every event (labels.purchase_filter is null)"
    else:
        what_counts = "given by the labels table" + (f" (labels.purchase_filter={flt} ignored)" if flt else "")
    labels, label_report = align_to_ids(ids, labels_df, id_key(labels_df.columns, schema.id_col), "labels")
    binary, continuous, skipped = label_kinds(labels)
    splits = assign_splits(ids, seed, split_fractions) if splits is None else np.asarray(splits)
    screened = screen_labels(labels, binary, continuous, splits)
    binary, continuous = screened["binary"], screened["continuous"]
    skipped.update(screened["skipped"])
    if not binary and not continuous:
        raise UserError(f"no label can be modelled: {skipped or screened['complements']}")
    labels = labels[binary + continuous]
    labelled = labels.notna().any(axis=1).to_numpy()
    label_report.update(binary=binary, continuous=continuous, skipped=skipped, complements=screened["complements"],
                        purchases=what_counts, unlabelled_customers=int((~labelled).sum()))

    if aggregates is None:
        train_ids = ids[splits == TRAIN]
        builder = AggregateFeatureBuilder(schema, top_k_categories).fit(events.loc[events[schema.id_col].isin(train_ids)], cutoff)
        aggregates = builder.transform(events, cutoff)
    fit_rows = {s: (splits == s) & labelled for s in (TRAIN, VAL)}
    for s, rows in fit_rows.items():
        if not rows.any():
            raise ValueError(f"no labelled customer in the {SPLITS[s]} split: {label_report}")
    tr, va = fit_rows[TRAIN], fit_rows[VAL]
    finetuned = finetune(labels[binary], tr) if finetune is not None and binary else None
    inputs = CandidateInputs.build(E, aggregates.reindex(ids), schema, finetuned=finetuned)
    model = PropensityModel(heads=dict(heads_cfg or {}), tolerance=float(selection["tolerance"]),
                            stack_folds=int(selection["stack_folds"]), seed=seed)
    model.fit(inputs.take(tr), labels[tr], inputs.take(va), labels[va], kinds=(binary, continuous))
    pool = tr | va
    cross_validated = None
    if binary and int(selection["cv_folds"]) > 1 and pool.sum() <= int(selection["cv_max_customers"]):
        cross_validated = model.reselect_by_cross_validation(inputs, labels, pool, int(selection["cv_folds"]))
    columns = model.candidate_scores(inputs)

    oracle, truth_report = None, None
    if truth is not None:
        wanted = [probability_column(c) for c in binary] + [f"expected_{c}" for c in continuous]
        present = [c for c in wanted if c in truth.columns]
        oracle, truth_report = align_to_ids(ids, truth, id_key(truth.columns, schema.id_col), "truth", columns=present)
    test = splits == TEST
    boot = (int(selection["n_boot"]), int(selection["bootstrap_seed"]))
    outcomes = {label: _binary_outcome(label, labels[label].to_numpy(), test, columns, model, oracle, boot) for label in binary}
    outcomes.update({t: _regression_outcome(t, labels[t].to_numpy(), test, columns, model, oracle) for t in continuous})

    metrics = {
        "labels": label_report,
        "split_seed": seed,
        "split_counts": {s: int((splits == i).sum()) for i, s in enumerate(SPLITS)},
        "labelled_split_counts": {s: int(((splits == i) & labelled).sum()) for i, s in enumerate(SPLITS)},
        "features": {"as_of": None if cutoff is None else str(pd.Timestamp(cutoff)), "aggregate_columns": inputs.aggregates.shape[1],
                     "customers_without_history": int(inputs.rfm["frequency"].isna().sum())},  # fmt: skip
        "selection": {
            "rule": (f"highest mean ROC-AUC over {int(selection['cv_folds'])}-fold refits on training + validation "
                     f"({int(pool.sum()):,} labelled customers <= cv_max_customers)" if cross_validated else
                     "highest validation ROC-AUC") + f" (R\u00b2 on validation for targets); a simpler candidate within "
                    f"{model.tolerance} of it wins (baselines first); a target is published only if its chosen "
                    "regressor has validation R\u00b2 > 0",
            "cross_validation": cross_validated,
            "order": list(BINARY_ORDER), "regression_order": list(REGRESSION_ORDER), "tolerance": model.tolerance,
            "reference": REFERENCE, "n_boot": boot[0], "bootstrap_seed": boot[1], "notes": model.notes_,
            "validation_probability_metrics": "Brier and ECE on validation are of scores calibrated on validation "
                                              "itself (optimistic); ranking metrics are unaffected; compare on test",
        },
        "outcomes": outcomes,
        "test": {label: {**{n: c["test"] for n, c in o["candidates"].items()}, **({"oracle": o["oracle"]} if "oracle" in o else {})}
                 for label, o in outcomes.items()},
        "summary": {label: _summary(o) for label, o in outcomes.items()},
        "fit": {name: fit.fit_info_ for name, fit in model.fits_.items()},
        "seconds": round(time.perf_counter() - started, 3),
    }
    if truth_report is not None:
        metrics["truth"] = truth_report

    head = pd.DataFrame({OUTPUT_ID: ids, "split": np.asarray(SPLITS)[splits]})
    candidate_cols = [c for c in columns.columns if is_candidate_probability(c)]
    return {
        "metrics": metrics,
        "scores": pd.concat([head, pd.DataFrame(model.published_from(columns))], axis=1),
        "candidate_scores": pd.concat([head[[OUTPUT_ID]], columns[candidate_cols]], axis=1),
        "labels": pd.concat([head[[OUTPUT_ID]], labels[binary]], axis=1),
        "model": model,
    }


def _oracle_metrics(oracle, column: str, y: np.ndarray, rows: np.ndarray, binary: bool) -> dict | None:
    if oracle is None or column not in oracle.columns:
        return None
    o = oracle[column].to_numpy()
    known = rows & ~np.isnan(o)
    return classification_metrics(y[known], o[known]) if binary else regression_metrics(y[known], o[known])


def _binary_outcome(label: str, y: np.ndarray, test: np.ndarray, columns: pd.DataFrame, model: PropensityModel,
                    oracle, boot: tuple[int, int]) -> dict:
    rows = test & ~np.isnan(y)
    own = {n: candidate_column(n, probability_column(label)) for n in BINARY_ORDER}
    scores = {n: columns[col].to_numpy()[rows] for n, col in own.items() if col in columns}
    names = list(scores)
    vs = paired_auc_differences(y[rows], scores, REFERENCE, n_boot=boot[0], seed=boot[1])
    selected = model.selected_[label]
    out = {
        "kind": "binary", "selected": selected, "published_as": probability_column(label),
        "verdict": binary_verdict(selected, vs[selected]),
        "candidates": {n: {"description": DESCRIPTIONS[n], "validation": model.validation_[label].get(n),
                           "test": classification_metrics(y[rows], scores[n]), f"test_roc_auc_vs_{REFERENCE}": vs[n]}
                       for n in names},  # fmt: skip
    }
    ceiling = _oracle_metrics(oracle, probability_column(label), y, rows, True)
    if ceiling is not None:
        out["oracle"] = ceiling
    return out


def _regression_outcome(target: str, y: np.ndarray, test: np.ndarray, columns: pd.DataFrame, model: PropensityModel,
                        oracle) -> dict:
    rows = test & ~np.isnan(y)
    own = {n: candidate_column(n, prediction_column(target)) for n in REGRESSION_ORDER}
    names = [n for n, col in own.items() if col in columns]
    selected, published = model.selected_[target], model.published_[target]
    r2 = model.validation_[target][selected]["r2"] if selected else None
    out = {
        "kind": "continuous", "selected": selected, "published": published is not None,
        "published_as": prediction_column(target) if published else None,
        "verdict": regression_verdict(selected, r2, published),
        "candidates": {n: {"description": DESCRIPTIONS[n], "validation": model.validation_[target].get(n),
                           "test": regression_metrics(y[rows], columns[own[n]].to_numpy()[rows])}
                       for n in names},  # fmt: skip
    }
    ceiling = _oracle_metrics(oracle, f"expected_{target}", y, rows, False)
    if ceiling is not None:
        out["oracle"] = ceiling
    return out


def _summary(outcome: dict) -> dict:
    """Headline per label: the chosen candidate, the verdict, and each candidate's test ROC-AUC or R²."""
    key = "roc_auc" if outcome["kind"] == "binary" else "r2"
    row = {name: c["test"].get(key) for name, c in outcome["candidates"].items()}
    if "oracle" in outcome:
        row["oracle"] = outcome["oracle"].get(key)
    return {**row, "metric": key, "selected": outcome["selected"], "verdict": outcome["verdict"]}


def verdict_lines(metrics: Mapping[str, Any]) -> list[str]:
    """One console line per label: the chosen candidate and the verdict, skips and complements."""
    lines = []
    cross_validated = (metrics.get("selection") or {}).get("cross_validation") or {}
    for label, o in metrics["outcomes"].items():
        if o["kind"] == "binary" and label in cross_validated:
            cv = cross_validated[label]["cv_roc_auc"].get(o["selected"])
            lines.append(f"{label}: {o['selected']} chosen (mean out-of-fold ROC-AUC {verdict_number(cv)}); {o['verdict']}")
        elif o["kind"] == "binary":
            val = o["candidates"][o["selected"]]["validation"]["roc_auc"]
            lines.append(f"{label}: {o['selected']} chosen (validation ROC-AUC {verdict_number(val)}); {o['verdict']}")
        else:
            best = f" (best candidate: {o['selected']})" if o["selected"] and not o["published"] else ""
            lines.append(f"{label}: {o['verdict']}{best}")
    if "ignored" in metrics["labels"].get("purchases", ""):
        lines.append(f"purchases: {metrics['labels']['purchases']}")
    lines += [f"{label}: {note}" for label, note in metrics["labels"].get("complements", {}).items()]
    lines += [f"{label}: skipped: {why}" for label, why in metrics["labels"].get("skipped", {}).items()]
    if "finetuned" in metrics["selection"].get("notes", {}):
        lines.append(f"finetuned: {metrics['selection']['notes']['finetuned']}")
    return lines
