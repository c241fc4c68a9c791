"""What a marketer asks of a segment table beyond the profile: did the segment really do what
its scores promise (observed outcomes on held-out customers), how would I find these people
with a filter (a short readable rule), what do they buy and when (top values, timing), and
what should I do with them (a suggested action with the reason).

Every function returns rows keyed by (`level`, `segment`) like the segments table of
`eventseg.segments.profile_segments`; `segment_insights` appends them to that table. Broad
rows include the outliers row (segment -1); micro rows never do.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.tree import DecisionTreeClassifier

from eventseg.data.schema import OUTPUT_ID
from eventseg.features import DAYPARTS, OTHER
from eventseg.segments import OUTLIERS

KEYS = ["level", "segment"]
Z95 = 1.96
# top values and timing: a value must be this much above all customers, and not rare overall
OVER_INDEX, MIN_OVERALL_SHARE = 1.2, 0.02
TIME_SHARES = tuple(f"share_{p}" for p in (*DAYPARTS, "weekend"))
TIME_WORDS = {"night": "nights", "morning": "mornings", "afternoon": "afternoons", "evening": "evenings",
              "weekend": "weekends"}
# rules: the sample the surrogate trees learn from, and the smallest leaf (share of that sample)
RULE_SAMPLE, MIN_LEAF_SHARE = 50_000, 0.01
# actions, against the median customer (the `<x>_vs_all` ratios) or the mean propensity (lift)
HIGH_VALUE = 1.5  # basket or visits a month this many times all customers'
RISK_LIFT = 1.25  # churn lift that makes a segment "at risk"; the same lift on purchase is "buying"
LAPSING = 1.5  # recency this many times all customers' (as in the segment names)
NEW = 0.5  # tenure at most this share of all customers' (as in the segment names)
RECENT = 1.0  # recency at most all customers': still visiting


# ---------------------------------------------------------------------------------------------
# shared plumbing


def _levels(customers: pd.DataFrame) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(level, segment id of each customer, customers counted): broad keeps the outliers, micro drops them."""
    broad = customers["segment"].to_numpy(np.int64)
    micro = customers["subsegment"].to_numpy(np.int64)
    return [("broad", broad, np.ones(len(broad), dtype=bool)), ("micro", micro, micro != OUTLIERS)]


def _keyed(level: str, table: pd.DataFrame, ids) -> pd.DataFrame:
    """A per-segment table (index = segment id) as rows keyed by (level, segment), outliers last,
    one row for every id in `ids` even where the table has none (a segment with no eval customers)."""
    order = sorted({int(s) for s in ids}, key=lambda s: (s == OUTLIERS, s))
    out = table.reindex(order).reset_index(drop=True)
    out.insert(0, "level", pd.Series([level] * len(order), dtype="str"))
    out.insert(1, "segment", np.asarray(order, dtype=np.int64))
    return out


