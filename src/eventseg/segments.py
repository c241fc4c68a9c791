"""Predictive segments: join clusters and propensity scores per customer, then describe each
segment by size, likely behaviour (propensity and lift with intervals) and a behavioural
profile, and give it a readable name derived from that profile.

Noise customers are an explicit "Unsegmented" group (segment -1), never a silent drop.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from eventseg.data.schema import OUTPUT_ID
from eventseg.features import OTHER

UNSEGMENTED = -1
CORE_PROFILE = ("recency", "frequency", "monetary", "tenure")
Z95 = 1.96


def build_customers(clusters: pd.DataFrame, scores: pd.DataFrame | None = None, tier_quantiles=(1 / 3, 2 / 3),
                    tier_cuts: dict[str, tuple[float, float]] | None = None) -> pd.DataFrame:
    """One row per clustered customer: segment, strength, outlier flag, p_<label> and tiers.

    Tiers cut each propensity at the given quantiles over these customers (low / medium /
    high), or at fixed `tier_cuts` {p_<label>: (low_max, medium_max)}: scoring new customers
    reuses the training population's cuts, so a tier means the same thing in every batch.
    """
    out = clusters.rename(columns={"cluster": "segment"}).copy()
    out["segment"] = np.where(out["is_noise"], UNSEGMENTED, out["segment"]).astype(np.int64)
    out["is_outlier"] = out["is_noise"].astype(bool)
    if scores is not None:
        if scores[OUTPUT_ID].duplicated().any():
            raise ValueError("propensity scores hold a customer twice; expected one row per customer")
        out = out.merge(scores, on=OUTPUT_ID, how="left", validate="one_to_one")
        for col in [c for c in scores.columns if c.startswith("p_")]:
            cuts = tier_cuts[col] if tier_cuts else out[col].quantile(list(tier_quantiles)).to_numpy()
            tier = np.select([out[col] >= cuts[1], out[col] >= cuts[0]], ["high", "medium"], "low")
            out[f"tier_{col[2:]}"] = pd.Series(tier, index=out.index).where(out[col].notna())
    return out.drop(columns=["is_noise"])


def tier_cut_points(customers: pd.DataFrame, tier_quantiles=(1 / 3, 2 / 3)) -> dict[str, tuple[float, float]]:
    """The propensity values that separate the tiers in `customers`."""
    return {c: tuple(customers[c].quantile(list(tier_quantiles)).tolist()) for c in customers.columns if c.startswith("p_")}


def profile_segments(customers: pd.DataFrame, features: pd.DataFrame, monetary: str | None) -> pd.DataFrame:
    """Per segment: size, share, mean propensity and lift (95% CI) per label, and the profile.

    `features` (aggregate features indexed by customer id) give recency, frequency,
    monetary and tenure as medians relative to all customers (`<x>_vs_all`), and the shares
    of categories, channels and times of day that the segment over-indexes on.
    """
    feats = features.reindex(customers[OUTPUT_ID].to_numpy())
    core = pd.DataFrame({
        "recency": feats["recency_days"].to_numpy(),
        "frequency": feats["n_events"].to_numpy(),
        "monetary": feats[monetary].to_numpy() if monetary else np.zeros(len(feats)),
        "tenure": feats["tenure_days"].to_numpy(),
    })
    shares = feats[[c for c in feats.columns if c.startswith("share_") and not c.endswith(OTHER)]].reset_index(drop=True)
    segment = customers["segment"].to_numpy()
    labels = [c[2:] for c in customers.columns if c.startswith("p_")]
    overall_core = core.median()
    overall_shares = shares.mean()
    overall_p = {lab: customers[f"p_{lab}"].mean() for lab in labels}

    rows = []
    for seg in sorted(set(segment.tolist()), key=lambda s: (s == UNSEGMENTED, s)):
        hit = segment == seg
        row = {"segment": seg, "size": int(hit.sum()), "share": float(hit.mean())}
        for lab in labels:
            p = customers.loc[hit, f"p_{lab}"].dropna().to_numpy()
            mean, se = (p.mean(), p.std(ddof=1) / np.sqrt(len(p))) if len(p) > 1 else (np.nan, np.nan)
            base = overall_p[lab]
            row.update({f"mean_p_{lab}": mean, f"lift_{lab}": mean / base,
                        f"lift_{lab}_lo": (mean - Z95 * se) / base, f"lift_{lab}_hi": (mean + Z95 * se) / base})
        for name in CORE_PROFILE:
            row[f"{name}_vs_all"] = _ratio(core.loc[hit, name].median(), overall_core[name])
        ratio = (shares.loc[hit].mean() / overall_shares).where(overall_shares >= 0.02)
        top = ratio[ratio >= 1.2].sort_values(ascending=False, kind="stable").head(3)
        row["over_indexed"] = ", ".join(f"{_share_label(c)} x{r:.1f}" for c, r in top.items())
        rows.append(row)
    table = pd.DataFrame(rows)
    table.insert(1, "name", [segment_name(r, labels) for r in table.to_dict("records")])
    return _unique_names(table)


def _ratio(value: float, overall: float) -> float:
    return float(value / overall) if overall and np.isfinite(overall) and overall > 0 else 1.0


def _share_label(column: str) -> str:
    return column.removeprefix("share_").replace("_", " ")


def _outcome(label: str) -> str:
    """purchase_within_30d -> purchase, churn_30d -> churn risk."""
    base = re.sub(r"(_within)?_\d+d$", "", label).replace("_", " ")
    return "churn risk" if base == "churn" else base


def segment_name(row: dict, labels: list[str]) -> str:
    """A readable name from the profile: activity, value, what stands out, what comes next."""
    if row["segment"] == UNSEGMENTED:
        return "Unsegmented"
    words = []
    if row["recency_vs_all"] >= 1.5:
        words.append("lapsing")
    elif row["recency_vs_all"] <= 0.6:
        words.append("active")
    if row["tenure_vs_all"] <= 0.5:
        words.append("new")
    if row["frequency_vs_all"] >= 1.5:
        words.append("frequent")
    elif row["frequency_vs_all"] <= 0.6:
        words.append("occasional")
    if row["monetary_vs_all"] >= 1.5:
        words.append("high spenders")
    elif row["monetary_vs_all"] <= 0.6 and row["monetary_vs_all"] != 1.0:
        words.append("low spenders")
    else:
        words.append("customers")
    name = " ".join(words)
    name = name[0].upper() + name[1:]
    if row.get("over_indexed"):
        name += " · " + row["over_indexed"].split(" x")[0]
    for lab in labels:
        lift = row.get(f"lift_{lab}", np.nan)
        if lift >= 1.25:
            name += f" · {_outcome(lab)} high"
        elif lift <= 0.8:
            name += f" · {_outcome(lab)} low"
    return name


def _unique_names(table: pd.DataFrame) -> pd.DataFrame:
    dupes = table["name"].duplicated(keep=False)
    table.loc[dupes, "name"] = table.loc[dupes, "name"] + " #" + table.loc[dupes, "segment"].astype(str)
    return table


def attach_names(customers: pd.DataFrame, segments: pd.DataFrame) -> pd.DataFrame:
    names = segments.set_index("segment")["name"]
    out = customers.copy()
    out.insert(out.columns.get_loc("segment") + 1, "segment_name", out["segment"].map(names).to_numpy())
    return out
