"""What every candidate model reads, and the two baselines the representation must beat.

A run describes each customer three ways: the representation (embedding, or embedding ++
aggregates), the hand-made aggregates of eventseg.features, and the classic four RFM numbers
read off those aggregates. `CandidateInputs` holds all three for the same customers, in the
same order, so every candidate is fitted, chosen and later rescored (score.py) on one table.

- `rfm_logistic`: logistic regression on signed-log1p recency/frequency/monetary/tenure;
- `aggregate_hgb`: gradient-boosted trees on every aggregate column.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from eventseg.data.encoders import signed_log1p
from eventseg.data.schema import EventSchema
from eventseg.features import RFM_COLUMNS, rfm_from_aggregates

SOURCES = ("representation", "rfm", "aggregates")


def rfm_matrix(rfm) -> np.ndarray:
    """RFM frame (columns recency, frequency, monetary, tenure) -> model input."""
    if isinstance(rfm, pd.DataFrame):
        missing = [c for c in RFM_COLUMNS if c not in rfm.columns]
        if missing:
            raise ValueError(f"RFM features lack column(s) {missing}; build them with eventseg.features.rfm_features")
        rfm = rfm[list(RFM_COLUMNS)].to_numpy(dtype=np.float64)
    return signed_log1p(np.asarray(rfm, dtype=np.float64))


@dataclass
class CandidateInputs:
    """The representation, the aggregates and RFM of the same customers, row for row."""

    representation: np.ndarray
    aggregates: pd.DataFrame
    rfm: pd.DataFrame

    @classmethod
    def build(cls, representation, aggregates: pd.DataFrame, schema: EventSchema) -> "CandidateInputs":
        """`aggregates`: one row per row of `representation` (NaN where a customer has no history)."""
        representation = np.asarray(representation, dtype=np.float32)
        if representation.ndim != 2 or len(representation) != len(aggregates):
            raise ValueError(f"representation {representation.shape} and aggregates ({len(aggregates)} rows) must "
                             "describe the same customers, in order")
        return cls(representation, aggregates, rfm_from_aggregates(aggregates, schema))

    def __len__(self) -> int:
        return len(self.representation)

    def take(self, rows) -> "CandidateInputs":
        """The same inputs for a subset of the rows (a boolean mask or positions)."""
        rows = np.asarray(rows)
        pos = np.flatnonzero(rows) if rows.dtype == bool else rows
        return CandidateInputs(self.representation[pos], self.aggregates.iloc[pos], self.rfm.iloc[pos])

    def matrix(self, source: str) -> np.ndarray:
        if source == "representation":
            return self.representation
        if source == "rfm":
            return rfm_matrix(self.rfm)
        if source == "aggregates":
            return self.aggregates.to_numpy(np.float64)
        raise ValueError(f"unknown input source {source!r}; one of {SOURCES}")
