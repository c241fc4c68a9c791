"""Segments over time: re-score every customer at each as-of date with the run's frozen model.

At each cutoff every customer with events before it is embedded from that history alone, placed
in the run's segments and scored by the run's heads (`eventseg.apps.score.FrozenRun`: nothing is
refitted, so a move between segments is the customer's behaviour moving, not the model). Between
consecutive cutoffs: membership churn (beside the analyst's baseline, k-means on RFM frozen at
the first cutoff), flows, segment shares, drift against the run's own customers, and a backtest
of the earlier date's scores once the events cover their horizon. Outputs in <run>/monitor/.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from eventseg.apps.monitor.alerts import Thresholds, period_alerts, refresh_verdict
from eventseg.apps.monitor.backtest import backtest, reference_metrics
from eventseg.apps.monitor.drift import embedding_drift_auc, psi_table, sample_rows
from eventseg.apps.monitor.inputs import check_cutoff_range, parse_cutoffs, read_monitored_events
from eventseg.apps.monitor.membership import membership_churn, size_changes, transitions
from eventseg.apps.score import FrozenRun
from eventseg.data.ids import check_id_kind
from eventseg.data.labels import check_purchase_filter
from eventseg.data.schema import OUTPUT_ID
from eventseg.features.aggregates import rfm_from_aggregates
from eventseg.run.artifacts import atomic_path, read_json_if_exists, write_json, write_parquet, write_sidecar
from eventseg.run.columns import score_names
from eventseg.run.errors import ConfigError, RunError
from eventseg.run.layout import RunLayout, entry_name
from eventseg.segmentation.clusterer.broad import check_stickiness
from eventseg.segmentation.predictiveness import RFMKMeans

RFM_FIT_SAMPLE = 50_000  # k-means on RFM fitted on at most this many customers of the first cutoff


def monitor_run(run_dir: str | os.PathLike, events, cutoffs, *, thresholds: Thresholds | None = None,
                horizon_days: int | None = None, purchase_filter=None, psi_bins: int = 10,
                drift_sample: int = 5_000, stickiness: float = 0.25, smoothing: float = 1.0, seed: int = 0,
                device: str = "auto", report: bool = True) -> dict:
    """Score `events` at each of `cutoffs` with the run in `run_dir`; write <run>/monitor/; return the summary."""
    run = Path(run_dir)
    thresholds = thresholds or Thresholds()
    if not 0.0 < float(smoothing) <= 1.0:
        raise ConfigError(f"smoothing must be in (0, 1] (1: place on this date's scores alone), got {smoothing}")
    stickiness = check_stickiness(stickiness)
    cutoffs = parse_cutoffs(cutoffs)
    frozen = FrozenRun(run, device=device)  # refuses a missing, incomplete, tampered or other-version run
    if frozen.aggregate_builder is None:
        raise RunError(f"{run} has no aggregate builder (aggregates.json): re-run eventseg run with "
                       "this version so monitoring can measure drift and the RFM baseline")
    schema = frozen.schema
    run_cfg = frozen.manifest.get("config") or {}
    labels_cfg = run_cfg.get("labels") or {}
    horizon = int(horizon_days or labels_cfg.get("horizon_days") or 30)
    purchases = check_purchase_filter(purchase_filter if purchase_filter is not None
                                      else labels_cfg.get("purchase_filter"), schema)
    df = read_monitored_events(frozen, events)
    run_customers = pd.read_parquet(RunLayout(run).customers)
    check_id_kind(df[schema.id_col], run_customers[OUTPUT_ID], schema.id_col, "the monitored events")
    check_cutoff_range(df, schema.time_col, cutoffs)

    context = {"df": df, "schema": schema, "horizon": horizon, "purchases": purchases, "psi_bins": psi_bins,
               "reference": _reference_population(run, run_customers),
               "refs": reference_metrics(read_json_if_exists(RunLayout(run).propensity_metrics))}
    n_segments = int((frozen.segments.query("level == 'broad'")["segment"] >= 0).sum())
    dates, assignments, seconds = [], [], {}
    rfm_model = smoothed = None
    for i, cutoff in enumerate(cutoffs):
        t0 = time.perf_counter()
        described = frozen.describe(df, cutoff)
        t1 = time.perf_counter()
        placing = smoothed = _smoothed(described.scores, smoothed, smoothing)
        customers = frozen.place(described, outcomes=placing, previous=dates[-1]["segment"] if dates else None,
                                 stickiness=stickiness)
        t2 = time.perf_counter()
        rfm = rfm_from_aggregates(described.aggregates, schema)
        if rfm_model is None:  # the analyst's segmentation, frozen at the first cutoff like ours is at the run's
            rfm_model = RFMKMeans(max(n_segments, 1), seed).fit(rfm.iloc[sample_rows(len(rfm), RFM_FIT_SAMPLE, seed)])
        ids = customers[OUTPUT_ID].to_numpy()
        rfm_groups = rfm_model.predict(rfm, _previous(dates, "rfm", ids), stickiness)
        dates.append(_date_measures(cutoff, customers, described, rfm_groups, context,
                                    sample_rows(len(ids), drift_sample, seed + i)))
        keep = [OUTPUT_ID, "segment", "subsegment", *score_names(customers.columns, binary=True)]
        assignments.append(customers[keep].assign(cutoff=cutoff))
        t3 = time.perf_counter()
        seconds[str(cutoff.date())] = {"embed_and_score": round(t1 - t0, 2), "place": round(t2 - t1, 2),
                                       "measure": round(t3 - t2, 2), "total": round(t3 - t0, 2)}
        print(f"[monitor] {cutoff.date()}: {len(ids):,} customers scored in {t3 - t0:.1f} s")

    periods = [_period(before, after, thresholds, seed) for before, after in zip(dates, dates[1:])]
    refresh, reasons = refresh_verdict(periods)
    summary = {
        "run_dir": str(run), "cutoffs": [str(c.date()) for c in cutoffs], "horizon_days": horizon,
        "stickiness": stickiness, "smoothing": smoothing, "thresholds": thresholds.__dict__,
        "drift_reference": "the run's own customers at its cutoff",
        "periods": periods, "refresh_recommended": refresh, "refresh_reasons": reasons,
        "latest_backtest": _latest_backtest(dates), "seconds_per_cutoff": seconds,
    }
    _write_outputs(RunLayout(run).monitor, assignments, dates, summary)
    if report:
        from eventseg.report import rebuild_run_report

        rebuild_run_report(run)
    return summary


def _date_measures(cutoff: pd.Timestamp, customers: pd.DataFrame, described, rfm_groups: np.ndarray, context: dict,
                   sample: np.ndarray) -> dict:
    """What one date contributes to the periods around it: segments, baseline groups, a sample of
    embeddings, drift against the run's customers, and the backtest of this date's scores."""
    ids = customers[OUTPUT_ID].to_numpy()
    scores = customers[score_names(customers.columns)]
    reference = context["reference"]
    return {
        "cutoff": cutoff,
        "segment": pd.Series(customers["segment"].to_numpy(), index=ids),
        "rfm": pd.Series(rfm_groups, index=ids),
        "embeddings": described.embeddings[sample],
        "drift": {"features": psi_table(reference["features"], described.aggregates, context["psi_bins"]),
                  "scores": psi_table(reference["scores"], scores, context["psi_bins"])},
        "backtest": backtest(context["df"], context["schema"], cutoff, customers, horizon_days=context["horizon"],
                             purchase_filter=context["purchases"], references=context["refs"]),
    }


def _write_outputs(out: Path, assignments: list[pd.DataFrame], dates: list[dict], summary: dict) -> None:
    """The three files as one folder, renamed into place only when all are written: a failure
    leaves the previous monitoring whole, never a new summary beside old assignments."""
    table = pd.concat(assignments, ignore_index=True)
    table = table[[OUTPUT_ID, "cutoff", *[c for c in table.columns if c not in (OUTPUT_ID, "cutoff")]]]
    flows = pd.concat([transitions(a["segment"], b["segment"]).assign(from_cutoff=a["cutoff"], to_cutoff=b["cutoff"])
                       for a, b in zip(dates, dates[1:])], ignore_index=True)
    with atomic_path(out) as tmp:
        assignments_path = tmp / entry_name(RunLayout.monitor_assignments)
        write_parquet(table, assignments_path)
        write_sidecar(assignments_path, rows=len(table), run_dir=summary["run_dir"], cutoffs=summary["cutoffs"])
        write_parquet(flows[["from_cutoff", "to_cutoff", "from_segment", "to_segment", "customers"]],
                      tmp / entry_name(RunLayout.monitor_transitions))
        write_json(summary, tmp / entry_name(RunLayout.monitor_summary))


def _smoothed(scores: pd.DataFrame | None, earlier: pd.DataFrame | None, weight: float) -> pd.DataFrame | None:
    """Scores to place by: `weight` × this date's + (1 − weight) × the earlier smoothed ones
    (a customer seen for the first time: their own), so one quiet month moves a placement less
    than a lasting change does. The published p_ columns stay this date's own."""
    if scores is None or earlier is None or weight >= 1.0:
        return scores
    now = scores.set_index(OUTPUT_ID)
    before = earlier.set_index(OUTPUT_ID).reindex(now.index)
    return (weight * now + (1.0 - weight) * before).fillna(now).reset_index()


