"""Micro-segments under the broad ones: each micro-segment is one HDBSCAN dense group within
one broad segment (the cells of broad × dense), so every micro-segment has exactly one parent
and keeps the behavioural purity of its dense group.

A cell smaller than the minimum segment size is folded into the largest micro-segment of its
broad segment, and so is a combination first seen when scoring new customers: the lookup
table is complete, so every placed customer gets a micro-segment.
"""

from __future__ import annotations

import numpy as np

from eventseg.segmentation.clusterer.placement import NOISE


class MicroLevel:
    """table_[broad, dense] → micro id; parent_[micro] → broad id. Micro ids are ordered by
    parent, then size (largest first)."""

    def fit(self, broad: np.ndarray, dense: np.ndarray, n_broad: int, n_dense: int, min_size: int) -> "MicroLevel":
        placed = (broad >= 0) & (dense >= 0)
        counts = np.zeros((n_broad, max(n_dense, 1)), dtype=np.int64)
        np.add.at(counts, (broad[placed], dense[placed]), 1)
        table = np.full(counts.shape, NOISE, dtype=np.int64)
        parent, sizes, next_id = [], [], 0
        for b in range(n_broad):
            row = counts[b]
            order = np.lexsort((np.arange(len(row)), -row))
            kept = [d for d in order if row[d] >= min_size] or [int(order[0])]  # every broad keeps one
            for d in kept:
                table[b, d] = next_id
                parent.append(b)
                sizes.append(int(row[d]))
                next_id += 1
            table[b, table[b] == NOISE] = table[b, kept[0]]  # small and unseen cells: the largest
        self.table_ = table
        self.parent_ = np.asarray(parent, dtype=np.int64)
        self.fit_sizes_ = np.asarray(sizes, dtype=np.int64)
        return self

    @property
    def n_micro_(self) -> int:
        return int(len(self.parent_))

    def predict(self, broad: np.ndarray, dense: np.ndarray) -> np.ndarray:
        out = np.full(len(broad), NOISE, dtype=np.int64)
        ok = (broad >= 0) & (dense >= 0)
        out[ok] = self.table_[broad[ok], dense[ok]]
        return out

    @classmethod
    def from_arrays(cls, table: np.ndarray, parent: np.ndarray) -> "MicroLevel":
        m = cls()
        m.table_, m.parent_ = table.astype(np.int64), parent.astype(np.int64)
        m.fit_sizes_ = np.zeros(len(parent), dtype=np.int64)
        return m
