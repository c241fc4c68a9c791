"""The columnar sequence store: every customer's events as slices of flat typed arrays.

Events are sorted by (customer, time); customer i owns rows offsets[i]:offsets[i+1]. Arrays
are saved as .npy files and loaded memory-mapped, so opening a store of tens of millions of
events costs nothing and DataLoader workers share pages instead of copying them.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from eventseg.data.batch import EARLIER_TIME_FEATURES, EventBatch, earlier_features
from eventseg.data.encoders import EventEncoders, TimeEncoder, signed_log1p
from eventseg.data.schema import EventSchema
from eventseg.run.artifacts import atomic_path

STORE_FORMAT = 2  # 2: `earlier`, the summary of each customer's events beyond max_len
_PARALLEL_SORT_MIN_ROWS = 1_000_000  # below this a thread pool costs more than it saves
_ARRAYS = ("customer_ids", "offsets", "timestamps", "categorical", "numeric", "earlier")


@dataclass
class SortedEvents:
    """Row order and per-customer layout of a validated event table (before truncation)."""

    order: np.ndarray  # int64 permutation of the table's rows, sorted by (customer, time)
    customer_ids: np.ndarray  # distinct ids, ascending
    counts: np.ndarray  # int64 events per customer
    ts_seconds: np.ndarray  # int64, in sorted order
    first: np.ndarray  # bool, in sorted order: the customer's first event
    gap_hours: np.ndarray  # float64, NaN at first events
    age_days: np.ndarray  # float64, days before the reference time

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)

    def same_as_previous(self) -> np.ndarray:
        """True where a row has the same customer and second as the row before it."""
        same = np.zeros(len(self.order), dtype=bool)
        same[1:] = (self.ts_seconds[1:] == self.ts_seconds[:-1]) & ~self.first[1:]
        return same


def sort_events(df: pd.DataFrame, schema: EventSchema, reference_time: pd.Timestamp | None = None) -> SortedEvents:
    """Sort once by (customer, time) and derive the time quantities every later step needs.

    `reference_time` (a cutoff) anchors event ages; without it the table's last event does.
    One anchor for every customer is what lets the model see recency: a customer who went
    quiet months ago has a large age on their last event, an active one an age near 0.
    """
    codes, uniques = pd.factorize(df[schema.id_col], sort=True)
    ts = df[schema.time_col].to_numpy(dtype="datetime64[s]").view(np.int64)
    span = int(ts.max() - ts.min()) + 1
    if len(uniques) * span < 2**62:  # one int64 key sorts ~2x faster than a two-key lexsort
        key = codes.astype(np.int64) * span + (ts - ts.min())
        order = _argsort_by_customer_blocks(key, codes, len(uniques))
        del key
    else:
        order = np.lexsort((ts, codes))
    counts = np.bincount(codes, minlength=len(uniques)).astype(np.int64)
    ts_sorted = ts[order]
    first = np.zeros(len(order), dtype=bool)
    first[np.concatenate([[0], np.cumsum(counts)[:-1]])] = True
    if reference_time is None:
        reference = np.int64(ts.max())
    else:
        reference = np.int64(pd.Timestamp(reference_time).value // 10**9)
    gap, age = TimeEncoder.raw(ts_sorted, first, reference)
    ids = uniques.to_numpy() if hasattr(uniques, "to_numpy") else np.asarray(uniques)
    return SortedEvents(order, _storable_ids(ids), counts, ts_sorted, first, gap, age)


def _argsort_by_customer_blocks(key: np.ndarray, codes: np.ndarray, n_customers: int) -> np.ndarray:
    """Stable argsort of a customer-major key, one block of customers per CPU thread.

    Blocks of customer codes occupy disjoint key ranges, so sorting each block's rows (numpy
    releases the GIL while sorting) and concatenating equals one sort of the whole key.
    """
    n_blocks = min(os.cpu_count() or 1, 8)
    if n_blocks == 1 or len(key) < _PARALLEL_SORT_MIN_ROWS:
        return np.argsort(key, kind="stable")
    block = (codes.astype(np.int64) * n_blocks) // max(n_customers, 1)
    rows = [np.flatnonzero(block == b) for b in range(n_blocks)]
    return np.concatenate(_parallel_map(lambda r: r[np.argsort(key[r], kind="stable")], rows))


def _parallel_map(fn, items: list) -> list:
    """Run numpy-heavy work on every core; numpy releases the GIL in sorts, ufuncs and gathers."""
    with ThreadPoolExecutor(min(len(items), os.cpu_count() or 1) or 1) as pool:
        return list(pool.map(fn, items))


def _storable_ids(ids: np.ndarray) -> np.ndarray:
    """int64 for integer ids, fixed-width unicode otherwise: both memory-map from .npy."""
    if np.issubdtype(ids.dtype, np.integer):
        return ids.astype(np.int64)
    return np.asarray(ids.astype(str), dtype=str)


@dataclass
class SequenceStore:
    customer_ids: np.ndarray  # [n_customers]
    offsets: np.ndarray  # int64 [n_customers + 1]
    timestamps: np.ndarray  # int64 seconds [n_events]
    categorical: np.ndarray  # int16/int32 codes [n_events, n_categorical]
    numeric: np.ndarray  # float32 [n_events, n_numeric]
    earlier: np.ndarray  # float32 [n_customers, n_earlier]: what max_len cut off (zeros when nothing)
    categorical_fields: list[str]
    numeric_features: list[str]
    earlier_features: list[str]
    max_len: int
    path: Path | None = None  # set when loaded from disk: lets the store pickle as a re-open

    def __reduce__(self):
        """A memory-mapped store pickles as its path (DataLoader workers re-map, never copy)."""
        if self.path is not None and isinstance(self.offsets, np.memmap):
            return (SequenceStore.load, (self.path,))
        return super().__reduce__()

    @property
    def n_customers(self) -> int:
        return len(self.customer_ids)

    @property
    def n_events(self) -> int:
        return int(self.offsets[-1])

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return self.n_customers

    def batch(self, indices) -> EventBatch:
        """Gather customers into a right-padded EventBatch with a few vectorised copies."""
        idx = np.asarray(indices, dtype=np.int64)
        starts = self.offsets[idx]
        lens = self.offsets[idx + 1] - starts
        width = int(lens.max())
        within = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
        rows = np.repeat(starts, lens) + within
        who = np.repeat(np.arange(len(idx)), lens)
        cat = np.zeros((len(idx), width, self.categorical.shape[1]), dtype=np.int64)
        cat[who, within] = self.categorical[rows]
        num = np.zeros((len(idx), width, self.numeric.shape[1]), dtype=np.float32)
        num[who, within] = self.numeric[rows]
        return EventBatch(
            categorical=torch.from_numpy(cat),
            numeric=torch.from_numpy(num),
            lengths=torch.from_numpy(lens),
            customer_index=torch.from_numpy(idx.copy()),
            earlier=torch.from_numpy(np.asarray(self.earlier[idx], dtype=np.float32)),
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write a directory of .npy arrays plus meta.json, atomically."""
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.mkdir()
            for name in _ARRAYS:
                np.save(tmp / f"{name}.npy", getattr(self, name))
            meta = {
                "format": STORE_FORMAT,
                "n_customers": self.n_customers,
                "n_events": self.n_events,
                "categorical_fields": self.categorical_fields,
                "numeric_features": self.numeric_features,
                "earlier_features": self.earlier_features,
                "max_len": self.max_len,
            }
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, mmap: bool = True) -> "SequenceStore":
        path = Path(path)
        meta_file = path / "meta.json"
        if not meta_file.exists():
            raise FileNotFoundError(f"{path} is not a sequence store (no meta.json); run prepare first")
        meta = json.loads(meta_file.read_text())
        if meta.get("format") != STORE_FORMAT:
            raise ValueError(f"sequence store {path} has format {meta.get('format')!r}, expected {STORE_FORMAT}; re-run prepare")
        arrays = {name: np.load(path / f"{name}.npy", mmap_mode="r" if mmap else None) for name in _ARRAYS}
        return cls(
            **arrays,
            categorical_fields=meta["categorical_fields"],
            numeric_features=meta["numeric_features"],
            earlier_features=meta["earlier_features"],
            max_len=meta["max_len"],
            path=path if mmap else None,
        )


