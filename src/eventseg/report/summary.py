"""metrics.json: one summary of a run for people and for downstream checks — the data, training
against its constant guess, the published heads against RFM with intervals, and the segments
(count, coverage, stability, η² against RFM k-means) — read from the files the stages wrote."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eventseg import __version__
from eventseg.run.artifacts import read_json_if_exists as _read
from eventseg.run.layout import RunLayout


def _data_facts(run: Path, name: str, horizon_days: int | None) -> dict:
    report = _read(RunLayout(run).prepare_report) or {}
    return {"name": name, "customers": report.get("n_customers"), "events": report.get("n_events_stored"),
            "cutoff": report.get("cutoff"), "horizon_days": horizon_days,
            "customers_truncated": report.get("customers_truncated"), "events_truncated": report.get("events_truncated"),
            "max_len": report.get("max_len")}


def _training(train: dict | None, objective: str) -> dict | None:
    if not train:
        return None
    vs = train.get("future_vs_constant") or {}
    constant, loss = vs.get("constant"), vs.get("val_loss", train.get("best_val_loss"))
    return {"objective": objective, "val_loss": loss, "constant_guess": constant,
            "vs_constant": None if not constant or loss is None else round(loss / constant, 4),
            "beats_constant_guess": train.get("beats_constant_guess"), "steps": train.get("global_steps")}


def _propensity(metrics: dict | None) -> dict | None:
    if not metrics:
        return None
    out = {}
    for label, outcome in metrics.get("outcomes", {}).items():
        candidates = outcome.get("candidates") or {}
        chosen = candidates.get(outcome.get("selected")) or {}
        row = {"kind": outcome.get("kind"), "selected": outcome.get("selected"), "verdict": outcome.get("verdict")}
        if outcome.get("kind") == "binary":
            vs = chosen.get("test_roc_auc_vs_rfm_logistic") or {}
            row.update(test_roc_auc=(chosen.get("test") or {}).get("roc_auc"),
                       rfm_roc_auc=((candidates.get("rfm_logistic") or {}).get("test") or {}).get("roc_auc"),
                       diff_vs_rfm={"estimate": vs.get("difference"), "lo": vs.get("ci_low"), "hi": vs.get("ci_high")})
        else:
            row.update(published=outcome.get("published"), test_r2=(chosen.get("test") or {}).get("r2"))
        out[label] = row
    return out


def _segments(cluster: dict | None, predictive: dict | None) -> dict | None:
    if not cluster:
        return None
    stability = (cluster.get("broad") or {}).get("stability") or {}
    eta2 = None
    if predictive:
        eta2 = {label: {**r["eta2"], "diff_vs_rfm": r.get("diff_vs_rfm"), "verdict": r.get("verdict")}
                for label, r in predictive.get("outcomes", {}).items()}
    return {"n_broad": cluster.get("n_clusters"), "n_micro": cluster.get("n_subsegments"),
            "coverage": cluster.get("coverage"), "outlier_share": cluster.get("outlier_share"),
            "largest_share": cluster.get("largest_share"), "broad_space": (cluster.get("broad") or {}).get("space"),
            "stability": {k: stability.get(k) for k in ("ari_resample_mean", "ari_seed")}, "eta2": eta2}


def _verdict(propensity: dict | None) -> str | None:
    """One line in words: do the published scores beat RFM here, per label."""
    if not propensity:
        return None
    parts = [f"{label}: {r['verdict']}" for label, r in propensity.items() if r.get("kind") == "binary" and r.get("verdict")]
    return "; ".join(parts) or None


def run_summary(run_dir: str | Path, *, data_name: str, objective: str, representation: str,
                horizon_days: int | None) -> dict[str, Any]:
    run = Path(run_dir)
    propensity = _propensity(_read(RunLayout(run).propensity_metrics))
    return {
        "data": _data_facts(run, data_name, horizon_days),
        "training": _training(_read(RunLayout(run).train_metrics), objective),
        "propensity": propensity,
        "segments": _segments(_read(RunLayout(run).cluster_metrics), _read(RunLayout(run).segment_metrics)),
        "representation": representation,
        "verdict": _verdict(propensity),
        "eventseg_version": __version__,
    }
