"""What should I do with them: a suggested action per segment from its profile, with the reason."""

from __future__ import annotations

import numpy as np
import pandas as pd

from eventseg.segmentation.profiles import OUTLIERS

# against the median customer (the `<x>_vs_all` ratios) or the mean propensity (lift)
HIGH_VALUE = 1.5  # basket or visits a month this many times all customers'
RISK_LIFT = 1.25  # churn lift that makes a segment "at risk"; the same lift on purchase is "buying"
LAPSING = 1.5  # recency this many times all customers' (as in the segment names)
NEW = 0.5  # tenure at most this share of all customers' (as in the segment names)
RECENT = 1.0  # recency at most all customers': still visiting


def suggest_actions(segments: pd.DataFrame) -> pd.Series:
    """A suggested action per segment row, in a marketer's words with the numbers it rests on.

    Rules, first match wins (value and recency against the median customer, propensities as
    lift over all customers; labels are read by name: "churn..." is churn risk, "purchase..."
    buying propensity; an observed lift stands in where a predicted one is missing):
    outliers -> review individually; high value (basket or visits >= 1.5x) at risk (churn lift
    >= 1.25 or recency >= 1.5x) -> retention offer; new (tenure <= 0.5x) -> onboarding; at risk
    otherwise -> low-cost win-back or suppress; recent (recency <= 1x) and buying (purchase lift
    >= 1.25) -> cross-sell / upsell; high value, not at risk -> loyalty / VIP programme;
    everything else -> nurture.
    """
    churn = _lift_columns(segments, "churn")
    purchase = _lift_columns(segments, "purchase")
    actions = [_action(row, churn, purchase) for _, row in segments.iterrows()]
    return pd.Series(actions, index=segments.index, name="action", dtype="str")


def _lift_columns(segments: pd.DataFrame, prefix: str) -> list[tuple[str, str]]:
    """(column, how it reads) for the lifts of labels named `prefix...`: predicted first, observed after."""
    labels = [c.removeprefix("mean_p_") for c in segments.columns if c.startswith("mean_p_")]
    predicted = [(f"lift_{label}", "") for label in labels if label.startswith(prefix)]
    observed = [(c, "observed ") for c in segments.columns if c.startswith("observed_lift_")
                and c.removeprefix("observed_lift_").startswith(prefix)]
    return [(c, how) for c, how in predicted + observed if c in segments.columns]


def _first_finite(row: pd.Series, columns: list[tuple[str, str]]) -> tuple[float, str]:
    for col, how in columns:
        value = row.get(col)
        if value is not None and np.isfinite(value):
            return float(value), how
    return float("nan"), ""


def _action(row: pd.Series, churn: list, purchase: list) -> str:
    if row["segment"] == OUTLIERS:
        return "review individually (outliers: no segment describes them)"
    ratio = {x: float(row.get(f"{x}_vs_all", np.nan)) for x in ("visits", "basket", "recency", "tenure")}
    churn_lift, churn_how = _first_finite(row, churn)
    buy_lift, buy_how = _first_finite(row, purchase)
    value = [f"{x} x{ratio[x]:.1f}" for x in ("basket", "visits") if ratio[x] >= HIGH_VALUE]
    risk = ([f"{churn_how}churn risk x{churn_lift:.1f}"] if churn_lift >= RISK_LIFT else []) + (
        [f"recency x{ratio['recency']:.1f}"] if ratio["recency"] >= LAPSING else [])
    if value and risk:
        return f"retention offer: high value at risk ({', '.join(value + risk)} vs all customers)"
    if ratio["tenure"] <= NEW:
        return f"onboarding journey (new: tenure x{ratio['tenure']:.1f} vs all customers)"
    if risk:
        return f"low-cost win-back or suppress (at risk, not high value: {', '.join(risk)} vs all customers)"
    if ratio["recency"] <= RECENT and buy_lift >= RISK_LIFT:
        return (f"cross-sell / upsell: already buying (recency x{ratio['recency']:.1f}, "
                f"{buy_how}purchase propensity x{buy_lift:.1f} vs all customers)")
    if value:
        return f"loyalty / VIP programme: high value, not at risk ({', '.join(value)} vs all customers)"
    return "nurture with regular newsletters (no strong value, risk or buying signal)"