def _aligned_features(customers: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    """Features in the customers' row order (NaN rows for customers the table lacks)."""
    return features.reindex(customers[OUTPUT_ID].to_numpy()).reset_index(drop=True)


def _value_shares(features: pd.DataFrame) -> list[str]:
    """share_<field>_<value> columns: category / product / channel values, not the time shares or `__other__`."""
    return [c for c in features.columns if c.startswith("share_") and c not in TIME_SHARES and not c.endswith(OTHER)]


def _words(column: str) -> str:
    """share_category_groceries -> "category groceries" (as the segment names write it)."""
    return column.removeprefix("share_").replace("_", " ")


# ---------------------------------------------------------------------------------------------
# 1. observed outcomes


def observed_outcomes(customers: pd.DataFrame, outcomes: pd.DataFrame, eval_ids=None) -> pd.DataFrame:
    """Per broad and micro segment, what the held-out customers actually did in the label window.

    Only customers in `eval_ids` count (pass the test split: training customers' outcomes taught
    the propensity models and would flatter them); None counts everyone in `outcomes`. Binary
    columns (bool, or only 0/1) give a rate with a Wilson interval, which stays inside [0, 1] for
    small or extreme segments; other numeric columns a mean with a normal interval. A customer
    without a value for a column is left out of that column. Columns: `observed_n` (eval
    customers with any outcome), `observed_<col>`, `observed_<col>_lo` / `_hi` (95%, NaN below
    two customers) and `observed_lift_<col>` (over all eval customers).
    """
    if outcomes.index.has_duplicates:
        raise ValueError("outcomes hold a customer twice; expected one row per customer (index = customer id)")
    columns = [c for c in outcomes.columns
               if pd.api.types.is_bool_dtype(outcomes[c]) or pd.api.types.is_numeric_dtype(outcomes[c])]
    values = pd.DataFrame({c: outcomes[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in columns},
                          index=outcomes.index, columns=columns)
    binary = {c: bool(np.isin(values[c].dropna().unique(), (0.0, 1.0)).all()) for c in columns}
    ids = customers[OUTPUT_ID]
    held = ids.isin(outcomes.index) & (ids.isin(pd.Index(eval_ids)) if eval_ids is not None else True)
    held = held.to_numpy()
    observed = values.reindex(ids.to_numpy()[held]).reset_index(drop=True)
    overall, any_outcome = observed.mean(), observed.notna().any(axis=1)

    parts = []
    for level, key, counted in _levels(customers):
        rows, seg = counted[held], key[held][counted[held]]
        groups = observed[rows].groupby(seg)
        n, mean, std = groups.count(), groups.mean(), groups.std(ddof=1)
        table = pd.DataFrame({"observed_n": any_outcome[rows].groupby(seg).sum()})
        for c in columns:
            lo, hi = (_wilson if binary[c] else _normal)(mean[c].to_numpy(), std[c].to_numpy(), n[c].to_numpy())
            table[f"observed_{c}"] = mean[c]
            table[f"observed_{c}_lo"], table[f"observed_{c}_hi"] = lo, hi
            table[f"observed_lift_{c}"] = mean[c] / overall[c] if overall[c] > 0 else np.nan
        out = _keyed(level, table, key[counted])
        out["observed_n"] = out["observed_n"].fillna(0).astype(np.int64)
        parts.append(out)
    return pd.concat(parts, ignore_index=True)


def _wilson(p: np.ndarray, _std, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a proportion: sensible at 0%, 100% and for a handful of customers."""
    n = n.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = 1 + Z95**2 / n
        centre = (p + Z95**2 / (2 * n)) / denom
        half = Z95 * np.sqrt(p * (1 - p) / n + Z95**2 / (4 * n**2)) / denom
    small = n < 2
    return np.where(small, np.nan, centre - half), np.where(small, np.nan, centre + half)


def _normal(mean: np.ndarray, std: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normal interval on a mean (spend and the like), from the sample standard deviation."""
    with np.errstate(divide="ignore", invalid="ignore"):
        half = Z95 * std / np.sqrt(n.astype(np.float64))
    small = n < 2
    return np.where(small, np.nan, mean - half), np.where(small, np.nan, mean + half)


# ---------------------------------------------------------------------------------------------
# 2. readable rules

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
    for col in [c for c in TIME_SHARES if c in features.columns] + _value_shares(features):
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
    X = rule_features(_aligned_features(customers, features), monetary)
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
    return _keyed("broad", table.astype({"rule_precision": np.float64, "rule_recall": np.float64}), broad)


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
    words, unit, scale = _RULE_WORDS.get(name, (f"{_words(name)} share", "%", "share"))
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


# ---------------------------------------------------------------------------------------------
# 3. top values and timing


def top_values(customers: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    """Per broad and micro segment, what it buys and when, as text a brief can quote.

    `top_values`: up to three category / product / channel values the segment over-indexes on
    most (index = mean share in the segment over mean share of all customers, as in
    `over_indexed`; at least 1.2, and 2% overall so rare values do not lead) with about how many
    of the segment's events they are (share x n_events summed over its customers), e.g.
    "category groceries 1,240 events (x1.8)". `timing`: the part of day or the weekend whose
    share of the segment's events is most above all customers', e.g. "evenings (38% of events vs
    22%)". Empty text where nothing stands out.
    """
    feats = _aligned_features(customers, features)
    value_cols = _value_shares(feats)
    time_cols = [c for c in TIME_SHARES if c in feats.columns]
    events = feats["n_events"].to_numpy(np.float64) if "n_events" in feats.columns else np.ones(len(feats))
    counted_events = feats[value_cols + time_cols].mul(events, axis=0)
    overall_share = feats[value_cols].mean()
    overall_time = counted_events[time_cols].sum() / np.nansum(events)

    parts = []
    for level, key, counted in _levels(customers):
        share = feats.loc[counted, value_cols].groupby(key[counted]).mean()
        counts = counted_events.loc[counted].groupby(key[counted]).sum()
        n_events = pd.Series(events[counted]).groupby(key[counted]).sum()
        index = share.div(overall_share.where(overall_share >= MIN_OVERALL_SHARE), axis=1)
        time_share = counts[time_cols].div(n_events, axis=0)
        table = pd.DataFrame(index=n_events.index)
        table["top_values"] = pd.Series([_top_text(index.loc[s], counts.loc[s]) for s in table.index],
                                        index=table.index, dtype="str")
        table["timing"] = pd.Series([_timing_text(time_share.loc[s], overall_time) for s in table.index],
                                    index=table.index, dtype="str")
        parts.append(_keyed(level, table, key[counted]))
    return pd.concat(parts, ignore_index=True)


def _top_text(index: pd.Series, counts: pd.Series) -> str:
    top = index[index >= OVER_INDEX].sort_values(ascending=False, kind="stable").head(3)
    return "; ".join(f"{_words(c)} {round(counts[c]):,} events (x{r:.1f})" for c, r in top.items())


def _timing_text(share: pd.Series, overall: pd.Series) -> str:
    ratio = (share / overall).where(overall >= MIN_OVERALL_SHARE)
    ratio = ratio[ratio >= OVER_INDEX]
    if ratio.empty:
        return ""
    col = ratio.idxmax()
    return f"{TIME_WORDS[col.removeprefix('share_')]} ({share[col]:.0%} of events vs {overall[col]:.0%})"


# ---------------------------------------------------------------------------------------------
# 4. actions


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


# ---------------------------------------------------------------------------------------------
# 5. all together


def segment_insights(customers: pd.DataFrame, segments: pd.DataFrame, features: pd.DataFrame, *,
                     outcomes: pd.DataFrame | None = None, eval_ids=None, seed: int = 0,
                     monetary: str | None = "auto") -> pd.DataFrame:
    """The segments table with top values, timing, rules, observed outcomes (when `outcomes`
    are given) and an action appended, rows and index as they came, so the insights sit next
    to the profile they explain. Re-running replaces earlier insight columns."""
    pieces = [top_values(customers, features), segment_rules(customers, features, seed=seed, monetary=monetary)]
    if outcomes is not None:
        pieces.append(observed_outcomes(customers, outcomes, eval_ids))
    added = [c for p in pieces for c in p.columns if c not in KEYS] + ["action"]
    stale = [c for c in segments.columns if c in added or c.startswith("observed_")]  # a rerun without outcomes too
    out = segments.drop(columns=stale)
    keys = out[KEYS].astype({"segment": np.int64}).reset_index(drop=True)
    for piece in pieces:
        merged = keys.merge(piece, on=KEYS, how="left", validate="one_to_one")
        for col in piece.columns.drop(KEYS):
            out[col] = merged[col].set_axis(out.index)
    if "observed_n" in out.columns:
        out["observed_n"] = out["observed_n"].fillna(0).astype(np.int64)
    out["action"] = suggest_actions(out)
    return out
