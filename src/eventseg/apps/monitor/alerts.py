"""Turn a period's measurements into alerts, and all periods into one refresh verdict.

Thresholds are config (configs/monitor.yaml `thresholds`). The verdict recommends a refresh
(retrain, or at least re-fit segments) when the model itself is in question: a backtest AUC
drop beyond noise in any period, or, in the latest period, a propensity score whose PSI
crosses the threshold, embeddings that a classifier tells apart from the previous date's, or
membership churn above the limit. Feature drift alone is an alert, not a verdict: features
may move without the model losing its grip (the backtest says whether it did).
"""

from __future__ import annotations

from dataclasses import dataclass

from eventseg.run.errors import ConfigError

REFRESH_ANY_PERIOD = {"backtest_auc_drop"}
REFRESH_LATEST_PERIOD = {"score_psi", "embedding_drift", "membership_churn"}


@dataclass(frozen=True)
class Thresholds:
    segment_share_change: float = 0.20  # relative change of a segment's share of customers
    psi: float = 0.20
    auc_drop: float = 0.03
    membership_churn: float = 0.15
    embedding_auc: float = 0.75
    min_segment_customers: int = 30  # smaller segments flap; their size changes are not alerted

    @classmethod
    def from_config(cls, cfg) -> "Thresholds":
        values = dict(cfg or {})
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"thresholds.{unknown[0]} is not a monitor threshold; known: {sorted(cls.__dataclass_fields__)}")
        for key, value in values.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"thresholds.{key} must be a non-negative number, got {value!r}")
        return cls(**values)


def period_alerts(period: dict, t: Thresholds) -> list[dict]:
    """Alerts for one period dict (membership_churn, size_changes, drift, backtest)."""
    alerts = []

    def add(kind: str, subject: str, value: float, threshold: float, message: str) -> None:
        alerts.append({"kind": kind, "subject": subject, "value": value, "threshold": threshold, "message": message})

    churn = period.get("membership_churn")
    if churn is not None and churn > t.membership_churn:
        add("membership_churn", "segments", churn, t.membership_churn,
            f"{churn:.0%} of customers changed segment (limit {t.membership_churn:.0%})")
    for row in period.get("size_changes", []):
        change = row["share_change"]
        big = max(row["customers_from"], row["customers_to"]) >= t.min_segment_customers
        if change is not None and big and abs(change) > t.segment_share_change:
            verb = "grew" if change > 0 else "shrank"
            who = "the outliers" if row["segment"] < 0 else f"segment {row['segment']}"
            add("segment_size", who, change, t.segment_share_change,
                f"{who} {verb} by {abs(change):.0%} of {'their' if row['segment'] < 0 else 'its'} share "
                f"({row['share_from']:.1%} → {row['share_to']:.1%})")
    drift = period.get("drift") or {}
    for kind, table in (("score_psi", drift.get("scores") or {}), ("feature_psi", drift.get("features") or {})):
        for name, value in table.items():
            if value > t.psi:
                add(kind, name, value, t.psi, f"{name}: PSI {value:.2f} against the run's customers (limit {t.psi:.2f})")
    auc = drift.get("embedding_auc")
    if auc is not None and auc > t.embedding_auc:
        add("embedding_drift", "embeddings", auc, t.embedding_auc,
            f"a classifier tells this date's embeddings from the previous date's with AUC {auc:.2f} "
            f"(limit {t.embedding_auc:.2f})")
    for label, m in ((period.get("backtest") or {}).get("labels") or {}).items():
        drop = m.get("drop") if isinstance(m, dict) else None
        if drop and drop["drop"] > t.auc_drop and drop["ci_low"] is not None and drop["ci_low"] > 0:
            add("backtest_auc_drop", label, drop["drop"], t.auc_drop,
                f"{label}: ROC-AUC {m['roc_auc']:.3f} against {drop['reference_auc']:.3f} in the run's test "
                f"(−{drop['drop']:.3f}, 95% interval {drop['ci_low']:+.3f} to {drop['ci_high']:+.3f})")
    return alerts


def refresh_verdict(periods: list[dict]) -> tuple[bool, list[str]]:
    """(refresh recommended, the alert messages that decided it)."""
    reasons = [a["message"] for p in periods for a in p["alerts"] if a["kind"] in REFRESH_ANY_PERIOD]
    if periods:
        reasons += [a["message"] for a in periods[-1]["alerts"] if a["kind"] in REFRESH_LATEST_PERIOD]
    return bool(reasons), reasons
