"""Predictive segments at two levels: broad segments (the clusters) and the micro segments
nested in them. Joins clusters and propensity scores per customer, describes every segment
by size, likely behaviour (propensity and lift with intervals) and measured behaviour (visits
a month, basket, recency, tenure), and names it in a marketer's words with the numbers the
name rests on.

Outliers are an explicit "Outliers" group (segment -1), never a silent drop.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from eventseg.data.schema import OUTPUT_ID
from eventseg.features.aggregates import OTHER
from eventseg.run.columns import probability_column, score_columns, score_names, tier_column

OUTLIERS = -1
OUTLIERS_NAME = "Outliers"
CLUSTER_COLUMNS = (OUTPUT_ID, "cluster", "subsegment", "membership_strength", "is_core", "outlier_score", "is_outlier")
# <x>_vs_all: the median of each measured behaviour over all customers' median
RATIO_OF = {"visits": "visits_per_month", "basket": "basket", "recency": "recency_days", "tenure": "tenure_days"}
Z95 = 1.96
# Naming thresholds. Cadence is absolute (a marketer plans around weeks and months); the rest
# is relative to the median customer, so "lapsing" means the same on any data set.
CADENCE = ((3.5, "weekly"), (1.7, "fortnightly"), (0.7, "monthly"))  # visits a month, floor first
LAPSING_RECENCY, DORMANT_RECENCY, NEW_TENURE = 1.5, 3.0, 0.5  # recency / tenure vs all customers
BIG_BASKET, SMALL_BASKET = 1.5, 0.6
SIMILAR_BEHAVIOUR = 0.25  # every behaviour ratio within ±25%: a share over-index may then name the segment
NAMING_SHARE = 1.5  # the over-index a share needs to be a broad segment's name
LISTED_SHARE, MIN_OVERALL_SHARE = 1.2, 0.02  # over_indexed lists shares this much above all customers, not rare ones


def build_customers(clusters: pd.DataFrame, scores: pd.DataFrame | None = None, tier_quantiles=(1 / 3, 2 / 3),
                    tier_cuts: dict[str, tuple[float, float]] | None = None) -> pd.DataFrame:
    """One row per clustered customer: broad segment, micro segment, strength, core and outlier
    flags, p_<label> / pred_<target> and tiers.

    Tiers cut each propensity at the given quantiles over these customers (low / medium /
    high), or at fixed `tier_cuts` {p_<label>: (low_max, medium_max)}: scoring new customers
    reuses the training population's cuts, so a tier means the same thing in every batch.
    """
    _check_clusters(clusters)
    out = clusters.copy()
    out.insert(out.columns.get_loc("cluster") + 1, "segment", out["cluster"].astype(np.int64))
    if scores is not None:
        if scores[OUTPUT_ID].duplicated().any():
            raise ValueError("propensity scores hold a customer twice; expected one row per customer")
        out = out.merge(scores, on=OUTPUT_ID, how="left", validate="one_to_one")
        for score in score_columns(scores.columns, binary=True):
            col = score.name
            cuts = tier_cuts[col] if tier_cuts else out[col].quantile(list(tier_quantiles)).to_numpy()
            tier = np.select([out[col] >= cuts[1], out[col] >= cuts[0]], ["high", "medium"], "low")
            out[tier_column(score.label)] = pd.Series(tier, index=out.index).where(out[col].notna())
    return out


def _check_clusters(clusters: pd.DataFrame) -> None:
    """The profile and the names rely on the two-level contract; fail here, not on a wrong parent."""
    missing = [c for c in CLUSTER_COLUMNS if c not in clusters.columns]
    if missing:
        raise ValueError(f"clusters lack {missing}: expected the two-level cluster output {list(CLUSTER_COLUMNS)}")
    outlier = clusters["is_outlier"].astype(bool)
    if ((clusters["cluster"] == OUTLIERS) != outlier).any() or ((clusters["subsegment"] == OUTLIERS) != outlier).any():
        raise ValueError("clusters: cluster and subsegment must be -1 exactly for outliers (is_outlier)")
    parents = clusters.loc[~outlier].groupby("subsegment")["cluster"].nunique()
    if (parents > 1).any():
        raise ValueError(f"clusters: micro segments {parents[parents > 1].index.tolist()} span several broad segments")


def tier_cut_points(customers: pd.DataFrame, tier_quantiles=(1 / 3, 2 / 3)) -> dict[str, tuple[float, float]]:
    """The propensity values that separate the tiers in `customers`."""
    return {c: tuple(customers[c].quantile(list(tier_quantiles)).tolist()) for c in score_names(customers.columns, binary=True)}


def profile_segments(customers: pd.DataFrame, features: pd.DataFrame, monetary: str | None,
                     currency: str = "$") -> pd.DataFrame:
    """One table, a row per broad segment then a row per micro segment (grouped by parent):
    size, share, mean propensity and lift (95% CI) per label, measured behaviour and a name.

    `features` (aggregate features indexed by customer id) give the behaviour as medians
    (`visits_per_month`, `recency_days`, `tenure_days`; `basket` = the segment's spend over its
    active days, a ratio of totals because most visits of browsing customers spend nothing and
    a median per customer would read $0) and
    relative to all customers (`<x>_vs_all`), and the category / channel / country / time
    shares the segment over-indexes on. Without a `monetary` column the basket is NaN.
    """
    feats = features.reindex(customers[OUTPUT_ID].to_numpy())
    active = feats["active_days"].to_numpy()
    behaviour = pd.DataFrame({
        "visits_per_month": 30.0 * active / np.maximum(feats["tenure_days"].to_numpy(), 30.0),
        "recency_days": feats["recency_days"].to_numpy(),
        "tenure_days": feats["tenure_days"].to_numpy(),
    })
    shares = feats[[c for c in feats.columns if c.startswith("share_") and not c.endswith(OTHER)]].reset_index(drop=True)
    labels = [s.label for s in score_columns(customers.columns, binary=True)]
    spend = feats[monetary].to_numpy(dtype=np.float64) if monetary else None
    overall_behaviour, overall_shares = behaviour.median(), shares.mean()
    overall_behaviour["basket"] = _per_visit(spend, active)
    overall_p = {lab: customers[probability_column(lab)].mean() for lab in labels}
    purchase = next((lab for lab in labels if lab.startswith("purchase")), None)

    segment, subsegment = customers["segment"].to_numpy(), customers["subsegment"].to_numpy()
    parent_of = pd.Series(segment, index=subsegment)[subsegment != OUTLIERS].groupby(level=0).first()
    groups = [("broad", s, OUTLIERS, segment == s) for s in sorted(set(segment.tolist()), key=lambda s: (s == OUTLIERS, s))]
    groups += [("micro", m, int(p), subsegment == m) for m, p in sorted(parent_of.items(), key=lambda mp: (mp[1], mp[0]))]

    rows, names, broad_shares = [], [], {}
    for level, seg, parent, hit in groups:
        row = {"level": level, "segment": int(seg), "parent": parent, "size": int(hit.sum()), "share": float(hit.mean())}
        row.update(_propensity(customers.loc[hit], labels, overall_p))
        for col in behaviour.columns:
            row[col] = float(behaviour.loc[hit, col].median())
        row["basket"] = _per_visit(None if spend is None else spend[hit], active[hit])
        for short, col in RATIO_OF.items():
            row[f"{short}_vs_all"] = _ratio(row[col], overall_behaviour[col])
        mean_shares = shares.loc[hit].mean()
        over = (mean_shares / overall_shares).where(overall_shares >= MIN_OVERALL_SHARE)
        top = over[over >= LISTED_SHARE].sort_values(ascending=False, kind="stable").head(3)
        row["over_indexed"] = ", ".join(_share_text(c, r) for c, r in top.items())
        rows.append(row)
        named = top.head(1) if _behaves_like_all(row) and len(top) and top.iloc[0] >= NAMING_SHARE else top.head(0)
        if level == "broad":
            broad_shares[seg] = mean_shares
        elif len(top):  # and the over-indexed share furthest above its parent's: what sets siblings apart
            apart = (mean_shares / broad_shares[parent])[top.index].idxmax()
            named = top[list(dict.fromkeys([*named.index, apart]))]
        names.append(OUTLIERS_NAME if seg == OUTLIERS else _name(row, named, purchase, currency))
    table = pd.DataFrame(rows).astype({"segment": np.int64, "parent": np.int64})
    table.insert(3, "name", names)
    return _unique_names(table)


def _propensity(members: pd.DataFrame, labels: list[str], overall_p: dict[str, float]) -> dict[str, float]:
    """Mean propensity per label and its lift over all customers, with a 95% interval that
    says whether a small segment's lift is more than noise."""
    out = {}
    for lab in labels:
        p = members[probability_column(lab)].dropna().to_numpy()
        mean, se = (p.mean(), p.std(ddof=1) / np.sqrt(len(p))) if len(p) > 1 else (np.nan, np.nan)
        base = overall_p[lab]
        out.update({f"mean_p_{lab}": mean, f"lift_{lab}": mean / base,
                    f"lift_{lab}_lo": (mean - Z95 * se) / base, f"lift_{lab}_hi": (mean + Z95 * se) / base})
    return out


