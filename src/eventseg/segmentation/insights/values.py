"""What they buy and when: the category / product / channel values a segment over-indexes on,
with event counts, and its most over-represented time of day or week."""

from __future__ import annotations

import numpy as np
import pandas as pd

from eventseg.segmentation.insights.common import (
    TIME_SHARES,
    aligned_features,
    column_words,
    keyed_rows,
    segment_levels,
    value_share_columns,
)

# a value must be this much above all customers, and not rare overall
OVER_INDEX, MIN_OVERALL_SHARE = 1.2, 0.02
TIME_WORDS = {"night": "nights", "morning": "mornings", "afternoon": "afternoons", "evening": "evenings",
              "weekend": "weekends"}


def top_values(customers: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    """Per broad and micro segment, what it buys and when, as text a brief can quote.

    `top_values`: up to three category / product / channel values the segment over-indexes on
    most (index = mean share in the segment over mean share of all customers, as in
    `over_indexed`; at least 1.2, and 2% overall so rare values do not lead) with about how many
    of the segment's events they are (share x n_events summed over its customers), e.g.
    "category groceries 1,240 events (x1.8)". `timing`: the part of day or the weekend whose
    share of the segment's events is most above all customers', e.g. "evenings (38% of events vs
    22%)". Empty text where nothing stands out.
    """
    feats = aligned_features(customers, features)
    value_cols = value_share_columns(feats)
    time_cols = [c for c in TIME_SHARES if c in feats.columns]
    events = feats["n_events"].to_numpy(np.float64) if "n_events" in feats.columns else np.ones(len(feats))
    counted_events = feats[value_cols + time_cols].mul(events, axis=0)
    overall_share = feats[value_cols].mean()
    overall_time = counted_events[time_cols].sum() / np.nansum(events)

    parts = []
    for level, key, counted in segment_levels(customers):
        share = feats.loc[counted, value_cols].groupby(key[counted]).mean()
        counts = counted_events.loc[counted].groupby(key[counted]).sum()
        n_events = pd.Series(events[counted]).groupby(key[counted]).sum()
        index = share.div(overall_share.where(overall_share >= MIN_OVERALL_SHARE), axis=1)
        time_share = counts[time_cols].div(n_events, axis=0)
        table = pd.DataFrame(index=n_events.index)
        table["top_values"] = pd.Series([_top_text(index.loc[s], counts.loc[s]) for s in table.index],
                                        index=table.index, dtype="str")
        table["timing"] = pd.Series([_timing_text(time_share.loc[s], overall_time) for s in table.index],
                                    index=table.index, dtype="str")
        parts.append(keyed_rows(level, table, key[counted]))
    return pd.concat(parts, ignore_index=True)


def _top_text(index: pd.Series, counts: pd.Series) -> str:
    top = index[index >= OVER_INDEX].sort_values(ascending=False, kind="stable").head(3)
    return "; ".join(f"{column_words(c)} {round(counts[c]):,} events (x{r:.1f})" for c, r in top.items())


def _timing_text(share: pd.Series, overall: pd.Series) -> str:
    ratio = (share / overall).where(overall >= MIN_OVERALL_SHARE)
    ratio = ratio[ratio >= OVER_INDEX]
    if ratio.empty:
        return ""
    col = ratio.idxmax()
    return f"{TIME_WORDS[col.removeprefix('share_')]} ({share[col]:.0%} of events vs {overall[col]:.0%})"
