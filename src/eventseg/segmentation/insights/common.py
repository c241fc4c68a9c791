"""Shared by the insight modules: keys of the segments table, the time-share columns, and rows
keyed by (level, segment) from per-segment tables."""

from __future__ import annotations

import numpy as np
import pandas as pd

from eventseg.data.schema import OUTPUT_ID
from eventseg.features.aggregates import DAYPARTS, OTHER
from eventseg.segmentation.profiles import OUTLIERS

KEYS = ["level", "segment"]
TIME_SHARES = tuple(f"share_{p}" for p in (*DAYPARTS, "weekend"))


def segment_levels(customers: pd.DataFrame) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(level, segment id of each customer, customers counted): broad keeps the outliers, micro drops them."""
    broad = customers["segment"].to_numpy(np.int64)
    micro = customers["subsegment"].to_numpy(np.int64)
    return [("broad", broad, np.ones(len(broad), dtype=bool)), ("micro", micro, micro != OUTLIERS)]


def keyed_rows(level: str, table: pd.DataFrame, ids) -> pd.DataFrame:
    """A per-segment table (index = segment id) as rows keyed by (level, segment), outliers last,
    one row for every id in `ids` even where the table has none (a segment with no eval customers)."""
    order = sorted({int(s) for s in ids}, key=lambda s: (s == OUTLIERS, s))
    out = table.reindex(order).reset_index(drop=True)
    out.insert(0, "level", pd.Series([level] * len(order), dtype="str"))
    out.insert(1, "segment", np.asarray(order, dtype=np.int64))
    return out


def aligned_features(customers: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    """Features in the customers' row order (NaN rows for customers the table lacks)."""
    return features.reindex(customers[OUTPUT_ID].to_numpy()).reset_index(drop=True)


def value_share_columns(features: pd.DataFrame) -> list[str]:
    """share_<field>_<value> columns: category / product / channel values, not the time shares or `__other__`."""
    return [c for c in features.columns if c.startswith("share_") and c not in TIME_SHARES and not c.endswith(OTHER)]


def column_words(column: str) -> str:
    """share_category_groceries -> "category groceries" (as the segment names write it)."""
    return column.removeprefix("share_").replace("_", " ")

