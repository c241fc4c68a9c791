"""Outcome labels: built from the events themselves (an as-of cutoff and a horizon), joined to
customer ids, and screened before anything is modelled.

Features may only see events strictly before the cutoff; labels look at [cutoff, cutoff + H).
What counts as a purchase is the user's call (`labels.purchase_filter`, e.g.
`event_type == purchase`); churn is always "no event at all". A label that is exactly 1 minus
another (churn vs purchase when every event is a purchase) or that has one class is screened
out with the reason, so nothing downstream models it or publishes a score for it.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from eventseg.data.schema import EventSchema
from eventseg.data.split import SPLITS
from eventseg.run.errors import ConfigError, UserError

_FILTER_HELP = ("write `<column> == <value>` or `<column> in [<value>, ...]` (e.g. `event_type == purchase`), "
                "a mapping {<column>: [<value>, ...]}, or null (every event counts as a purchase)")


@dataclass(frozen=True)
class PurchaseFilter:
    """Which events are purchases: those whose `column` holds one of `values` (compared as text)."""

    column: str
    values: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.column} == {self.values[0]}" if len(self.values) == 1 else f"{self.column} in [{', '.join(self.values)}]"

    def matches(self, events: pd.DataFrame) -> np.ndarray:
        if self.column not in events.columns:
            raise UserError(f"labels.purchase_filter ({self}) names the column '{self.column}', which the events do not "
                            f"have; available: {list(events.columns)}")
        return events[self.column].astype(str).isin(self.values).to_numpy()


def parse_purchase_filter(spec: Any) -> PurchaseFilter | None:
    """`labels.purchase_filter` as a PurchaseFilter (None: every event counts); ConfigError when unreadable."""
    if spec is None or isinstance(spec, PurchaseFilter):
        return spec
    if isinstance(spec, Mapping) or hasattr(spec, "items"):
        items = list(spec.items())
        if len(items) == 1:
            column, values = items[0]
            values = [values] if isinstance(values, (str, int, float)) else list(values)
            if values:
                return PurchaseFilter(str(column), tuple(str(v) for v in values))
    elif isinstance(spec, str) and spec.strip().lower() in ("", "null", "none"):
        return None
    elif isinstance(spec, str):
        one = re.fullmatch(r"\s*(\S+?)\s*==?\s*(.+?)\s*", spec)
        many = re.fullmatch(r"\s*(\S+)\s+in\s+[\[(](.*)[\])]\s*", spec)
        if many:
            values = [v.strip().strip("'\"") for v in many.group(2).split(",") if v.strip()]
            if values:
                return PurchaseFilter(many.group(1), tuple(values))
        elif one:
            return PurchaseFilter(one.group(1), (one.group(2).strip("'\""),))
    raise ConfigError(f"labels.purchase_filter={spec!r} is not understood: {_FILTER_HELP}")


def check_purchase_filter(spec: Any, schema: EventSchema) -> PurchaseFilter | None:
    """Parse the filter and check its column is one the events are read with (before any work)."""
    flt = parse_purchase_filter(spec)
    if flt is not None and flt.column not in (*schema.categorical, *schema.numeric):
        raise ConfigError(f"labels.purchase_filter ({flt}) filters on '{flt.column}', which is not one of the event "
                          f"fields data.categorical={list(schema.categorical)} / data.numeric={list(schema.numeric)}")
    return flt


def events_before(df: pd.DataFrame, schema: EventSchema, cutoff) -> pd.DataFrame:
    """The history a model may use at `cutoff`: events strictly before it."""
    return df.loc[df[schema.time_col] < pd.Timestamp(cutoff)]


def build_labels(
    df: pd.DataFrame,
    schema: EventSchema,
    cutoff,
    horizon_days: int = 30,
    amount_col: str | None = None,
    purchase_col: str | None = None,
    purchase_values: tuple = (),
    purchase_filter: Any = None,
) -> pd.DataFrame:
    """One row per customer active before the cutoff, with:

    - `purchase_within_{H}d`: any purchase in the horizon (every event counts as a purchase
      unless `purchase_filter` (or `purchase_col`/`purchase_values`) says which events are);
    - `churn_{H}d`: no event at all in the horizon;
    - `spend_{H}d`: sum of `amount_col` over horizon purchases (when given).
    """
    if horizon_days <= 0:
        raise ConfigError(f"horizon_days must be positive, got {horizon_days}")
    flt = parse_purchase_filter(purchase_filter)
    if purchase_col is not None:
        if flt is not None:
            raise ConfigError("give purchase_filter or purchase_col/purchase_values, not both")
        if purchase_col not in df.columns:
            raise ConfigError(f"purchase column '{purchase_col}' is not in the events; available: {list(df.columns)}")
        flt = PurchaseFilter(purchase_col, tuple(str(v) for v in purchase_values))
    cutoff = pd.Timestamp(cutoff)
    end = cutoff + pd.Timedelta(days=horizon_days)
    ts = df[schema.time_col]
    history_ids = pd.Index(df.loc[ts < cutoff, schema.id_col].unique()).sort_values()
    if len(history_ids) == 0:
        raise ConfigError(f"no events before the cutoff {cutoff}: choose a later cutoff")
    in_window = ((ts >= cutoff) & (ts < end)).to_numpy()
    window = df.loc[in_window]
    _check_window(ts, window, cutoff, end, horizon_days)
    active = history_ids.isin(window[schema.id_col].unique())

    if flt is not None:
        is_purchase = flt.matches(df)
        if not is_purchase.any():
            seen = sorted(map(str, pd.unique(df[flt.column].dropna())))[:12]
            raise UserError(f"labels.purchase_filter ({flt}) matches no event at all: '{flt.column}' holds {seen}; "
                            "check the spelling of the values")
        window = df.loc[in_window & is_purchase]
    purchased = history_ids.isin(window[schema.id_col].unique())

    h = int(horizon_days)
    labels = pd.DataFrame(
        {
            schema.id_col: history_ids.to_numpy(),
            f"purchase_within_{h}d": purchased.astype(np.int8),
            f"churn_{h}d": (~active).astype(np.int8),
        }
    )
    if amount_col is not None:
        spend = window.groupby(schema.id_col, observed=True)[amount_col].sum()
        labels[f"spend_{h}d"] = spend.reindex(history_ids).fillna(0.0).to_numpy(dtype=np.float64)
    return labels


def _check_window(ts: pd.Series, window: pd.DataFrame, cutoff: pd.Timestamp, end: pd.Timestamp, horizon_days: int) -> None:
    """Raise when the label window holds no event (every label would be the same); warn when
    the data stop inside it (churn is overstated for the days the data do not cover).

    One day of slack: daily-dated data whose last day is the window's last day cover it.
    """
    last = ts.max()
    if len(window) == 0:
        where = "after the cutoff" if last < cutoff else f"in the label window [{cutoff}, {end})"
        raise ConfigError(
            f"no events {where} (the last event is at {last}): labels would be constant "
            "(every customer churned); choose an earlier cutoff or add the later events"
        )
    if last < end - pd.Timedelta(days=1):
        covered = (last - cutoff) / pd.Timedelta(days=1)
        warnings.warn(
            f"the events end at {last}, inside the label window [{cutoff}, {end}): labels see only "
            f"{covered:.1f} of {horizon_days} days, so churn is overstated; choose an earlier cutoff",
            stacklevel=3,
        )


# --- joining labels to customers ---------------------------------------------------------------


def _id_key(values) -> pd.Series:
    """Ids as a Series; floats holding whole numbers (ids read back through NaN-able columns) as int64."""
    s = pd.Series(np.asarray(values))
    if pd.api.types.is_float_dtype(s.dtype) and s.notna().all() and (s == np.floor(s)).all():
        s = s.astype(np.int64)
    return s


def _matching_keys(ids, other) -> tuple[pd.Series, pd.Series, str | None]:
    """Make two id columns comparable; say what was coerced (None when nothing was)."""
    a, b = _id_key(ids), _id_key(other)
    a_num, b_num = pd.api.types.is_numeric_dtype(a.dtype), pd.api.types.is_numeric_dtype(b.dtype)
    if a_num == b_num:
        return a, b, None
    # as text, never text parsed as numbers: '0123' and '123' must not both match the id 123
    return a.astype(str), b.astype(str), f"ids compared as text ({a.dtype} vs {b.dtype})"


def align_to_ids(
    ids, table: pd.DataFrame, id_col: str, what: str = "labels", columns: list[str] | None = None
) -> tuple[pd.DataFrame, dict]:
    """Rows of `table` in the order of `ids` (NaN rows where an id has none), plus a report.

    Ids in the table but not in `ids` are counted (`unmatched_rows`), not used.
    """
    if id_col not in table.columns:
        raise ConfigError(f"{what} table has no id column '{id_col}'; its columns: {list(table.columns)}")
    table_ids = table[id_col]
    if table_ids.isna().any():
        raise ConfigError(f"{what} table: {int(table_ids.isna().sum())} row(s) with a null '{id_col}'")
    dupes = table_ids.duplicated()
    if dupes.any():
        raise ConfigError(
            f"{what} table: {int(dupes.sum())} duplicate '{id_col}' value(s), e.g. {table_ids[dupes].iloc[0]!r}; "
            "expected one row per customer"
        )
    left, right, coercion = _matching_keys(ids, table_ids.to_numpy())
    pos = pd.Index(right).get_indexer(left)
    matched = pos >= 0
    if not matched.any():
        raise ConfigError(
            f"no {what} id matches a customer id of the embeddings: embedding ids look like "
            f"{list(np.asarray(ids)[:3])} ({np.asarray(ids).dtype}), {what} ids like "
            f"{list(table_ids.iloc[:3])} ({table_ids.dtype})"
        )
    cols = [c for c in (columns if columns is not None else table.columns) if c != id_col]
    values = table[cols].iloc[np.where(matched, pos, 0)].reset_index(drop=True)
    numeric = [c for c in cols if pd.api.types.is_numeric_dtype(values[c].dtype) or pd.api.types.is_bool_dtype(values[c].dtype)]
    values = values.astype({c: np.float64 for c in numeric})
    values.loc[~matched] = np.nan
    report = {
        "rows": len(table),
        "matched_customers": int(matched.sum()),
        "customers_without_row": int((~matched).sum()),
        "unmatched_rows": int(len(table) - matched.sum()),
    }
    if coercion:
        report["id_coercion"] = coercion
    return values, report


# --- which labels can be modelled ----------------------------------------------------------------


def label_kinds(labels: pd.DataFrame) -> tuple[list[str], list[str], dict[str, str]]:
    """Split label columns into binary (non-null values all 0/1), continuous (other numeric)
    and skipped (non-numeric or empty, with the reason)."""
    binary, continuous, skipped = [], [], {}
    for col in labels.columns:
        s = labels[col]
        if not (pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype)):
            skipped[col] = f"not numeric (dtype {s.dtype})"
            continue
        values = s.dropna().astype(np.float64)
        if len(values) == 0:
            skipped[col] = "no values"
        elif values.isin([0.0, 1.0]).all():
            binary.append(col)
        else:
            continuous.append(col)
    return binary, continuous, skipped


def complement_of(labels: pd.DataFrame, col: str, earlier: list[str]) -> str | None:
    """An earlier label that `col` is exactly 1 minus (churn vs purchase when every event is a purchase)."""
    y = labels[col]
    for other in earlier:
        z = labels[other]
        if y.isna().equals(z.isna()) and ((y + z)[y.notna()] == 1).all():
            return other
    return None


def one_class_reason(y: np.ndarray, rows: np.ndarray, where: str | None = None) -> str | None:
    """Why a 0/1 label cannot be fitted or ranked on these rows (None when it can)."""
    values = y[rows]
    place = "labelled customers" if where is None else f"labelled customers of the {where} split"
    if len(values) == 0:
        return f"no {place}"
    if values.min() == values.max():
        return f"only one class (all {int(values[0])}) among the {len(values)} {place}"
    return None


def screen_labels(labels: pd.DataFrame, binary: list[str], continuous: list[str], splits: np.ndarray) -> dict:
    """Which labels are modelled: {"binary", "continuous", "skipped": {label: why}, "complements": {label: note}}.

    A binary label with one class among its labelled customers, or in the train, validation or
    test split, cannot be fitted, chosen or evaluated: skipped. One that is exactly 1 minus an
    earlier label is the same ranking problem: modelled once, as the earlier one. A continuous
    target that is constant, or has no labelled customer in a split, is skipped.
    """
    kept, kept_continuous, skipped, complements = [], [], {}, {}
    for col in binary:
        y = labels[col].to_numpy(np.float64)
        known = ~np.isnan(y)
        reason = one_class_reason(y, known) or next(
            (r for i, name in enumerate(SPLITS) if (r := one_class_reason(y, known & (splits == i), name))), None)
        other = None if reason else complement_of(labels, col, kept)
        if reason:
            skipped[col] = f"{reason}: not modelled (no p_{col} column, no tier)"
        elif other is not None:
            complements[col] = (f"{col} is exactly 1 - {other} for every labelled customer: modelled and shown once, "
                                f"as {other} (p_{col} would be 1 - p_{other})")
        else:
            kept.append(col)
    for col in continuous:
        y = labels[col].to_numpy(np.float64)
        known = ~np.isnan(y)
        empty = [name for i, name in enumerate(SPLITS) if not (known & (splits == i)).any()]
        if np.nanmin(y) == np.nanmax(y):
            skipped[col] = f"constant ({np.nanmin(y):g}) for every labelled customer: nothing to predict"
        elif empty:
            skipped[col] = f"no labelled customer in the {', '.join(empty)} split: not modelled"
        else:
            kept_continuous.append(col)
    return {"binary": kept, "continuous": kept_continuous, "skipped": skipped, "complements": complements}
