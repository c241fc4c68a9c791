"""Customer-level train/validation/test split that depends only on (seed, customer id).

A customer lands in the same split whatever the row order, the other customers in the
table, or next month's extra data, so evaluations stay comparable between runs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")
TRAIN, VAL, TEST = range(3)


def assign_splits(customer_ids: np.ndarray, seed: int = 0, fractions=(0.8, 0.1, 0.1)) -> np.ndarray:
    """int8 split code per customer (0 train, 1 val, 2 test)."""
    fractions = np.asarray(fractions, dtype=np.float64)
    if len(fractions) != 3 or (fractions < 0).any() or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {fractions.tolist()}")
    u = stable_uniform(customer_ids, seed)
    return np.searchsorted(np.cumsum(fractions)[:2], u, side="right").astype(np.int8)


def stable_uniform(customer_ids: np.ndarray, seed: int) -> np.ndarray:
    """A uniform [0, 1) number per id from a keyed hash of its text form."""
    key = f"eventseg{int(seed) % 10**8:08d}"  # hash_array wants a 16-character key
    text = np.asarray(customer_ids).astype(str).astype(object)
    hashed = pd.util.hash_array(text, hash_key=key, categorize=False)
    return (hashed >> np.uint64(11)).astype(np.float64) / float(2**53)
