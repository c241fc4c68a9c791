"""Everything monitoring checks before any embedding work: the run, the cutoffs, the events.

Each problem is one clear error that names the value and the fix (a run from another eventseg
version is refused by `eventseg.apps.score.FrozenRun`): cutoffs that are not dates or not increasing, a cutoff with no history
before it or no activity after the previous one, events without a column the model reads,
customer ids of another type than the run's.
"""

from __future__ import annotations

import pandas as pd

from eventseg.data.validate import EventDataError, validate_events
from eventseg.embedding.embed import model_columns_hint
from eventseg.run.errors import ConfigError


def parse_cutoffs(cutoffs) -> list[pd.Timestamp]:
    """Two or more increasing, time-zone-free dates."""
    if cutoffs is None or isinstance(cutoffs, (str, bytes)) or not hasattr(cutoffs, "__iter__"):
        raise ConfigError(f"cutoffs must be a list of dates like [2017-06-01,2017-07-01], got {cutoffs!r}")
    parsed = []
    for value in cutoffs:
        try:
            ts = pd.Timestamp(str(value))
        except (ValueError, TypeError):
            raise ConfigError(f"cutoff {value!r} is not a date: write it like 2017-06-01") from None
        if ts.tz is not None:
            raise ConfigError(f"cutoff {value!r} has a time zone: give naive dates, as the events' times are read")
        parsed.append(ts)
    if len(parsed) < 2:
        raise ConfigError(f"give at least two cutoffs (one period to compare), got {len(parsed)}: {list(map(str, cutoffs))}")
    for a, b in zip(parsed, parsed[1:]):
        if b <= a:
            raise ConfigError(f"cutoffs must increase: {b.date()} comes after {a.date()}; sort them, without repeats")
    return parsed


def read_monitored_events(frozen, events) -> pd.DataFrame:
    """The model's columns of `events`, validated once (every cutoff reuses them)."""
    schema = frozen.schema
    try:
        df, _ = validate_events(frozen.read(events), schema, "fail")
    except EventDataError as err:
        raise EventDataError(err.problems + [model_columns_hint(schema, "the monitored events")]) from None
    return df


def check_cutoff_range(events: pd.DataFrame, time_col: str, cutoffs: list[pd.Timestamp]) -> None:
    """Every cutoff needs history before it, and every period needs events inside it."""
    first, last = events[time_col].min(), events[time_col].max()
    if cutoffs[0] <= first:
        raise ConfigError(f"cutoff {cutoffs[0].date()} is before every event (the first is {first}): "
                          "nobody has a history then; start the cutoffs later")
    if cutoffs[-1] > last + pd.Timedelta(days=1):
        raise ConfigError(f"cutoff {cutoffs[-1].date()} is after every event (the last is {last}): the period "
                          "before it holds no activity to monitor; end the cutoffs by the last event")