def summarise_earlier(df: pd.DataFrame, schema: EventSchema, events: SortedEvents, dropped: np.ndarray,
                      first_kept_ts: np.ndarray) -> np.ndarray:
    """[customers, n_earlier] float32 summary of the events `max_len` drops (all before the kept
    ones): log count, log span and log gap to the first kept event in days, signed-log1p sums.

    These precede every kept event, so a future-objective cut inside the kept sequence never
    sees its own target window here: the summary is history at every cut.
    """
    n = len(events.counts)
    out = np.zeros((n, len(EARLIER_TIME_FEATURES) + len(schema.numeric)), dtype=np.float32)
    if not dropped.any():
        return out
    who = np.repeat(np.arange(n), events.counts)[dropped]
    ts = events.ts_seconds[dropped]
    count = np.bincount(who, minlength=n)
    has = count > 0
    first = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first, who, ts)
    last = np.zeros(n, dtype=np.int64)
    np.maximum.at(last, who, ts)
    out[:, 0] = np.log1p(count)
    out[has, 1] = np.log1p((last[has] - first[has]) / 86_400.0)
    out[has, 2] = np.log1p(np.maximum(first_kept_ts[has] - last[has], 0) / 86_400.0)
    rows = events.order[dropped]
    for j, col in enumerate(schema.numeric):
        values = np.nan_to_num(df[col].to_numpy(dtype=np.float64)[rows])
        out[:, len(EARLIER_TIME_FEATURES) + j] = signed_log1p(np.bincount(who, weights=values, minlength=n))
    return out


