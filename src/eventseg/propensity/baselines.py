"""What every candidate model reads, and the two baselines the representation must beat.

A run describes each customer three ways: the representation (embedding, or embedding ++
aggregates), the hand-made aggregates of eventseg.features.aggregates, and the classic four RFM numbers
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
from eventseg.features.aggregates import RFM_COLUMNS, rfm_from_aggregates

SOURCES = ("representation", "rfm", "aggregates", "finetuned")


def rfm_matrix(rfm) -> np.ndarray:
    """RFM frame (columns recency, frequency, monetary, tenure) -> model input."""
    if isinstance(rfm, pd.DataFrame):
        missing = [c for c in RFM_COLUMNS if c not in rfm.columns]
        if missing:
            raise ValueError(f"RFM features lack column(s) {missing}; build them with eventseg.features.aggregates.rfm_features")
        rfm = rfm[list(RFM_COLUMNS)].to_numpy(dtype=np.float64)
    return signed_log1p(np.asarray(rfm, dtype=np.float64))


@dataclass
class CandidateInputs:
    """The representation, the aggregates and RFM of the same customers, row for row; with
    propensity.finetune, also the fine-tuned encoder's logits per binary label (`finetuned`)."""

    representation: np.ndarray
    aggregates: pd.DataFrame
    rfm: pd.DataFrame
    finetuned: np.ndarray | None = None

    @classmethod
    def build(cls, representation, aggregates: pd.DataFrame, schema: EventSchema,
              finetuned: np.ndarray | None = None) -> "CandidateInputs":
        """`aggregates`: one row per row of `representation` (NaN where a customer has no history)."""
        representation = np.asarray(representation, dtype=np.float32)
        if representation.ndim != 2 or len(representation) != len(aggregates):
            raise ValueError(f"representation {representation.shape} and aggregates ({len(aggregates)} rows) must "
                             "describe the same customers, in order")
        if finetuned is not None:
            finetuned = np.asarray(finetuned, dtype=np.float64)
            if finetuned.ndim != 2 or len(finetuned) != len(representation):
                raise ValueError(f"fine-tuned logits {finetuned.shape} must have one row per customer ({len(representation)})")
        return cls(representation, aggregates, rfm_from_aggregates(aggregates, schema), finetuned)

    def __len__(self) -> int:
        return len(self.representation)

    def take(self, rows) -> "CandidateInputs":
        """The same inputs for a subset of the rows (a boolean mask or positions)."""
        rows = np.asarray(rows)
        pos = np.flatnonzero(rows) if rows.dtype == bool else rows
        finetuned = None if self.finetuned is None else self.finetuned[pos]
        return CandidateInputs(self.representation[pos], self.aggregates.iloc[pos], self.rfm.iloc[pos], finetuned)

    def has(self, source: str) -> bool:
        return source != "finetuned" or self.finetuned is not None

    def matrix(self, source: str) -> np.ndarray:
        if source == "representation":
            return self.representation
        if source == "rfm":
            return rfm_matrix(self.rfm)
        if source == "aggregates":
            return self.aggregates.to_numpy(np.float64)
        if source == "finetuned":
            if self.finetuned is None:
                raise ValueError("these inputs hold no fine-tuned logits: build them with finetuned=FineTunedEncoder"
                                 "(...).decision_function(store, side) (the run's heads/finetune)")
            return self.finetuned
        raise ValueError(f"unknown input source {source!r}; one of {SOURCES}")