def _previous(dates: list[dict], key: str, ids: np.ndarray) -> np.ndarray | None:
    """The last date's groups for these customers (−2: not seen then), or None at the first date."""
    if not dates:
        return None
    return dates[-1][key].reindex(ids).fillna(-2).to_numpy(dtype=np.int64)


def _reference_population(run: Path, run_customers: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """What drift is measured against: the run's aggregate features and published scores."""
    aggregates = RunLayout(run).aggregates
    features = pd.read_parquet(aggregates) if aggregates.exists() else pd.DataFrame()
    scores = run_customers[score_names(run_customers.columns)]
    return {"features": features.drop(columns=[OUTPUT_ID], errors="ignore"), "scores": scores}


def _period(before: dict, after: dict, thresholds: Thresholds, seed: int) -> dict:
    both, churn = membership_churn(before["segment"], after["segment"])
    _, rfm_churn = membership_churn(before["rfm"], after["rfm"])
    period = {
        "from": str(before["cutoff"].date()), "to": str(after["cutoff"].date()),
        "customers_from": int(len(before["segment"])), "customers_to": int(len(after["segment"])),
        "customers_both": both, "new_customers": int(len(after["segment"].index.difference(before["segment"].index))),
        "membership_churn": None if churn is None else round(churn, 4),
        "rfm_kmeans_churn": None if rfm_churn is None else round(rfm_churn, 4),
        "size_changes": size_changes(before["segment"], after["segment"]),
        "drift": {**after["drift"], "embedding_auc": embedding_drift_auc(before["embeddings"], after["embeddings"],
                                                                          seed=seed)},
        "backtest": {"scored_at": str(before["cutoff"].date()), **before["backtest"]},
    }
    period["alerts"] = period_alerts(period, thresholds)
    return period


def _latest_backtest(dates: list[dict]) -> dict | None:
    """The most recent cutoff whose horizon is over: how the frozen heads do now."""
    for d in reversed(dates):
        if d["backtest"].get("status") == "scored":
            return {"scored_at": str(d["cutoff"].date()), **d["backtest"]}
    return None


def monitor_from_config(cfg) -> dict:
    """eventseg monitor: run_dir + a data config of events + cutoffs → <run_dir>/monitor/."""
    from omegaconf import OmegaConf

    from eventseg.data.sources import resolve_source

    summary = monitor_run(
        cfg.run_dir, resolve_source(cfg.data), OmegaConf.to_container(cfg.cutoffs) if cfg.cutoffs is not None else None,
        thresholds=Thresholds.from_config(OmegaConf.to_container(cfg.thresholds)),
        horizon_days=cfg.backtest.horizon_days, purchase_filter=cfg.backtest.purchase_filter,
        psi_bins=int(cfg.psi_bins), drift_sample=int(cfg.drift_sample), stickiness=float(cfg.stickiness),
        smoothing=float(cfg.smoothing), seed=int(cfg.seed),
        device=str(cfg.device), report=bool(cfg.report))
    return {
        "monitor": str(RunLayout(cfg.run_dir).monitor),
        "periods": [{"from": p["from"], "to": p["to"], "membership_churn": p["membership_churn"],
                     "rfm_kmeans_churn": p["rfm_kmeans_churn"], "alerts": len(p["alerts"])} for p in summary["periods"]],
        "refresh_recommended": summary["refresh_recommended"], "refresh_reasons": summary["refresh_reasons"],
    }
