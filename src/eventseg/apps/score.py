"""Score new or updated customers with a finished run, without retraining anything:
events → embeddings (the run's checkpoint) → [hybrid features] → propensities (the candidate
each label published in the run, from propensity_model/: the representation as above, RFM and aggregates
from the run's aggregate builder, aggregates.json; the fine-tuned encoder's logits, finetune/, when a
published score comes from it) → segments (the run's clusterer; broad
segments from those propensities when the run had labels).

`FrozenRun` loads and verifies those pieces once, so a job that scores many as-of dates
(eventseg monitor) pays for loading and hash checks once, not per date."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from eventseg.data.io import read_events
from eventseg.data.schema import OUTPUT_ID, EventSchema
from eventseg.embedding.embed import Embedder
from eventseg.features.aggregates import load_aggregate_builder
from eventseg.features.representation import HybridFeatures
from eventseg.propensity import CandidateInputs, PropensityModel
from eventseg.propensity.finetune import FineTunedEncoder
from eventseg.run.artifacts import write_parquet, write_sidecar
from eventseg.run.errors import ConfigError
from eventseg.run.layout import RunLayout
from eventseg.run.manifest import check_run_version, read_manifest, run_holds, verify_files
from eventseg.segmentation.clusterer import SegmentClusterer
from eventseg.segmentation.clusterer.broad import check_stickiness
from eventseg.segmentation.profiles import attach_names, build_customers, tier_cut_points
from eventseg.training.store import run_checkpoint

NO_SEGMENT = -2  # "no earlier segment": placed afresh (−1 is the outliers)


@dataclass
class Described:
    """One as-of date's customers as the run sees them, before placement."""

    ids: np.ndarray
    embeddings: np.ndarray  # the model's vectors
    matrix: np.ndarray  # what the clusterer and heads read (embeddings, or the hybrid)
    aggregates: pd.DataFrame | None  # the run's aggregate features as of the cutoff, rows in ids' order
    scores: pd.DataFrame | None  # customer_id + p_<label> / pred_<target>, rows in ids' order


