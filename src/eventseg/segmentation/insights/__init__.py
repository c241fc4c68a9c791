"""What a marketer asks of a segment table beyond the profile: did the segment really do what
its scores promise (observed outcomes on held-out customers), how would I find these people
with a filter (a short readable rule), what do they buy and when (top values, timing), and
what should I do with them (a suggested action with the reason).

Every function returns rows keyed by (`level`, `segment`) like the segments table of
`eventseg.segmentation.profiles.profile_segments`; `segment_insights` appends them to that table. Broad
rows include the outliers row (segment -1); micro rows never do.

Modules: `observed` (outcomes of held-out customers), `rules` (surrogate-tree rules), `values`
(top values, timing), `actions` (suggested actions), `common` (keys and shared plumbing).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from eventseg.segmentation.insights.actions import suggest_actions
from eventseg.segmentation.insights.common import KEYS
from eventseg.segmentation.insights.observed import observed_outcomes
from eventseg.segmentation.insights.rules import rule_features, segment_rules
from eventseg.segmentation.insights.values import top_values

__all__ = ["observed_outcomes", "rule_features", "segment_insights", "segment_rules", "suggest_actions", "top_values"]


def segment_insights(customers: pd.DataFrame, segments: pd.DataFrame, features: pd.DataFrame, *,
                     outcomes: pd.DataFrame | None = None, eval_ids=None, seed: int = 0,
                     monetary: str | None = "auto") -> pd.DataFrame:
    """The segments table with top values, timing, rules, observed outcomes (when `outcomes`
    are given) and an action appended, rows and index as they came, so the insights sit next
    to the profile they explain. Re-running replaces earlier insight columns."""
    pieces = [top_values(customers, features), segment_rules(customers, features, seed=seed, monetary=monetary)]
    if outcomes is not None:
        pieces.append(observed_outcomes(customers, outcomes, eval_ids))
    added = [c for p in pieces for c in p.columns if c not in KEYS] + ["action"]
    stale = [c for c in segments.columns if c in added or c.startswith("observed_")]  # a rerun without outcomes too
    out = segments.drop(columns=stale)
    keys = out[KEYS].astype({"segment": np.int64}).reset_index(drop=True)
    for piece in pieces:
        merged = keys.merge(piece, on=KEYS, how="left", validate="one_to_one")
        for col in piece.columns.drop(KEYS):
            out[col] = merged[col].set_axis(out.index)
    if "observed_n" in out.columns:
        out["observed_n"] = out["observed_n"].fillna(0).astype(np.int64)
    out["action"] = suggest_actions(out)
    return out
