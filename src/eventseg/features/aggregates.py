"""Hand-made customer aggregates: the RFM/behaviour features an analyst would build first.

They are the yardstick the embeddings must beat (the built-in baseline) and a readable
profile of each segment. Everything is computed from events strictly before `as_of`, with
array operations over events sorted by (customer, time): no Python loop per customer.

Output conventions: one row per customer (index = customer id, sorted), float64 columns,
no NaN. A statistic with nothing to summarise (mean amount of a customer with no amounts,
gap statistics of a single-event customer) is 0; the matching count column (`<field>_n`,
`n_events`) tells such rows apart. Standard deviations are population ones (ddof=0).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from eventseg.data.schema import OUTPUT_ID, EventSchema
from eventseg.data.validate import validate_events
from eventseg.run.layout import RunLayout

NS_PER_HOUR = 3_600 * 10**9
NS_PER_DAY = 24 * NS_PER_HOUR
DAYPARTS = ("night", "morning", "afternoon", "evening")  # [0, 6), [6, 12), [12, 18), [18, 24) h
OTHER = "__other__"
RFM_COLUMNS = ("recency", "frequency", "monetary", "tenure")


@dataclass
class _Histories:
    """Events before as_of sorted by (customer, time), as flat arrays."""

    ids: np.ndarray  # unique customer ids, sorted; customer i is row i of every output
    code: np.ndarray  # customer index of each sorted event
    ts: np.ndarray  # int64 ns, sorted within customer
    counts: np.ndarray  # events per customer
    starts: np.ndarray  # first sorted row of each customer
    rows: np.ndarray  # positions of the sorted events in the filtered input frame
    frame: pd.DataFrame  # the events before as_of (validated dtypes)
    as_of: int  # ns

    @property
    def n(self) -> int:
        return len(self.ids)

    def column(self, name: str) -> np.ndarray:
        return self.frame[name].to_numpy()[self.rows]

    def per_customer(self, weights: np.ndarray) -> np.ndarray:
        return np.bincount(self.code, weights=weights, minlength=self.n)


def as_validated(events: pd.DataFrame, schema: EventSchema) -> pd.DataFrame:
    """Events with the dtypes `validate_events` gives; already-validated frames pass through."""
    ok = (
        all(c in events.columns for c in schema.columns)
        and pd.api.types.is_datetime64_dtype(events[schema.time_col].dtype)
        and all(events[c].dtype == np.float64 for c in schema.numeric)
        and all(isinstance(events[c].dtype, pd.CategoricalDtype) for c in schema.categorical)
        and not events[schema.id_col].isna().any()
    )
    if ok:
        return events
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # single-valued-field advice is for prepare
        return validate_events(events, schema)[0]


def _as_of_ns(events: pd.DataFrame, schema: EventSchema, as_of) -> tuple[np.ndarray, int]:
    ts = events[schema.time_col].to_numpy().astype("datetime64[ns]").view(np.int64)
    if as_of is None:
        return ts, int(ts.max()) + 10**9  # one second after the last event: everything counts
    stamp = pd.Timestamp(as_of)
    if stamp.tz is not None:
        stamp = stamp.tz_localize(None)  # event times are naive local wall clock (see validate)
    return ts, int(stamp.as_unit("ns").value)


def _histories(events: pd.DataFrame, schema: EventSchema, as_of=None) -> _Histories:
    events = as_validated(events, schema)
    ts_all, cut = _as_of_ns(events, schema, as_of)
    keep = ts_all < cut
    if not keep.any():
        raise ValueError(f"no events before as_of={pd.Timestamp(cut)}: nothing to build features from")
    frame = events.loc[keep] if not keep.all() else events
    ts = ts_all[keep]
    code, ids = pd.factorize(frame[schema.id_col].to_numpy(), sort=True)
    rows = np.lexsort((ts, code))
    code, ts = code[rows], ts[rows]
    assert ts.max() < cut, "leakage: an event at or after as_of reached the features"
    counts = np.bincount(code, minlength=len(ids))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return _Histories(np.asarray(ids), code, ts, counts, starts, rows, frame, cut)


def _core(h: _Histories) -> dict[str, np.ndarray]:
    """Recency, frequency and tenure."""
    first, last = h.ts[h.starts], h.ts[h.starts + h.counts - 1]
    day = np.floor_divide(h.ts, NS_PER_DAY)
    new_day = np.ones(len(day), dtype=bool)
    new_day[1:] = (h.code[1:] != h.code[:-1]) | (day[1:] != day[:-1])
    tenure = (h.as_of - first) / NS_PER_DAY
    return {
        "recency_days": (h.as_of - last) / NS_PER_DAY,
        "tenure_days": tenure,
        "n_events": h.counts.astype(np.float64),
        "active_days": h.per_customer(new_day.astype(np.float64)),
        "events_per_30d": h.counts / np.maximum(tenure, 1.0) * 30.0,
    }


def _numeric(h: _Histories, col: str) -> dict[str, np.ndarray]:
    """NaN-skipping count, sum, mean, min, max and std of one numeric field."""
    x = h.column(col).astype(np.float64)
    present = ~np.isnan(x)
    xz = np.where(present, x, 0.0)
    n = h.per_customer(present.astype(np.float64))
    total = h.per_customer(xz)
    mean = np.divide(total, n, out=np.zeros(h.n), where=n > 0)
    dev = np.where(present, x - mean[h.code], 0.0)
    std = np.sqrt(np.divide(h.per_customer(dev * dev), n, out=np.zeros(h.n), where=n > 0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN customers: fmax gives NaN, filled below
        lo = np.nan_to_num(np.fmin.reduceat(x, h.starts), nan=0.0)
        hi = np.nan_to_num(np.fmax.reduceat(x, h.starts), nan=0.0)
    return {f"{col}_n": n, f"{col}_sum": total, f"{col}_mean": mean, f"{col}_min": lo, f"{col}_max": hi, f"{col}_std": std}


def _gaps(h: _Histories) -> dict[str, np.ndarray]:
    """Mean, median and std of log1p(hours between consecutive events): rhythm, scale-free."""
    same = h.code[1:] == h.code[:-1]
    gcode = h.code[1:][same]
    lg = np.log1p(np.diff(h.ts)[same] / NS_PER_HOUR)
    k = np.bincount(gcode, minlength=h.n).astype(np.float64)
    mean = np.divide(np.bincount(gcode, weights=lg, minlength=h.n), k, out=np.zeros(h.n), where=k > 0)
    dev = lg - mean[gcode]
    std = np.sqrt(np.divide(np.bincount(gcode, weights=dev * dev, minlength=h.n), k, out=np.zeros(h.n), where=k > 0))
    median = np.zeros(h.n)
    if len(lg):
        med = pd.Series(lg).groupby(gcode).median()
        median[med.index.to_numpy()] = med.to_numpy()
    return {"gap_log_hours_mean": mean, "gap_log_hours_median": median, "gap_log_hours_std": std}


def _timing(h: _Histories) -> dict[str, np.ndarray]:
    """Shares of events by part of day and on weekends (Saturday, Sunday)."""
    hours = np.floor_divide(h.ts, NS_PER_HOUR)
    part = (hours % 24) // 6
    shares = np.bincount(h.code * 4 + part, minlength=h.n * 4).reshape(h.n, 4) / h.counts[:, None]
    weekday = (np.floor_divide(h.ts, NS_PER_DAY) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    out = {f"share_{name}": shares[:, i] for i, name in enumerate(DAYPARTS)}
    out["share_weekend"] = h.per_customer((weekday >= 5).astype(np.float64)) / h.counts
    return out


def _trend(h: _Histories, recent_days: int, previous_days: int) -> dict[str, np.ndarray]:
    """Recent activity against the window before it, both as events per `recent_days`.

    log((recent + 1) / (previous rate + 1)): +1 keeps quiet customers finite and near 0.
    """
    recent_from = h.as_of - recent_days * NS_PER_DAY
    previous_from = recent_from - previous_days * NS_PER_DAY
    recent = h.per_customer((h.ts >= recent_from).astype(np.float64))
    previous = h.per_customer(((h.ts >= previous_from) & (h.ts < recent_from)).astype(np.float64))
    previous_rate = previous * recent_days / previous_days
    return {
        f"events_last_{recent_days}d": recent,
        f"events_prev_{previous_days}d": previous,
        "trend_log_ratio": np.log((recent + 1.0) / (previous_rate + 1.0)),
    }


class AggregateFeatureBuilder:
    """Aggregate features with the category columns fixed at fit time.

    `fit` picks the top-k values of each categorical field (by event count); `transform`
    then always gives the same columns in the same order, so new customers (with unseen
    values, which land in `share_<field>_<OTHER>`) are scored with the features a model
    was trained on.
    """

    def __init__(self, schema: EventSchema, top_k_categories: int = 10, recent_days: int = 30, previous_days: int = 60):
        if top_k_categories < 0:
            raise ValueError(f"top_k_categories must be >= 0, got {top_k_categories}")
        self.schema = schema
        self.top_k_categories = int(top_k_categories)
        self.recent_days = int(recent_days)
        self.previous_days = int(previous_days)
        self.categories_: dict[str, list] | None = None

    def fit(self, events: pd.DataFrame, as_of=None) -> "AggregateFeatureBuilder":
        """Choose the top-k values of each categorical field among events before `as_of`."""
        h = _histories(events, self.schema, as_of)
        self.categories_ = {}
        for col in self.schema.categorical:
            counts = h.frame[col].value_counts(dropna=True)
            counts = counts[counts > 0]
            # most frequent first; ties broken by the value's text so refits agree
            ranked = sorted(zip(counts.to_numpy(), counts.index), key=lambda cv: (-cv[0], str(cv[1])))
            self.categories_[col] = [_python_scalar(v) for _, v in ranked[: self.top_k_categories]]
        return self

    def transform(self, events: pd.DataFrame, as_of=None) -> pd.DataFrame:
        """One row per customer with events before `as_of` (default: last event + 1 s)."""
        if self.categories_ is None:
            raise RuntimeError("AggregateFeatureBuilder is not fitted: call fit(events) first")
        h = _histories(events, self.schema, as_of)
        columns = _core(h)
        for col in self.schema.numeric:
            columns.update(_numeric(h, col))
        columns.update(_gaps(h))
        columns.update(_timing(h))
        columns.update(_trend(h, self.recent_days, self.previous_days))
        for col in self.schema.categorical:
            columns.update(self._shares(h, col))
        return pd.DataFrame(columns, index=pd.Index(h.ids, name=self.schema.id_col))

    def fit_transform(self, events: pd.DataFrame, as_of=None) -> pd.DataFrame:
        return self.fit(events, as_of).transform(events, as_of)

    def _shares(self, h: _Histories, col: str) -> dict[str, np.ndarray]:
        kept = self.categories_[col]
        k = len(kept)
        values = h.frame[col].cat  # categorical after validation: map its categories, not every row
        lookup = pd.Index(kept, dtype=object).get_indexer(values.categories.astype(object))
        lookup = np.append(np.where(lookup < 0, k, lookup), k)  # code -1 (missing) -> last entry -> other
        idx = lookup[values.codes.to_numpy()[h.rows]]
        shares = np.bincount(h.code * (k + 1) + idx, minlength=h.n * (k + 1)).reshape(h.n, k + 1) / h.counts[:, None]
        return {f"share_{col}_{v}": shares[:, i] for i, v in enumerate([*kept, OTHER])}

    def to_dict(self) -> dict:
        return {
            "schema": self.schema.to_dict(),
            "top_k_categories": self.top_k_categories,
            "recent_days": self.recent_days,
            "previous_days": self.previous_days,
            "categories": self.categories_,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "AggregateFeatureBuilder":
        builder = cls(EventSchema.from_config(d["schema"]), d["top_k_categories"], d["recent_days"], d["previous_days"])
        builder.categories_ = {k: list(v) for k, v in d["categories"].items()} if d["categories"] is not None else None
        return builder


def _python_scalar(value):
    """numpy scalars to Python ones, so fitted categories serialise to JSON."""
    return value.item() if isinstance(value, np.generic) else value


def aggregate_features(events: pd.DataFrame, schema: EventSchema, as_of=None, top_k_categories: int = 10) -> pd.DataFrame:
    """Fit an AggregateFeatureBuilder on these events and return their features."""
    return AggregateFeatureBuilder(schema, top_k_categories).fit_transform(events, as_of)


def rfm_features(events: pd.DataFrame, schema: EventSchema, as_of=None) -> pd.DataFrame:
    """The classic four: recency (days), frequency (events), monetary, tenure (days).

    Monetary is the sum of the schema's amount column (0 when it has none).
    """
    h = _histories(events, schema, as_of)
    columns = _core(h)
    if schema.amount_col:
        columns.update(_numeric(h, schema.amount_col))
    return rfm_from_aggregates(pd.DataFrame(columns, index=pd.Index(h.ids, name=schema.id_col)), schema)


def rfm_from_aggregates(aggregates: pd.DataFrame, schema: EventSchema) -> pd.DataFrame:
    """The classic four read off an aggregate table, so a run's RFM baseline and its aggregate
    features are one computation: recency, frequency, monetary (0 without a numeric field), tenure."""
    money = f"{schema.amount_col}_sum" if schema.amount_col else None
    return pd.DataFrame({
        "recency": aggregates["recency_days"], "frequency": aggregates["n_events"],
        "monetary": aggregates[money] if money else 0.0, "tenure": aggregates["tenure_days"],
    }, index=aggregates.index)



def write_aggregates(builder: AggregateFeatureBuilder, table: pd.DataFrame, out_dir) -> None:
    """A run's aggregate table (`customer_id` + one column per feature) and its fitted builder."""
    from eventseg.run.artifacts import write_json, write_parquet

    write_parquet(table.rename_axis(OUTPUT_ID).reset_index(), RunLayout(out_dir).aggregates)
    write_json(builder.to_dict(), RunLayout(out_dir).aggregates_builder)


def read_aggregates(out_dir, schema: EventSchema) -> tuple[AggregateFeatureBuilder, pd.DataFrame]:
    """The builder and table `write_aggregates` wrote; the table is indexed by the schema's id column."""
    table = pd.read_parquet(RunLayout(out_dir).aggregates).set_index(OUTPUT_ID).rename_axis(schema.id_col)
    return load_aggregate_builder(out_dir), table


def load_aggregate_builder(out_dir) -> AggregateFeatureBuilder:
    """A run's fitted aggregate builder (`aggregates.json`), e.g. to describe new customers."""
    import json

    return AggregateFeatureBuilder.from_dict(json.loads(RunLayout(out_dir).aggregates_builder.read_text()))
