"""Check an event table before any work, and say exactly what is wrong and where.

Each problem names the column, how many rows are bad and one example. The policy is
`fail` (default: raise with every problem listed) or `drop` (remove the bad rows, count them).
"""

from __future__ import annotations

import datetime
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from eventseg.data.schema import EventSchema
from eventseg.run.errors import UserError

POLICIES = ("fail", "drop")


class EventDataError(UserError):
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
    fatal: bool = False  # a table-wide problem: dropping rows cannot fix it, so `drop` raises too


def validate_events(df: pd.DataFrame, schema: EventSchema, on_invalid: str = "fail") -> tuple[pd.DataFrame, ValidationReport]:
    """Return the events with normalised dtypes and a report, or raise EventDataError.

    Normalised: time column as naive datetime64 (tz-aware times keep their local wall clock,
    which is what hour-of-day features should see), numeric fields as float64, categorical
    fields as pandas categoricals. Nulls in categorical and numeric fields are allowed: they
    become the missing bucket / a missing flag.
    """
    if on_invalid not in POLICIES:
        raise ValueError(f"on_invalid must be one of {POLICIES}, got {on_invalid!r}")
    duplicated = duplicate_column_problems(list(df.columns), schema, "the event table")
    if duplicated:
        raise EventDataError(duplicated)
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
    if problems and (on_invalid == "fail" or any(p.fatal for p in problems)):
        raise EventDataError(
            [p.message if p.fatal else p.message + " (set data.on_invalid=drop to drop such rows instead)" for p in problems]
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
        ts, mixed = _parse_text_times(raw, col, index)
        if mixed is not None:
            return ts, [mixed]
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


def _parse_text_times(raw: pd.Series, col: str, index: pd.Index) -> tuple[pd.Series, _Problem | None]:
    """Parse text (or object) times; mixed time zones are a fatal problem, not a pandas trace.

    Offsets that differ between rows (or rows with an offset beside rows without) leave no
    single local wall clock to keep, and which rows are "wrong" is a guess, so `drop` cannot
    fix it: the user has to convert the column to one time zone.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # format inference chatter
        try:
            ts = pd.to_datetime(raw, errors="coerce", utc=False)
        except ValueError:  # pandas refuses mixed offsets outright
            mixed = _mixed_time_zones(_zones(raw), raw, col, index)
            if mixed is None:
                raise
            return pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns]"), mixed
    unparsed = (ts.isna() & raw.notna()).to_numpy()
    if unparsed.any():  # pandas turns rows of a second zone (or of none) into NaT
        mixed = _mixed_time_zones(_zones_after_parse(raw, ts, unparsed), raw, col, index)
        if mixed is not None:
            return ts, mixed
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        ts = ts.dt.tz_localize(None)
    return ts, None


# a UTC offset right after a clock time: '10:00+01:00', '10:00:00.5Z', '10:00 -0500'
_OFFSET = re.compile(r"\d:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(Z|[+-]\d{2}(?::?\d{2})?)$", re.IGNORECASE)
_NAIVE = "no offset"


def _offset_of(value) -> str | None:
    """A time's UTC offset as '+HH:MM', None when it has none (or is not a time)."""
    if isinstance(value, str):
        m = _OFFSET.search(value.strip())
        if not m:
            return None
        o = m.group(1).upper()
        return "+00:00" if o == "Z" else f"{o[:3]}:{o[-2:] if len(o) > 3 else '00'}"
    offset = value.utcoffset() if hasattr(value, "utcoffset") else None
    if offset is None or pd.isna(offset):
        return None
    minutes = int(offset.total_seconds() // 60)
    return f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _zones(values: pd.Series) -> np.ndarray:
    """Each value's UTC offset, 'no offset' for an offset-free time, None for anything else."""
    offsets = np.array([_offset_of(v) for v in values], dtype=object)
    naive = np.equal(offsets, None) & values.notna().to_numpy()
    if naive.any():  # only values that parse as offset-free times count, not garbage
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            naive[naive] = pd.to_datetime(values[naive], errors="coerce").notna().to_numpy()
    offsets[naive] = _NAIVE
    return offsets


def _zones_after_parse(raw: pd.Series, ts: pd.Series, unparsed: np.ndarray) -> np.ndarray:
    """Zones per row when pandas parsed most rows: those share one zone, so only the
    unparsed rows are looked at one by one (cheap when a few rows are bad)."""
    zones = np.full(len(raw), None, dtype=object)
    parsed = ts.notna().to_numpy()
    if parsed.any():
        zones[parsed] = _zone_name(ts[parsed].iloc[0])
    zones[unparsed] = _zones(raw[unparsed])
    return zones


def _zone_name(t: pd.Timestamp) -> str:
    """'no offset', the offset of a fixed-offset zone ('+01:00', as parsed from text), or the
    name of a zone with daylight saving time, whose offset changes over the year."""
    if t.tzinfo is None:
        return _NAIVE
    if isinstance(t.tzinfo, datetime.timezone) or str(t.tzinfo) in ("UTC", "Etc/UTC"):
        return _offset_of(t)
    return str(t.tzinfo)


def _mixed_time_zones(zones: np.ndarray, raw: pd.Series, col: str, index: pd.Index) -> _Problem | None:
    """A fatal problem when the rows' zones (see `_zones`) are not all the same."""
    counts = pd.Series(zones, dtype=object).value_counts()
    if len(counts) <= 1:
        return None
    bad = ~np.equal(zones, None) & (zones != counts.index[0])
    example = raw.iloc[int(np.flatnonzero(bad)[0])]
    shown = ", ".join(f"{n} at {z}" for z, n in counts.head(5).items())
    what = f"a different time zone from the rest (mixed time zones, rows per zone: {shown})"
    message = _msg(col, bad, what, index, example) + "; convert the column to one time zone (or to UTC) first"
    return _Problem("mixed_time_zones", message, bad, fatal=True)


def duplicate_column_problems(names: list, schema: EventSchema, where: str) -> list[str]:
    """One line per schema column that appears more than once: which copy to use is a guess."""
    counts = Counter(names)
    return [
        f"column '{c}' appears {counts[c]} times in {where}: which one to use is ambiguous; rename or drop the extra copies"
        for c in schema.columns
        if counts[c] > 1
    ]


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
