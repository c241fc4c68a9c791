"""How would I find these people with a filter: a shallow surrogate decision tree per broad
segment on readable aggregates, turned into one rule with its precision and recall."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.tree import DecisionTreeClassifier

from eventseg.segmentation.insights.common import (
    TIME_SHARES,
    aligned_features,
    column_words,
    keyed_rows,
    value_share_columns,
)
from eventseg.segmentation.profiles import OUTLIERS

# the sample the surrogate trees learn from, and the smallest leaf (share of that sample)
RULE_SAMPLE, MIN_LEAF_SHARE = 50_000, 0.01

# how a rule feature reads: words, the unit after the number, and the scale it is shown on
_RULE_WORDS = {
    "visits_per_month": ("visits/month", "", "plain"),
    "spend_per_visit": ("spend per visit", "", "plain"),
    "recency_days": ("recency", " days", "plain"),
    "tenure_days": ("tenure", " days", "plain"),
    "events_per_30d": ("events per 30 days", "", "plain"),
    "trend_log_ratio": ("last 30 days' activity vs before", "", "ratio"),  # shown as x1.5, not a log
}


def rule_features(features: pd.DataFrame, monetary: str | None = "auto") -> pd.DataFrame:
    """The few aggregate features a marketer can filter on, in units they know.

    `monetary` is the `<amount>_sum` column for spend per visit; "auto" takes the one
    `<x>_sum` column that has `<x>_mean` and `<x>_n` beside it (a numeric field), if unique.
    """
    out = pd.DataFrame(index=features.index)
    if {"active_days", "tenure_days"} <= set(features.columns):
        out["visits_per_month"] = 30.0 * features["active_days"] / np.maximum(features["tenure_days"], 30.0)
    money = _monetary(features) if monetary == "auto" else monetary
    if money is not None and money in features.columns and "active_days" in features.columns:
        out["spend_per_visit"] = features[money] / np.maximum(features["active_days"], 1.0)
    for col in ("recency_days", "tenure_days", "events_per_30d", "trend_log_ratio"):
        if col in features.columns:
            out[col] = features[col]
    for col in [c for c in TIME_SHARES if c in features.columns] + value_share_columns(features):
        out[col] = features[col]
    return out.astype(np.float64)


def _monetary(features: pd.DataFrame) -> str | None:
    sums = [c for c in features.columns if c.endswith("_sum")
            and {f"{c[:-4]}_mean", f"{c[:-4]}_n"} <= set(features.columns)]
    return sums[0] if len(sums) == 1 else None


def segment_rules(customers: pd.DataFrame, features: pd.DataFrame, *, max_depth: int = 2, seed: int = 0,
                  monetary: str | None = "auto", sample_size: int = RULE_SAMPLE) -> pd.DataFrame:
    """Per broad segment, a filter a person could type: "recency ≤ 12 days and visits/month > 2.4".

    A shallow decision tree (one segment vs the rest, balanced classes so small segments get a
    leaf, leaves of at least 1% of customers so a rule never describes a handful) learns on a
    seeded sample of at most `sample_size` customers; the node (leaf or inner) whose path best
    finds the segment (F1) becomes the rule, thresholds rounded as a person would say them.
    `rule_precision` and `rule_recall` are those of the rounded rule on all customers, so they
    say how faithful the words are: a rule under 30% precision is kept, and its numbers warn.
    """
    X = rule_features(aligned_features(customers, features), monetary)
    known = X.notna().all(axis=1).to_numpy()
    X, segment = X[known].reset_index(drop=True), customers["segment"].to_numpy(np.int64)[known]
    rng = np.random.default_rng(seed)
    fit = rng.choice(len(X), size=min(sample_size, len(X)), replace=False) if len(X) else np.array([], dtype=np.int64)
    fit.sort()
    names, values = list(X.columns), X.to_numpy()
    broad = [s for s in sorted(set(customers["segment"].tolist())) if s != OUTLIERS]

    rows = []
    for seg in broad:
        y = segment == seg
        rule, precision, recall = "no simple rule found", np.nan, np.nan
        if names and len(np.unique(y[fit])) == 2:
            tree = DecisionTreeClassifier(max_depth=max_depth, class_weight="balanced", random_state=seed,
                                          min_samples_leaf=max(1, math.ceil(MIN_LEAF_SHARE * len(fit))))
            tree.fit(values[fit], y[fit])
            best = _best_node(tree, values, y, names)
            if best is not None:
                rule, precision, recall = best
        rows.append({"rule": rule, "rule_precision": precision, "rule_recall": recall})
    table = pd.DataFrame(rows, index=broad, columns=["rule", "rule_precision", "rule_recall"])
    table["rule"] = table["rule"].astype("str")
    return keyed_rows("broad", table.astype({"rule_precision": np.float64, "rule_recall": np.float64}), broad)


def _best_node(tree: DecisionTreeClassifier, values: np.ndarray, y: np.ndarray, names: list[str]):
    """(text, precision, recall) of the node predicting the segment whose rounded path has the
    best F1 on all customers. Inner nodes count too: when both leaves under "recency ≤ 10"
    predict the segment, the rule is "recency ≤ 10 days", not one half of it. Shallow nodes
    come first, so a tie goes to the shorter rule."""
    t = tree.tree_
    if t.node_count == 1:
        return None
    parent = {}
    for node in range(t.node_count):
        for child, side in ((t.children_left[node], "≤"), (t.children_right[node], ">")):
            if child >= 0:
                parent[child] = (node, side)
    depth = {0: 0}
    for node in sorted(parent):  # children are numbered after their parent
        depth[node] = depth[parent[node][0]] + 1
    candidates = sorted(parent, key=lambda n: (depth[n], n))
    positive = [n for n in candidates if tree.classes_[int(np.argmax(t.value[n][0]))]]
    best, best_f1 = None, -1.0
    for node in positive or candidates:
        path, at = [], node
        while at in parent:
            at, side = parent[at]
            path.append((names[t.feature[at]], side, float(t.threshold[at])))
        text, hit = _rule(path[::-1], values, names)
        tp, matched, members = float((hit & y).sum()), float(hit.sum()), float(y.sum())
        f1 = 2 * tp / (matched + members) if matched + members else 0.0
        if f1 > best_f1:
            best = (text, tp / matched if matched else np.nan, tp / members if members else np.nan)
            best_f1 = f1
    return best


def _rule(path: list[tuple[str, str, float]], values: np.ndarray, names: list[str]) -> tuple[str, np.ndarray]:
    """The path's conditions, one clause per feature (root first), rounded; and who matches them."""
    bounds: dict[str, list[float]] = {}
    for name, side, threshold in path:
        lo, hi = bounds.setdefault(name, [-np.inf, np.inf])
        bounds[name] = [max(lo, threshold), hi] if side == ">" else [lo, min(hi, threshold)]
    clauses, hit = [], np.ones(len(values), dtype=bool)
    for name, (lo, hi) in bounds.items():
        text, lo, hi = _clause(name, lo, hi)
        clauses.append(text)
        x = values[:, names.index(name)]
        hit &= (x > lo) & (x <= hi)
    return " and ".join(clauses), hit