def _ratio(value: float, overall: float) -> float:
    """Segment median over all customers' median; NaN where the overall value gives no scale."""
    return float(value / overall) if np.isfinite(overall) and overall > 0 else np.nan


def _share_text(column: str, ratio: float) -> str:
    return f"{column.removeprefix('share_').replace('_', ' ')} x{ratio:.1f}"


def _behaves_like_all(row: dict) -> bool:
    """Every behaviour ratio within ±25% of all customers: then a share is the main difference."""
    return all(abs(r - 1) <= SIMILAR_BEHAVIOUR for r in (row[f"{s}_vs_all"] for s in RATIO_OF) if np.isfinite(r))


def _name(row: dict, named_share: pd.Series, purchase: str | None, currency: str) -> str:
    """Behaviour words and their numbers, the share that tells this segment apart (if any),
    and the purchase outlook last."""
    parts = _behaviour_words(row, currency) + [_share_text(c, r) for c, r in named_share.items()]
    if purchase and np.isfinite(row[f"mean_p_{purchase}"]):
        horizon = re.search(r"(\d+)d$", purchase)
        parts.append(f"{row[f'mean_p_{purchase}']:.0%} likely to buy" + (f" in {horizon[1]} days" if horizon else ""))
    return " · ".join(parts)


def _behaviour_words(row: dict, currency: str) -> list[str]:
    """e.g. ["Lapsing occasional small-basket buyers", "0.4 visits/month", "$12 per visit"]."""
    lapsing = row["recency_vs_all"] >= LAPSING_RECENCY
    new = row["tenure_vs_all"] <= NEW_TENURE
    shown = round(row["visits_per_month"], 1)  # the word agrees with the number printed beside it
    cadence = next((word for floor, word in CADENCE if shown >= floor), "occasional")
    value = "big-basket" if row["basket_vs_all"] >= BIG_BASKET else "small-basket" if row["basket_vs_all"] <= SMALL_BASKET else ""
    noun = "customers" if new else "regulars" if cadence in ("weekly", "fortnightly") and not lapsing else "buyers"
    status = "dormant" if row["recency_vs_all"] >= DORMANT_RECENCY else "lapsing" if lapsing else ""
    phrase = " ".join(w for w in (status, "new" if new else "", cadence, value, noun) if w)
    parts = [phrase[0].upper() + phrase[1:], f"{row['visits_per_month']:.1f} visits/month"]
    if np.isfinite(row["basket"]):
        parts.append(f"{_money(row['basket'], currency)} per visit")
    return parts