class FrozenRun:
    """A finished run's model, aggregate builder, hybrid features, heads and clusterer, loaded once."""

    def __init__(self, run_dir: str | os.PathLike, *, device: str = "auto"):
        run = Path(run_dir)
        self.run_dir = run
        self.manifest = read_manifest(run)  # refuses a missing, foreign or incomplete run
        check_run_version(self.manifest, run)
        holds = run_holds(self.manifest, run)  # what the run wrote, from its manifest, never from which files exist
        layout = RunLayout(run)
        loaded = [RunLayout.train_metrics, RunLayout.clusterer, RunLayout.customers, RunLayout.segments,
                  RunLayout.aggregates_builder,
                  *([RunLayout.hybrid] if holds["representation"] == "hybrid" else []),
                  *([RunLayout.propensity_model] if holds["propensity"] else []),
                  *([RunLayout.finetune] if holds["finetune"] else [])]
        verify_files(run, loaded, self.manifest)  # every byte checked before anything is opened
        checkpoint = run_checkpoint(run)  # in the model store: checked against the verified train_metrics.json
        self.embedder = Embedder.from_checkpoint(checkpoint, device=device)
        self.hybrid = HybridFeatures.load(layout.hybrid) if holds["representation"] == "hybrid" else None
        self.heads = PropensityModel.load(layout.propensity_model) if holds["propensity"] else None
        self.finetuned = None  # the fine-tuned encoder, loaded only when a published score needs it
        if self.heads is not None and "finetuned" in self.heads.required_fits():
            if not holds["finetune"]:
                raise ConfigError(f"{run} publishes scores of the fine-tuned encoder but holds no {RunLayout.finetune}/: "
                                  "re-run eventseg run")
            self.finetuned = FineTunedEncoder.load(layout.finetune, self.embedder.model, device=device)
        # the run's one aggregate table: hybrid features, heads and monitoring's drift all read it
        self.aggregate_builder = load_aggregate_builder(run)
        self.clusterer = SegmentClusterer.load(layout.clusterer)
        run_customers = pd.read_parquet(layout.customers)
        self.tier_cuts = tier_cut_points(run_customers) if self.heads is not None else None
        self.segments = pd.read_parquet(layout.segments)

    @property
    def schema(self) -> EventSchema:
        return self.embedder.encoders.schema

    def read(self, events: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
        """The schema's columns of `events`, read once for any number of `score` calls."""
        return read_events(events, self.schema)

    def describe(self, events: pd.DataFrame | str | os.PathLike, cutoff=None) -> Described:
        """Embeddings, representation, aggregates and propensities of every customer with events
        before `cutoff` (all events without one)."""
        events = self.read(events)
        store = self.embedder.encode(events, cutoff=cutoff)
        ids, embeddings = self.embedder.embed_store(store)
        table = None
        if self.aggregate_builder is not None:
            table = self.aggregate_builder.transform(events, cutoff).reindex(ids)
        matrix = embeddings
        if self.hybrid is not None:  # the run clustered and scored embeddings + aggregates
            matrix = self.hybrid.transform(ids, embeddings, aggregates=table)
        scores = None
        if self.heads is not None:
            logits = None
            if self.finetuned is not None:  # its head reads z's neighbours in the representation (the aggregates)
                logits = self.finetuned.decision_function(store, matrix[:, embeddings.shape[1]:])
            inputs = CandidateInputs.build(matrix, table, self.schema, finetuned=logits)
            scores = pd.concat([pd.DataFrame({OUTPUT_ID: ids}), self.heads.scores(inputs)], axis=1)
        return Described(ids, embeddings, matrix, table, scores)

    def place(self, described: Described, *, outcomes: pd.DataFrame | None = None, previous: pd.Series | None = None,
              stickiness: float = 0.0) -> pd.DataFrame:
        """customers.parquet rows: the run's segments for `described`, with its propensities and tiers.

        Broad segments come from the same heads' scores when the run had labels, or from
        `outcomes` (the same columns, e.g. smoothed over dates) when given. `previous`: each
        customer's earlier broad segment (indexed by id; see SegmentClusterer.predict for
        `stickiness`); customers not in it are placed afresh."""
        placing = None
        if self.clusterer.outcome_space_ is not None:
            placing = described.scores if outcomes is None else outcomes
        before = None if previous is None else previous.reindex(described.ids).fillna(NO_SEGMENT).to_numpy(dtype=np.int64)
        clusters = self.clusterer.predict(described.matrix, outcomes=placing, previous=before,
                                          stickiness=stickiness).to_frame(described.ids)
        customers = build_customers(clusters, described.scores, tier_cuts=self.tier_cuts)
        return attach_names(customers, self.segments)

    def score(self, events: pd.DataFrame | str | os.PathLike, cutoff=None, *, previous: pd.Series | None = None,
              stickiness: float = 0.0) -> pd.DataFrame:
        """customers.parquet rows for every customer with events before `cutoff`, as the run would."""
        return self.place(self.describe(events, cutoff), previous=previous, stickiness=stickiness)


def score_customers(run_dir: str | os.PathLike, events: str | os.PathLike | pd.DataFrame, *, cutoff=None,
                    device: str = "auto", previous: pd.DataFrame | None = None, stickiness: float = 0.0) -> pd.DataFrame:
    """customers.parquet rows for the customers in `events`, using the run in `run_dir`.

    `previous`: an earlier scoring's customers.parquet (customer_id, segment); with `stickiness`
    > 0 a customer keeps that segment unless another is clearly closer (a weekly refresh that
    does not move people on noise; see eventseg monitor for what it costs and buys)."""
    stickiness = check_stickiness(stickiness)
    before = None
    if previous is not None:
        missing = [c for c in (OUTPUT_ID, "segment") if c not in previous.columns]
        if missing:
            raise ConfigError(f"previous scores lack column(s) {missing}: pass an earlier score.py customers.parquet")
        before = previous.set_index(OUTPUT_ID)["segment"]
    return FrozenRun(run_dir, device=device).score(events, cutoff, previous=before, stickiness=stickiness)


def score_from_config(cfg) -> dict:
    """eventseg score: run_dir + a data config of new events → <out> (customers.parquet)."""
    from eventseg.data.sources import resolve_source

    previous = cfg.get("previous")
    if previous is not None and not Path(str(previous)).exists():
        raise FileNotFoundError(f"previous={previous} does not exist: pass an earlier score.py customers.parquet")
    customers = score_customers(cfg.run_dir, resolve_source(cfg.data), cutoff=cfg.data.get("cutoff"), device=str(cfg.device),
                                previous=None if previous is None else pd.read_parquet(str(previous)),
                                stickiness=float(cfg.get("stickiness") or 0.0))
    out = Path(cfg.out)
    write_parquet(customers, out)
    write_sidecar(out, rows=len(customers), run_dir=str(cfg.run_dir), source=str(cfg.data.get("path") or cfg.data.get("source")))
    counts = customers["segment_name"].value_counts()
    return {"customers": str(out), "rows": len(customers), "segments": {str(k): int(v) for k, v in counts.items()}}
