"""The prepare stage: validate raw events, fit encoders on training customers, build the store."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from eventseg.data.encoders import CategoricalEncoder, EventEncoders, NumericScaler, TimeEncoder
from eventseg.data.io import read_events
from eventseg.data.labels import events_before
from eventseg.data.schema import EventSchema
from eventseg.data.split import SPLITS, TRAIN, assign_splits
from eventseg.data.store import SequenceStore, SortedEvents, build_store, sort_events
from eventseg.data.validate import EventDataError, ValidationReport, count_duplicate_events, validate_events
from eventseg.run.artifacts import atomic_path
from eventseg.run.layout import RunLayout, entry_name


@dataclass
class EncoderOptions:
    max_vocab: int = 5000  # per categorical field; the rest share the rare bucket
    min_count: int = 5  # values seen fewer times in training go to the rare bucket
    numeric_clip: float = 5.0  # in robust standard units, after signed log1p


@dataclass
class PreparedData:
    """A prepared dataset: the store, the encoders that made it, the split and the report."""

    store: SequenceStore
    encoders: EventEncoders
    splits: np.ndarray  # int8 per customer, codes into SPLITS
    report: dict = field(default_factory=dict)

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.mkdir()
            self.store.save(tmp / entry_name(RunLayout.prepared_store))
            self.encoders.save(tmp / entry_name(RunLayout.prepared_encoders))
            np.save(tmp / entry_name(RunLayout.prepared_splits), self.splits)
            (tmp / entry_name(RunLayout.prepare_report)).write_text(json.dumps(self.report, indent=2, default=str))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PreparedData":
        path = Path(path)
        encoders = path / entry_name(RunLayout.prepared_encoders)
        if not encoders.exists():
            raise FileNotFoundError(f"{path} is not a prepared dataset (no {encoders.name}); run prepare first")
        return cls(
            store=SequenceStore.load(path / entry_name(RunLayout.prepared_store)),
            encoders=EventEncoders.load(encoders),
            splits=np.load(path / entry_name(RunLayout.prepared_splits)),
            report=json.loads((path / entry_name(RunLayout.prepare_report)).read_text()),
        )


def prepare_events(
    source: str | os.PathLike | pd.DataFrame,
    schema: EventSchema,
    *,
    max_len: int = 200,
    on_invalid: str = "fail",
    cutoff=None,
    split_seed: int = 0,
    split_fractions=(0.8, 0.1, 0.1),
    encoder_options: EncoderOptions | None = None,
    validation: ValidationReport | None = None,
) -> PreparedData:
    """Read → validate → (cut off) → sort → split → fit encoders on train → encode → truncate.

    `validation`: the report of a caller that already validated `source` (a DataFrame), so
    the events are not validated twice and the report keeps the rows that caller dropped."""
    options = encoder_options or EncoderOptions()
    started = time.perf_counter()
    if validation is None:
        df, validation = validate_events(read_events(source, schema), schema, on_invalid)
    else:
        df = source
    if cutoff is not None:
        df = events_before(df, schema, cutoff).reset_index(drop=True)
        if len(df) == 0:
            raise ValueError(f"no events before the cutoff {cutoff}; choose a later data.cutoff")
    events = sort_events(df, schema, reference_time=cutoff)
    splits = assign_splits(events.customer_ids, seed=split_seed, fractions=split_fractions)
    encoders = fit_encoders(df, schema, events, np.repeat(splits == TRAIN, events.counts), options)
    store = build_store(df, encoders, max_len, events)
    validation.duplicate_events = count_duplicate_events(df, events.order, events.same_as_previous())
    report = {
        "validation": validation.to_dict(),
        "rows_after_cutoff_filter": len(df),
        "cutoff": None if cutoff is None else str(pd.Timestamp(cutoff)),
        "n_customers": store.n_customers,
        "n_events_stored": store.n_events,
        "events_truncated": int(len(df) - store.n_events),
        "customers_truncated": int((events.counts > max_len).sum()),
        "max_len": max_len,
        "split_counts": {name: int((splits == i).sum()) for i, name in enumerate(SPLITS)},
        "vocabulary_sizes": {c: len(e.vocabulary) for c, e in encoders.categorical.items()},
        "seconds": round(time.perf_counter() - started, 3),
    }
    return PreparedData(store=store, encoders=encoders, splits=splits, report=report)


def fit_encoders(
    df: pd.DataFrame, schema: EventSchema, events: SortedEvents, fit_rows: np.ndarray, options: EncoderOptions
) -> EventEncoders:
    """Fit every encoder on the rows selected by `fit_rows` (a mask in sorted order)."""
    if not fit_rows.any():
        raise ValueError("no training customers to fit encoders on: the split gave the train set no customers")
    rows = events.order[fit_rows]
    return EventEncoders(
        schema=schema,
        categorical={
            c: CategoricalEncoder.fit(df[c].iloc[rows], max_size=options.max_vocab, min_count=options.min_count)
            for c in schema.categorical
        },
        numeric={c: NumericScaler.fit(df[c].to_numpy()[rows], clip=options.numeric_clip) for c in schema.numeric},
        time=TimeEncoder.fit(events.gap_hours[fit_rows], events.age_days[fit_rows]),
    )


def encode_events(
    source: str | os.PathLike | pd.DataFrame,
    encoders: EventEncoders,
    *,
    max_len: int,
    on_invalid: str = "fail",
    cutoff=None,
) -> SequenceStore:
    """Scoring path: apply already-fitted encoders to new events (unseen values are fine)."""
    schema = encoders.schema
    df, _ = validate_events(read_events(source, schema), schema, on_invalid)
    if cutoff is not None:
        df = events_before(df, schema, cutoff).reset_index(drop=True)
        if len(df) == 0:
            raise EventDataError([f"no events before the cutoff {cutoff}: nothing to encode; choose a later cutoff"])
    return build_store(df, encoders, max_len, sort_events(df, schema, reference_time=cutoff))


def prepare_from_config(data_cfg, out_dir: str | os.PathLike, source=None, validation=None) -> PreparedData:
    """The prepare stage as scripts call it: data config in, `<out_dir>/prepared/` out.

    `source` (events already read and validated, with their `validation` report, e.g. by the
    pipeline) replaces reading `data_cfg`'s source."""
    from eventseg.data.sources import resolve_source

    prepared = prepare_events(
        resolve_source(data_cfg) if source is None else source,
        EventSchema.from_config(data_cfg),
        max_len=int(data_cfg.get("max_len", 200)),
        on_invalid=str(data_cfg.get("on_invalid", "fail")),
        cutoff=data_cfg.get("cutoff"),
        split_seed=int(data_cfg.get("split", {}).get("seed", 0)),
        split_fractions=tuple(data_cfg.get("split", {}).get("fractions", (0.8, 0.1, 0.1))),
        encoder_options=EncoderOptions(**dict(data_cfg.get("encoders", {}) or {})),
        validation=validation,
    )
    prepared.save(RunLayout(out_dir).prepared)
    return prepared
