"""The hybrid representation: the learned embedding concatenated with standardised hand-made
aggregates, for the propensity heads and for clustering.

Self-supervised embeddings and aggregates know different things: aggregates state recency,
frequency and spend exactly; embeddings carry order, rhythm and mix. `HybridFeatures` is the
fitted artifact (which category shares to build, how to scale each block) that the pipeline
saves beside the clusterer and heads, so new customers are scored with the same columns.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from eventseg.data.encoders import signed_log1p
from eventseg.data.schema import EventSchema
from eventseg.features.aggregates import AggregateFeatureBuilder, as_validated
from eventseg.run.artifacts import write_json

REPRESENTATIONS = ("embedding", "hybrid")
BLOCK_ORDER = ("embedding", "aggregates")


class HybridRepresentation:
    """Learned embedding ++ hand-made aggregates, as one matrix for heads and clustering.

    Aggregates are signed-log1p'd (counts and money are heavy-tailed), both blocks are
    standardised with statistics of the rows `fit` saw, and each block is divided by the
    square root of its width so that each carries the same total variance: ~60 aggregate
    columns must not drown a 64-d embedding in a distance, nor the reverse. Either block may
    be None (the representation is then that block alone, treated the same way).

    Why not scikit-learn's ColumnTransformer (two StandardScalers with transformer_weights): its
    fitted state cannot be written as the plain JSON this class saves (means and scales per
    block, readable and loaded without executing anything); it would need skops and a trusted
    type list for two vectors, and scoring new customers would depend on ColumnTransformer's
    private fitted attributes staying the same across scikit-learn releases.
    """

    def __init__(self):
        self.blocks_: dict[str, dict] | None = None

    @staticmethod
    def _blocks(embeddings, aggregates) -> dict[str, np.ndarray]:
        blocks = {}
        if embeddings is not None:
            blocks["embedding"] = np.asarray(embeddings, dtype=np.float64)
        if aggregates is not None:
            blocks["aggregates"] = signed_log1p(np.asarray(aggregates, dtype=np.float64))
        if not blocks:
            raise ValueError("HybridRepresentation needs embeddings, aggregates or both; got neither")
        rows = {name: len(b) for name, b in blocks.items()}
        if len(set(rows.values())) > 1:
            raise ValueError(f"embeddings and aggregates must have one row per customer, in the same order; got rows {rows}")
        for name, b in blocks.items():
            if b.ndim != 2:
                raise ValueError(f"{name} must be a 2-D matrix [customers, columns], got shape {b.shape}")
            if not np.isfinite(b).all():
                raise ValueError(f"{name} hold {int((~np.isfinite(b)).sum())} NaN/infinite values: fill or drop those customers first")
        return blocks

    def fit(self, embeddings=None, aggregates=None) -> "HybridRepresentation":
        self.blocks_ = {}
        for name, b in self._blocks(embeddings, aggregates).items():
            std = b.std(axis=0)
            self.blocks_[name] = {
                "mean": b.mean(axis=0).tolist(),
                "scale": np.where(std > 1e-12, std, 1.0).tolist(),  # constant columns stay 0
                "width": b.shape[1],
            }
        return self

    def transform(self, embeddings=None, aggregates=None) -> np.ndarray:
        if self.blocks_ is None:
            raise RuntimeError("HybridRepresentation is not fitted: call fit first")
        blocks = self._blocks(embeddings, aggregates)
        if set(blocks) != set(self.blocks_):
            raise ValueError(f"fitted on blocks {sorted(self.blocks_)} but given {sorted(blocks)}")
        out = []
        for name in BLOCK_ORDER:  # fixed, whatever order the saved JSON lists the blocks in
            if name not in blocks:
                continue
            b, stats = blocks[name], self.blocks_[name]
            if b.shape[1] != stats["width"]:
                raise ValueError(f"{name} have {b.shape[1]} columns; the representation was fitted on {stats['width']}")
            out.append((b - np.asarray(stats["mean"])) / np.asarray(stats["scale"]) / np.sqrt(stats["width"]))
        return np.hstack(out)

    def fit_transform(self, embeddings=None, aggregates=None) -> np.ndarray:
        return self.fit(embeddings, aggregates).transform(embeddings, aggregates)

    def to_dict(self) -> dict:
        return {"blocks": self.blocks_}

    @classmethod
    def from_dict(cls, d: dict) -> "HybridRepresentation":
        rep = cls()
        rep.blocks_ = d["blocks"]
        return rep


class HybridFeatures:
    """Embeddings + aggregates of the same customers' events, as one fitted transform."""

    def __init__(self, schema: EventSchema, top_k_categories: int = 30):
        self.builder = AggregateFeatureBuilder(schema, top_k_categories)
        self.scaler = HybridRepresentation()

    @classmethod
    def from_builder(cls, builder: AggregateFeatureBuilder) -> "HybridFeatures":
        """Reuse a run's fitted aggregate builder, so the hybrid, the baselines and the segment
        profiles all describe customers with the same columns."""
        obj = cls(builder.schema, builder.top_k_categories)
        obj.builder = builder
        return obj

    @property
    def schema(self) -> EventSchema:
        return self.builder.schema

    @staticmethod
    def _aligned(ids, features: pd.DataFrame, as_of) -> pd.DataFrame:
        aligned = features.reindex(pd.Index(np.asarray(ids)))
        missing = aligned.iloc[:, 0].isna().to_numpy()
        if missing.any():
            example = np.asarray(ids)[missing][:3].tolist()
            raise ValueError(
                f"{int(missing.sum())} embedded customer(s) have no events before as_of={as_of} in the events "
                f"given, e.g. {example}: pass the events (and cutoff) the embeddings were made from"
            )
        return aligned

    def fit(self, ids, embeddings, events: pd.DataFrame | None = None, as_of=None, fit_ids=None, *,
            aggregates: pd.DataFrame | None = None) -> "HybridFeatures":
        """Choose category columns and block scales on `fit_ids` (default: every id).

        With `aggregates` (the table of an already fitted builder, indexed by id) the builder
        is kept as it is and no events are needed."""
        ids = np.asarray(ids)
        rows = np.ones(len(ids), dtype=bool) if fit_ids is None else pd.Index(ids).isin(np.asarray(fit_ids))
        if not rows.any():
            raise ValueError("none of fit_ids is among the embedded customers: nothing to fit the hybrid features on")
        if aggregates is None:
            events = as_validated(events, self.schema)
            self.builder.fit(events.loc[events[self.schema.id_col].isin(ids[rows])], as_of)
            aggregates = self.builder.transform(events, as_of)
        aligned = self._aligned(ids, aggregates, as_of)
        self.scaler.fit(np.asarray(embeddings)[rows], aligned.to_numpy()[rows])
        return self

    def transform(self, ids, embeddings, events: pd.DataFrame | None = None, as_of=None, *,
                  aggregates: pd.DataFrame | None = None) -> np.ndarray:
        """[customers, embedding dim + aggregate columns] float32, rows in the order of `ids`."""
        if aggregates is None:
            aggregates = self.builder.transform(as_validated(events, self.schema), as_of)
        aligned = self._aligned(ids, aggregates, as_of)
        return self.scaler.transform(embeddings, aligned.to_numpy()).astype(np.float32)

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        write_json({"builder": self.builder.to_dict(), "scaler": self.scaler.to_dict()}, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "HybridFeatures":
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"hybrid features file not found: {path}")
        d = json.loads(path.read_text())
        builder = AggregateFeatureBuilder.from_dict(d["builder"])
        obj = cls(builder.schema, builder.top_k_categories)
        obj.builder, obj.scaler = builder, HybridRepresentation.from_dict(d["scaler"])
        return obj