def build_store(df: pd.DataFrame, encoders: EventEncoders, max_len: int, events: SortedEvents) -> SequenceStore:
    """Encode every field and keep each customer's most recent `max_len` events; what is cut
    off reaches the model as a per-customer summary (`earlier`), never silently lost."""
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    schema = encoders.schema
    offsets_full = events.offsets
    position = np.arange(len(events.order), dtype=np.int64)
    keep = np.repeat(offsets_full[1:], events.counts) - position <= max_len
    del position
    rows = events.order[keep]
    counts = np.minimum(events.counts, max_len)
    kept_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    ts = events.ts_seconds[keep]
    earlier = summarise_earlier(df, schema, events, ~keep, ts[kept_offsets[:-1]])

    cat_dtype = np.int16 if all(e.cardinality < 2**15 for e in encoders.categorical.values()) else np.int32
    # column-major: each field is filled (and later gathered) as one contiguous run, and the
    # columns are independent, so they fill in parallel (numpy releases the GIL)
    categorical = np.empty((len(rows), len(schema.categorical)), dtype=cat_dtype, order="F")
    numeric = np.empty((len(rows), len(encoders.numeric_features)), dtype=np.float32, order="F")

    def fill_categorical(j: int) -> None:
        col = schema.categorical[j]
        categorical[:, j] = encoders.categorical[col].transform(df[col])[rows]

    def fill_numeric(j: int) -> None:
        col = schema.numeric[j]
        raw = df[col].to_numpy(dtype=np.float64)[rows]
        numeric[:, 2 * j], numeric[:, 2 * j + 1] = encoders.numeric[col].transform(raw)

    def fill_time(_) -> None:
        encoders.time.transform(ts, events.gap_hours[keep], events.age_days[keep], out=numeric[:, 2 * len(schema.numeric):])

    jobs = [(fill_time, None)] + [(fill_numeric, j) for j in range(len(schema.numeric))]
    jobs += [(fill_categorical, j) for j in range(len(schema.categorical))]
    _parallel_map(lambda job: job[0](job[1]), jobs)

    return SequenceStore(
        customer_ids=events.customer_ids,
        offsets=kept_offsets,
        timestamps=ts,
        categorical=categorical,
        numeric=numeric,
        earlier=earlier,
        categorical_fields=list(schema.categorical),
        numeric_features=encoders.numeric_features,
        earlier_features=earlier_features(schema.numeric),
        max_len=max_len,
    )
