"""Score new or updated customers with a finished run, without retraining anything:
events → embeddings (the run's checkpoint) → [hybrid features] → propensities (the candidate
each label published in the run, from heads/: the representation as above, RFM and aggregates
from the run's aggregate builder, aggregates.json) → segments (the run's clusterer; broad
segments from those propensities when the run had labels)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from eventseg.artifacts import write_parquet, write_sidecar
from eventseg.checkpoint import run_checkpoint
from eventseg.cluster import CLUSTERER_FILE, SegmentClusterer
from eventseg.embed import Embedder
from eventseg.data.io import read_events
from eventseg.data.schema import OUTPUT_ID
from eventseg.features import AGGREGATES_BUILDER_FILE, load_aggregate_builder
from eventseg.hybrid import HYBRID_FILE, HybridFeatures
from eventseg.predict import CandidateInputs, PropensityModel
from eventseg.runs import read_manifest, verify_files
from eventseg.segments import attach_names, build_customers, tier_cut_points


def score_customers(run_dir: str | os.PathLike, events: str | os.PathLike | pd.DataFrame, *, cutoff=None,
                    device: str = "auto") -> pd.DataFrame:
    """customers.parquet rows for the customers in `events`, using the run in `run_dir`."""
    run = Path(run_dir)
    manifest = read_manifest(run)  # refuses a missing, foreign or incomplete run
    checkpoint = run_checkpoint(run)
    loaded = [checkpoint.relative_to(run), CLUSTERER_FILE, "customers.parquet", "segments.parquet",
              *(name for name in (HYBRID_FILE, "heads", AGGREGATES_BUILDER_FILE) if (run / name).exists())]
    verify_files(run, loaded, manifest)  # every byte checked before anything is opened
    embedder = Embedder.from_checkpoint(checkpoint, device=device)
    store = embedder.encode(events, cutoff=cutoff)
    ids, matrix = embedder.embed_store(store)
    schema = embedder.encoders.schema
    table = None
    if (run / HYBRID_FILE).exists() or (run / "heads").exists():  # both read the run's one aggregate table
        table = load_aggregate_builder(run).transform(read_events(events, schema), cutoff)
    if (run / HYBRID_FILE).exists():  # the run clustered and scored embeddings + aggregates
        matrix = HybridFeatures.load(run / HYBRID_FILE).transform(ids, matrix, aggregates=table)
    scores, tier_cuts = None, None
    if (run / "heads").exists():
        model = PropensityModel.load(run / "heads")
        inputs = CandidateInputs.build(matrix, table.reindex(ids), schema)
        scores = pd.concat([pd.DataFrame({OUTPUT_ID: ids}), model.scores(inputs)], axis=1)
        tier_cuts = tier_cut_points(pd.read_parquet(run / "customers.parquet"))
    # the same placement as the run: broad segments from the same heads' scores when it had labels
    clusterer = SegmentClusterer.load(run / CLUSTERER_FILE)
    outcomes = scores if clusterer.outcome_space_ is not None else None
    clusters = clusterer.predict(matrix, outcomes=outcomes).to_frame(ids)
    customers = build_customers(clusters, scores, tier_cuts=tier_cuts)
    return attach_names(customers, pd.read_parquet(run / "segments.parquet"))


def score_from_config(cfg) -> dict:
    """scripts/score.py: run_dir + a data config of new events → <out> (customers.parquet)."""
    from eventseg.data.sources import resolve_source

    customers = score_customers(cfg.run_dir, resolve_source(cfg.data), cutoff=cfg.data.get("cutoff"), device=str(cfg.device))
    out = Path(cfg.out)
    write_parquet(customers, out)
    write_sidecar(out, rows=len(customers), run_dir=str(cfg.run_dir), source=str(cfg.data.get("path") or cfg.data.get("source")))
    counts = customers["segment_name"].value_counts()
    return {"customers": str(out), "rows": len(customers), "segments": {str(k): int(v) for k, v in counts.items()}}
