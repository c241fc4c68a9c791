"""Everything the report shows, read once from a run folder into one typed object, so the page
(and a notebook calling the visualize_* functions) never reaches into files itself.

Only segments.parquet and customers.parquet are required: a run without labels has no
propensity files, and older runs lack metrics.json or the observed/rule/action columns; the
page says what is missing instead of failing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from eventseg.propensity.selection import BASELINES
from eventseg.report.summary import run_summary
from eventseg.run.artifacts import read_json_if_exists as _read_json
from eventseg.run.columns import candidate_column, observed_column, probability_column
from eventseg.run.layout import RunLayout

PUBLISHED = " (published)"  # appended to the published candidate's name in legends and tables


@dataclass(frozen=True)
class LabelScores:
    """One binary label on test customers: what happened (y) and each shown candidate's score."""

    y: np.ndarray
    scores: dict[str, np.ndarray]


@dataclass
class ReportInputs:
    segments: pd.DataFrame
    customers: pd.DataFrame
    title: str = "eventseg report"
    representation: str = "embedding"
    ids: np.ndarray | None = None  # the map: ids and the matrix that was clustered
    matrix: np.ndarray | None = None
    summary: dict | None = None  # metrics.json
    cluster_metrics: dict = field(default_factory=dict)
    segment_metrics: dict | None = None  # η² by segment vs RFM k-means
    propensity_metrics: dict | None = None
    predictions: dict[str, LabelScores] = field(default_factory=dict)
    monitor: dict | None = None  # monitor/summary.json, after eventseg monitor
    monitor_transitions: pd.DataFrame | None = None
    audit: dict | None = None  # audit.json, after eventseg audit

    @property
    def broad(self) -> pd.DataFrame:
        return self.segments[self.segments["level"] == "broad"]

    @property
    def micro(self) -> pd.DataFrame:
        return self.segments[self.segments["level"] == "micro"]

    @property
    def binary_labels(self) -> list[str]:
        """Labels with a predicted probability per segment, in the propensity stage's order."""
        have = [c[len("mean_p_"):] for c in self.segments.columns if c.startswith("mean_p_")]
        order = ((self.propensity_metrics or {}).get("labels") or {}).get("binary") or []
        return [lab for lab in order if lab in have] + [lab for lab in have if lab not in order]

    @property
    def continuous_labels(self) -> list[str]:
        return list(((self.propensity_metrics or {}).get("labels") or {}).get("continuous") or [])

    @property
    def observed_labels(self) -> list[str]:
        """Labels whose outcome was observed per segment (observed_<label> columns)."""
        out = []
        for c in self.segments.columns:
            if c.startswith("observed_") and not c.startswith("observed_lift_") and c != "observed_n" \
                    and not c.endswith(("_lo", "_hi")):
                out.append(c[len("observed_"):])
        return out

    @property
    def has_labels(self) -> bool:
        return bool(self.propensity_metrics or self.binary_labels or self.observed_labels)

    @classmethod
    def from_run(cls, run_dir: str | Path, *, title: str = "eventseg report",
                 representation: str = "embedding") -> "ReportInputs":
        run = RunLayout(run_dir)
        propensity = _read_json(run.propensity_metrics)
        ids, matrix = _map_matrix(run, representation)
        return cls(
            segments=pd.read_parquet(run.segments),
            customers=pd.read_parquet(run.customers),
            title=title, representation=representation, ids=ids, matrix=matrix,
            summary=_summary(run, representation),
            cluster_metrics=_read_json(run.cluster_metrics) or {},
            segment_metrics=_read_json(run.segment_metrics),
            propensity_metrics=propensity,
            predictions=_test_predictions(run.propensity_scores, propensity),
            monitor=_read_json(run.monitor_summary),
            monitor_transitions=_read_parquet_if_exists(run.monitor_transitions),
            audit=_read_json(run.audit),
        )


def _read_parquet_if_exists(path: Path) -> pd.DataFrame | None:
    return pd.read_parquet(path) if path.exists() else None


def _summary(run: RunLayout, representation: str) -> dict | None:
    """metrics.json; a run written before it existed gets the same summary built from its files."""
    summary = _read_json(run.metrics)
    if summary is not None:
        return summary
    return run_summary(run.root, data_name=None, objective=None, representation=representation, horizon_days=None)


def _map_matrix(run: RunLayout, representation: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The matrix that was clustered: the hybrid representation when the run used it."""
    from eventseg.embedding.embed import load_embeddings

    paths = [run.representation, run.embeddings] if representation == "hybrid" else [run.embeddings]
    for path in paths:
        if path.exists():
            ids, matrix = load_embeddings(path)
            return np.asarray(ids), matrix
    return None, None


def _test_predictions(path: Path, metrics: dict | None) -> dict[str, LabelScores]:
    """Per binary label, test customers' outcomes and the scores of the published candidate, the
    heads and the baselines (propensity_scores.parquet: y__<label>, <model>__p_<label>)."""
    if metrics is None or not path.exists():
        return {}
    scores = pd.read_parquet(path)
    test = scores[scores["split"] == "test"] if "split" in scores.columns else scores
    out = {}
    for label in (metrics.get("labels") or {}).get("binary") or []:
        if observed_column(label) not in test.columns:
            continue
        published = ((metrics.get("outcomes") or {}).get(label) or {}).get("selected")
        known = test[observed_column(label)].notna().to_numpy()
        own = {m: candidate_column(m, probability_column(label)) for m in dict.fromkeys([published, "heads", *BASELINES]) if m}
        shown = [m for m, col in own.items() if col in test.columns]
        out[label] = LabelScores(
            y=test.loc[known, observed_column(label)].to_numpy(dtype=float),
            scores={m + (PUBLISHED if m == published else ""): test.loc[known, own[m]].to_numpy(dtype=float)
                    for m in shown})
    return out