def _clause(name: str, lo: float, hi: float) -> tuple[str, float, float]:
    """"recency ≤ 12 days", "tenure > 90 and ≤ 300 days", "evening share > 35%": the text and the
    rounded bounds it states (so the reported precision is the one of what people read)."""
    words, unit, scale = _RULE_WORDS.get(name, (f"{column_words(name)} share", "%", "share"))
    for digits in (2, 3, 4):  # more digits only where rounding would make the bounds meet
        shown = [_shown(b, scale, digits) for b in (lo, hi)]
        back = [_unshown(s, scale) for s in shown]
        if not (np.isfinite(back[0]) and np.isfinite(back[1])) or back[0] < back[1]:
            break
    (slo, shi), (blo, bhi) = shown, back
    fmt = (lambda s: f"x{s}") if scale == "ratio" else str
    if np.isfinite(blo) and np.isfinite(bhi):
        text = f"{words} > {fmt(slo)} and ≤ {fmt(shi)}{unit}"
    elif np.isfinite(blo):
        text = f"{words} > {fmt(slo)}{unit}"
    else:
        text = f"{words} ≤ {fmt(shi)}{unit}"
    return text, blo, bhi


def _shown(bound: float, scale: str, digits: int):
    """A bound as a person says it: percent for shares, a ratio (exp) for the log trend, then rounded."""
    if not np.isfinite(bound):
        return bound
    value = 100 * bound if scale == "share" else math.exp(bound) if scale == "ratio" else bound
    return _round_for_people(value, digits)


def _unshown(shown, scale: str) -> float:
    if not np.isfinite(shown):
        return float(shown)
    if scale == "share":
        return shown / 100
    return math.log(shown) if scale == "ratio" else float(shown)


def _round_for_people(x: float, digits: int = 2):
    """`digits` significant figures (12.4 -> 12, 2.43 -> 2.4, 0.347 -> 0.35, 345 -> 340), whole
    numbers printed without a decimal point: how a person quotes a cut-off."""
    if x == 0:
        return 0
    decimals = digits - 1 - math.floor(math.log10(abs(x)))
    value = round(x, decimals)
    return int(value) if decimals <= 0 or value == int(value) else value
