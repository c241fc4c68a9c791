"""Check an event table before any work, and say exactly what is wrong and where.

Each problem names the column, how many rows are bad and one example. The policy is
`fail` (default: raise with every problem listed) or `drop` (remove the bad rows, count them).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from eventseg.data.schema import EventSchema

POLICIES = ("fail", "drop")


class EventDataError(ValueError):
    """The event data breaks the contract; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid event data ({len(self.problems)} problem(s)):\n{lines}")


@dataclass
class ValidationReport:
    rows_in: int
    rows_out: int
    dropped: dict[str, int] = field(default_factory=dict)  # problem -> rows removed
    warnings: list[str] = field(default_factory=list)
    duplicate_events: int = 0  # identical rows; kept, since repeats are real behaviour

    def to_dict(self) -> dict:
        return {
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "dropped": dict(self.dropped),
            "warnings": list(self.warnings),
            "duplicate_events": self.duplicate_events,
        }


@dataclass
class _Problem:
    key: str  # short name used in the drop report
    message: str
    bad: np.ndarray  # bool mask of bad rows


def validate_events(df: pd.DataFrame, schema: EventSchema, on_invalid: str = "fail") -> tuple[pd.DataFrame, ValidationReport]:
    """Return the events with normalised dtypes and a report, or raise EventDataError.

    Normalised: time column as naive datetime64 (tz-aware times keep their local wall clock,
    which is what hour-of-day features should see), numeric fields as float64, categorical
    fields as pandas categoricals. Nulls in categorical and numeric fields are allowed: they
    become the missing bucket / a missing flag.
    """
    if on_invalid not in POLICIES:
        raise ValueError(f"on_invalid must be one of {POLICIES}, got {on_invalid!r}")
    missing = [c for c in schema.columns if c not in df.columns]
    if missing:
        raise EventDataError(
            [f"column '{c}' (named in the data config) is missing; available columns: {sorted(map(str, df.columns))}" for c in missing]
        )
    if len(df) == 0:
        raise EventDataError(["the event table is empty (0 rows): check data.path and any filters"])

    out = {}
    problems: list[_Problem] = []

    ids = df[schema.id_col]
    null_ids = ids.isna().to_numpy()
    if null_ids.any():
        problems.append(_Problem("null_id", _msg(schema.id_col, null_ids, "null customer id", df.index), null_ids))
    out[schema.id_col] = ids

    ts, ts_problems = _parse_times(df[schema.time_col], schema.time_col, df.index)
    problems += ts_problems
    out[schema.time_col] = ts

    for col in schema.numeric:
        values, num_problems = _parse_numeric(df[col], col, df.index)
        problems += num_problems
        out[col] = values

    report_warnings = []
    for col in schema.categorical:
        cat = df[col] if isinstance(df[col].dtype, pd.CategoricalDtype) else df[col].astype("category")
        out[col] = cat
        n_values = int(cat.nunique(dropna=True))
        if n_values <= 1:
            msg = f"categorical column '{col}' has {n_values} distinct value(s): it carries no information; consider removing it from data.categorical"
            warnings.warn(msg, stacklevel=2)
            report_warnings.append(msg)

    clean = pd.DataFrame(out, index=df.index, copy=False)
    if problems and on_invalid == "fail":
        raise EventDataError(
            [p.message + " (set data.on_invalid=drop to drop such rows instead)" for p in problems]
        )
    dropped = {}
    if problems:
        bad = np.zeros(len(df), dtype=bool)
        for p in problems:
            dropped[p.key] = dropped.get(p.key, 0) + int(p.bad.sum())
            bad |= p.bad
        clean = clean.loc[~bad]
        if len(clean) == 0:
            raise EventDataError(["every row was invalid and dropped: " + "; ".join(p.message for p in problems)])
    clean = clean.reset_index(drop=True)
    return clean, ValidationReport(rows_in=len(df), rows_out=len(clean), dropped=dropped, warnings=report_warnings)


def _msg(col: str, bad: np.ndarray, what: str, index: pd.Index, example=None) -> str:
    first = int(np.flatnonzero(bad)[0])
    shown = f"example value {example!r} at row {index[first]!r}" if example is not None else f"first at row {index[first]!r}"
    return f"column '{col}': {int(bad.sum())} row(s) with {what}; {shown}"


def _parse_times(raw: pd.Series, col: str, index: pd.Index) -> tuple[pd.Series, list[_Problem]]:
    problems = []
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        ts = raw.dt.tz_localize(None)
    elif pd.api.types.is_datetime64_dtype(raw.dtype):
        ts = raw
    elif pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        bad = np.ones(len(raw), dtype=bool)
        return raw, [
            _Problem(
                "bad_time",
                _msg(col, bad, "a number instead of a timestamp (the unit is ambiguous); convert it first, "
                     "e.g. pd.to_datetime(df[col], unit='s')", index, raw.iloc[0]),
                bad,
            )
        ]
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # format inference chatter
            ts = pd.to_datetime(raw, errors="coerce", utc=False)
        if isinstance(ts.dtype, pd.DatetimeTZDtype):
            ts = ts.dt.tz_localize(None)
    ts = ts.astype("datetime64[ns]")
    was_null = raw.isna().to_numpy()
    now_null = ts.isna().to_numpy()
    if was_null.any():
        problems.append(_Problem("null_time", _msg(col, was_null, "null timestamp", index), was_null))
    unparsed = now_null & ~was_null
    if unparsed.any():
        example = raw.iloc[int(np.flatnonzero(unparsed)[0])]
        problems.append(_Problem("bad_time", _msg(col, unparsed, "unparseable timestamp", index, example), unparsed))
    return ts, problems


def _parse_numeric(raw: pd.Series, col: str, index: pd.Index) -> tuple[pd.Series, list[_Problem]]:
    problems = []
    if pd.api.types.is_bool_dtype(raw.dtype) or pd.api.types.is_numeric_dtype(raw.dtype):
        values = raw.astype("float64")
        was_null = None
    else:
        values = pd.to_numeric(raw, errors="coerce").astype("float64")
        was_null = raw.isna().to_numpy()
    arr = values.to_numpy()
    if was_null is not None:
        non_numeric = np.isnan(arr) & ~was_null
        if non_numeric.any():
            example = raw.iloc[int(np.flatnonzero(non_numeric)[0])]
            problems.append(_Problem("non_numeric", _msg(col, non_numeric, "a non-numeric value", index, example), non_numeric))
    infinite = np.isinf(arr)
    if infinite.any():
        example = arr[int(np.flatnonzero(infinite)[0])]
        problems.append(_Problem("infinite", _msg(col, infinite, "an infinite value", index, example), infinite))
    return values, problems


def count_duplicate_events(df: pd.DataFrame, order: np.ndarray, same_as_previous: np.ndarray) -> int:
    """Count rows identical to an earlier row, given rows sorted by (customer, time).

    Only rows sharing customer and timestamp with a neighbour can be duplicates, so the exact
    check runs on that (usually tiny) subset instead of hashing the whole table.
    """
    tied = same_as_previous.copy()
    tied[:-1] |= same_as_previous[1:]
    if not tied.any():
        return 0
    return int(df.iloc[order[tied]].duplicated().sum())
