"""The padded batch the models consume, and the feature layout that describes it.

Sequences are chronological (oldest event first) and right-padded. Categorical code 0 is
padding; codes 1-3 are the unseen, rare and missing buckets; real values start at 4.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch

PAD, UNSEEN, RARE, MISSING = 0, 1, 2, 3
N_SPECIAL = 4


@dataclass(frozen=True)
class FeatureSpec:
    """What each column of a batch means: enough to build a model without the data."""

    categorical: dict[str, int]  # field name -> cardinality (including the special codes)
    numeric: list[str] = field(default_factory=list)  # names of the float feature columns
    # numeric column -> {"center", "scale", "clip"} of its signed-log1p robust scaling, so a model
    # can turn features back into raw units (the future-summary objective sums amounts and
    # measures days); empty in specs written before it existed.
    scalers: dict[str, dict] = field(default_factory=dict)
    # per-customer summary of the events beyond max_len (`earlier_features`); empty in older specs
    earlier: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"categorical": dict(self.categorical), "numeric": list(self.numeric), "scalers": dict(self.scalers),
                "earlier": list(self.earlier)}

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureSpec":
        return cls(categorical=dict(d["categorical"]), numeric=list(d["numeric"]), scalers=dict(d.get("scalers", {})),
                   earlier=list(d.get("earlier", [])))


EARLIER_TIME_FEATURES = ("earlier_log_events", "earlier_log_span_days", "earlier_log_gap_days")


def earlier_features(numeric_fields) -> list[str]:
    """Names of the `earlier` columns: counts and timing, then the sum of each numeric field."""
    return [*EARLIER_TIME_FEATURES, *(f"earlier_{c}_sum" for c in numeric_fields)]


@dataclass
class EventBatch:
    """Per-field tensors of a batch of customers, padded to the longest sequence in it."""

    categorical: torch.Tensor  # int64 [B, L, n_categorical]
    numeric: torch.Tensor  # float32 [B, L, n_numeric]
    lengths: torch.Tensor  # int64 [B], each >= 1
    customer_index: torch.Tensor  # int64 [B], row of the customer in the sequence store
    earlier: torch.Tensor | None = None  # float32 [B, n_earlier]: summary of events beyond max_len

    @property
    def mask(self) -> torch.Tensor:
        """bool [B, L]: True where there is a real event."""
        steps = torch.arange(self.categorical.shape[1], device=self.lengths.device)
        return steps[None, :] < self.lengths[:, None]

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def apply(self, fn) -> "EventBatch":
        """The same batch with `fn` applied to every tensor (device moves, pinning)."""
        return EventBatch(**{f.name: None if getattr(self, f.name) is None else fn(getattr(self, f.name))
                             for f in fields(self)})

    def pin_memory(self) -> "EventBatch":
        return self.apply(torch.Tensor.pin_memory)