def _per_visit(spend: np.ndarray | None, active: np.ndarray) -> float:
    """Total spend over total active days (NaN without an amount column)."""
    if spend is None:
        return float("nan")
    days = float(np.nansum(active))
    return float(np.nansum(spend) / days) if days > 0 else float("nan")


def _money(amount: float, currency: str) -> str:
    """$38 for ten and above; $4.5, $0.37 below, where whole units would hide the difference."""
    return f"{currency}{amount:,.0f}" if abs(amount) >= 10 else f"{currency}{amount:.2g}"


def _unique_names(table: pd.DataFrame) -> pd.DataFrame:
    """Two segments of one level with the same name: the id tells them apart (last resort)."""
    dupes = table.groupby("level")["name"].transform(lambda names: names.duplicated(keep=False))
    table.loc[dupes, "name"] = table.loc[dupes, "name"] + " #" + table.loc[dupes, "segment"].astype(str)
    return table


def attach_names(customers: pd.DataFrame, segments: pd.DataFrame) -> pd.DataFrame:
    """`segment_name` (broad) and `subsegment_name` (micro) beside the ids; outliers are
    "Outliers" at both levels, so no customer goes without a name."""
    by_level = {level: rows.set_index("segment")["name"] for level, rows in segments.groupby("level")}
    out = customers.copy()
    out.insert(out.columns.get_loc("segment") + 1, "segment_name", out["segment"].map(by_level["broad"]).to_numpy())
    micro = out["subsegment"].map(by_level.get("micro", pd.Series(dtype=object))).where(~out["is_outlier"], OUTLIERS_NAME)
    out.insert(out.columns.get_loc("subsegment") + 1, "subsegment_name", micro.to_numpy())
    return out
