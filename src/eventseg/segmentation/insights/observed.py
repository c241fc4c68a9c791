"""Did the segment do what its scores promise: observed outcome rates / means of held-out
customers per segment, with 95% intervals (Wilson for rates) and lift over all of them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from eventseg.data.schema import OUTPUT_ID
from eventseg.segmentation.insights.common import keyed_rows, segment_levels
from eventseg.segmentation.profiles import Z95


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
    for level, key, counted in segment_levels(customers):
        rows, seg = counted[held], key[held][counted[held]]
        groups = observed[rows].groupby(seg)
        n, mean, std = groups.count(), groups.mean(), groups.std(ddof=1)
        table = pd.DataFrame({"observed_n": any_outcome[rows].groupby(seg).sum()})
        for c in columns:
            lo, hi = (wilson_interval if binary[c] else _normal)(mean[c].to_numpy(), std[c].to_numpy(), n[c].to_numpy())
            table[f"observed_{c}"] = mean[c]
            table[f"observed_{c}_lo"], table[f"observed_{c}_hi"] = lo, hi
            table[f"observed_lift_{c}"] = mean[c] / overall[c] if overall[c] > 0 else np.nan
        out = keyed_rows(level, table, key[counted])
        out["observed_n"] = out["observed_n"].fillna(0).astype(np.int64)
        parts.append(out)
    return pd.concat(parts, ignore_index=True)


def wilson_interval(p: np.ndarray, _std, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
