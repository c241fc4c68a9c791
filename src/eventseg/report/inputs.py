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

from eventseg.artifacts import read_json_if_exists as _read_json
from eventseg.predict.selection import BASELINES
from eventseg.run_summary import run_summary

SUMMARY_FILE = "metrics.json"
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
    monitor: dict | None = None  # monitor/summary.json, after scripts/monitor.py
    monitor_transitions: pd.DataFrame | None = None
    audit: dict | None = None  # audit.json, after scripts/audit.py

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
        run = Path(run_dir)
        propensity = _read_json(run / "propensity_metrics.json")
        ids, matrix = _map_matrix(run, representation)
        return cls(
            segments=pd.read_parquet(run / "segments.parquet"),
            customers=pd.read_parquet(run / "customers.parquet"),
            title=title, representation=representation, ids=ids, matrix=matrix,
            summary=_summary(run, representation),
            cluster_metrics=_read_json(run / "cluster_metrics.json") or {},
            segment_metrics=_read_json(run / "segment_metrics.json"),
            propensity_metrics=propensity,
            predictions=_test_predictions(run / "propensity_scores.parquet", propensity),
            monitor=_read_json(run / "monitor" / "summary.json"),
            monitor_transitions=_read_parquet_if_exists(run / "monitor" / "transitions.parquet"),
            audit=_read_json(run / "audit.json"),
        )


def _read_parquet_if_exists(path: Path) -> pd.DataFrame | None:
    return pd.read_parquet(path) if path.exists() else None


def _summary(run: Path, representation: str) -> dict | None:
    """metrics.json; a run written before it existed gets the same summary built from its files."""
    summary = _read_json(run / SUMMARY_FILE)
    if summary is not None:
        return summary
    return run_summary(run, data_name=None, objective=None, representation=representation, horizon_days=None)


def _map_matrix(run: Path, representation: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The matrix that was clustered: the hybrid representation when the run used it."""
    from eventseg.embed import load_embeddings

    names = ["representation.parquet", "embeddings.parquet"] if representation == "hybrid" else ["embeddings.parquet"]
    for name in names:
        if (run / name).exists():
            ids, matrix = load_embeddings(run / name)
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
        if f"y__{label}" not in test.columns:
            continue
        published = ((metrics.get("outcomes") or {}).get(label) or {}).get("selected")
        known = test[f"y__{label}"].notna().to_numpy()
        shown = [m for m in dict.fromkeys([published, "heads", *BASELINES]) if m and f"{m}__p_{label}" in test.columns]
        out[label] = LabelScores(
            y=test.loc[known, f"y__{label}"].to_numpy(dtype=float),
            scores={m + (PUBLISHED if m == published else ""): test.loc[known, f"{m}__p_{label}"].to_numpy(dtype=float)
                    for m in shown})
    return out
