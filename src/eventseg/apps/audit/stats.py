"""The audit's statistics on one contingency table (attribute values × segments or tiers), and
the multiple-comparison control that makes "beyond chance" honest across all of them.

- `association`: chi-square test of independence and Cramér's V (scipy, no continuity
  correction, so V and the statistic agree with each other for every table size).
- `representation`: per cell, the share of the group holding the value against the share of
  the whole audited population (the representation ratio), a 95% Wilson interval on it, and
  Fisher's exact test of the group against everyone else (exact for small groups, valid for
  large ones; the population includes the group, so testing against the rest is the clean null).
- `four_fifths`: per value, the share selected into the high propensity tier against the
  share of the most-favoured value (the disparate-impact ratio of the four-fifths rule), with
  Fisher's exact test of the two.
- `adjust`: Holm (family-wise error, any dependence between tests) or Benjamini–Hochberg
  (false discovery rate) over every p-value of the audit at once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from scipy.stats.contingency import association as _cramers_v

from eventseg.segmentation.insights.observed import wilson_interval

CORRECTIONS = ("holm", "bh")


def association(table: pd.DataFrame) -> dict:
    """Chi-square test of independence of rows and columns, and Cramér's V (0 none, 1 total)."""
    counts = table.to_numpy()
    chi2, p, dof, _ = stats.chi2_contingency(counts, correction=False)
    return {"chi2": float(chi2), "dof": int(dof), "p": float(p), "n": int(counts.sum()),
            "cramers_v": float(_cramers_v(counts, method="cramer", correction=False))}


def representation(table: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: value, group, count, group_n, share (of the group), population_share,
    ratio = share / population_share, ci_low / ci_high (95%) and p."""
    counts = table.to_numpy().astype(np.int64)
    n = counts.sum()
    value_n, group_n = counts.sum(axis=1), counts.sum(axis=0)
    rows = []
    for i, value in enumerate(table.index):
        population_share = value_n[i] / n
        for j, group in enumerate(table.columns):
            k, m = counts[i, j], group_n[j]
            inside = [[k, m - k], [value_n[i] - k, (n - m) - (value_n[i] - k)]]
            rows.append({"value": value, "group": group, "count": int(k), "group_n": int(m),
                         "population_share": population_share, "p": float(stats.fisher_exact(inside)[1])})
    out = pd.DataFrame(rows)
    out["share"] = out["count"] / out["group_n"]
    lo, hi = wilson_interval(out["share"].to_numpy(), None, out["group_n"].to_numpy())
    out["ratio"] = out["share"] / out["population_share"]
    out["ci_low"], out["ci_high"] = lo / out["population_share"], hi / out["population_share"]
    return out


def four_fifths(table: pd.DataFrame, selected: str = "high") -> pd.DataFrame:
    """One row per value: n, selected (count in the `selected` column), rate, reference (the
    value with the highest rate), ratio = rate / the reference's rate, and p (Fisher's exact test
    of the value against the reference; none for the reference itself)."""
    counts = table.to_numpy().astype(np.int64)
    n = counts.sum(axis=1)
    chosen = counts[:, list(table.columns).index(selected)]
    rate = chosen / n
    best = int(np.argmax(rate))
    p = [np.nan if i == best else float(stats.fisher_exact(
        [[chosen[i], n[i] - chosen[i]], [chosen[best], n[best] - chosen[best]]])[1]) for i in range(len(n))]
    return pd.DataFrame({"value": table.index, "n": n, "selected": chosen, "rate": rate,
                         "reference": table.index[best], "ratio": rate / rate[best] if rate[best] > 0 else np.nan,
                         "p": p})


def adjust(p, method: str = "holm") -> np.ndarray:
    """Adjusted p-values (NaN stays NaN, and is not counted as a test)."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full_like(p, np.nan)
    tested = ~np.isnan(p)
    if not tested.any():
        return out
    if method == "bh":
        out[tested] = stats.false_discovery_control(p[tested], method="bh")
    elif method == "holm":
        out[tested] = _holm(p[tested])
    else:
        raise ValueError(f"unknown correction {method!r}; use one of {CORRECTIONS}")
    return out


def _holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down: the i-th smallest p times (m - i), kept monotone, capped at 1."""
    order = np.argsort(p)
    m = len(p)
    stepped = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    out = np.empty(m)
    out[order] = np.minimum(stepped, 1.0)
    return out
