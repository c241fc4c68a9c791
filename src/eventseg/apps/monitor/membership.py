"""Who moved between two as-of dates: membership churn, the transition table, segment sizes.

A customer is in a period's churn when they have a segment at both dates and the two differ
(a move into or out of the outliers counts). Customers first seen at the later date come from
"new"; customers missing at it go to "gone" (with one cumulative event history nobody goes,
but a monitored file of active customers only can drop some). Sizes are compared as shares of
the customers at each date, so a customer base that grows does not flag every segment.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

NEW, GONE = "new", "gone"


def membership_churn(before: pd.Series, after: pd.Series) -> tuple[int, float | None]:
    """(customers at both dates, share of them whose segment changed); series indexed by customer id."""
    both = before.index.intersection(after.index)
    if len(both) == 0:
        return 0, None
    moved = before.loc[both].to_numpy() != after.loc[both].to_numpy()
    return int(len(both)), float(moved.mean())


def transitions(before: pd.Series, after: pd.Series) -> pd.DataFrame:
    """from_segment, to_segment, customers: every flow between the two dates, "new" and "gone" included."""
    ids = before.index.union(after.index)
    src = before.astype(str).reindex(ids).fillna(NEW)  # segment ids as text: one column with new/gone
    dst = after.astype(str).reindex(ids).fillna(GONE)
    counts = pd.DataFrame({"from_segment": src.to_numpy(), "to_segment": dst.to_numpy()}).value_counts()
    out = counts.rename("customers").reset_index()
    out["customers"] = out["customers"].astype(np.int64)
    return out.sort_values(["from_segment", "to_segment"], ignore_index=True)


def size_changes(before: pd.Series, after: pd.Series) -> list[dict]:
    """Per segment: customers and share at each date and the relative change of the share."""
    n_before, n_after = max(len(before), 1), max(len(after), 1)
    c_before, c_after = before.value_counts(), after.value_counts()
    rows = []
    for seg in sorted(set(c_before.index) | set(c_after.index)):
        b, a = int(c_before.get(seg, 0)), int(c_after.get(seg, 0))
        share_b, share_a = b / n_before, a / n_after
        change = None if share_b == 0 else round(share_a / share_b - 1.0, 4)
        rows.append({"segment": int(seg), "customers_from": b, "customers_to": a, "share_from": round(share_b, 4),
                     "share_to": round(share_a, 4), "share_change": change})
    return rows
