"""Outcome labels built from the events themselves, with an as-of cutoff and a horizon.

Features may only see events strictly before the cutoff; labels look at [cutoff, cutoff + H).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from eventseg.data.schema import EventSchema


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
) -> pd.DataFrame:
    """One row per customer active before the cutoff, with:

    - `purchase_within_{H}d`: any purchase in the horizon (every event counts as a purchase
      unless `purchase_col`/`purchase_values` say which events are purchases);
    - `churn_{H}d`: no event at all in the horizon;
    - `spend_{H}d`: sum of `amount_col` over horizon purchases (when given).
    """
    if horizon_days <= 0:
        raise ValueError(f"horizon_days must be positive, got {horizon_days}")
    cutoff = pd.Timestamp(cutoff)
    end = cutoff + pd.Timedelta(days=horizon_days)
    ts = df[schema.time_col]
    history_ids = pd.Index(df.loc[ts < cutoff, schema.id_col].unique()).sort_values()
    if len(history_ids) == 0:
        raise ValueError(f"no events before the cutoff {cutoff}: choose a later cutoff")
    window = df.loc[(ts >= cutoff) & (ts < end)]
    _check_window(ts, window, cutoff, end, horizon_days)
    active = history_ids.isin(window[schema.id_col].unique())

    if purchase_col is not None:
        if purchase_col not in df.columns:
            raise ValueError(f"purchase column '{purchase_col}' is not in the events; available: {list(df.columns)}")
        window = window.loc[window[purchase_col].isin(list(purchase_values))]
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
        raise ValueError(
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
