"""Column names that carry meaning from one stage or file to the next, named once.

A published score is `p_<label>` (a binary label's probability) or `pred_<target>` (a
continuous prediction); each binary score has a tier `tier_<label>` (low / medium / high); the
observed outcomes kept beside the scores for the report are `y__<label>`; each candidate model's
own score is `<candidate>__<score column>` (e.g. `rfm_logistic__p_churn_30d`). Stages ask this module
what a column is instead of parsing prefixes themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

PROBABILITY = "p_"
PREDICTION = "pred_"
TIER = "tier_"
OBSERVED = "y__"


@dataclass(frozen=True)
class ScoreColumn:
    """One published score: its label and whether it is a probability (binary) or a prediction."""

    label: str
    binary: bool

    @property
    def name(self) -> str:
        return (PROBABILITY if self.binary else PREDICTION) + self.label

    @classmethod
    def parse(cls, column) -> ScoreColumn | None:
        """The score a column holds, or None when it is not a published score."""
        column = str(column)
        if column.startswith(PREDICTION):
            return cls(column[len(PREDICTION):], binary=False)
        if column.startswith(PROBABILITY):
            return cls(column[len(PROBABILITY):], binary=True)
        return None


def score_columns(columns: Iterable, binary: bool | None = None) -> list[ScoreColumn]:
    """The published scores among `columns`, in order; `binary` keeps one kind only."""
    found = [ScoreColumn.parse(c) for c in columns]
    return [s for s in found if s is not None and (binary is None or s.binary == binary)]


def score_names(columns: Iterable, binary: bool | None = None) -> list[str]:
    """The names of the published score columns among `columns`, in order."""
    return [s.name for s in score_columns(columns, binary)]


def probability_column(label: str) -> str:
    return ScoreColumn(label, binary=True).name


def prediction_column(target: str) -> str:
    return ScoreColumn(target, binary=False).name


def candidate_column(candidate: str, score: str) -> str:
    """One candidate model's version of a score column, e.g. `rfm_logistic__p_churn_30d`."""
    return f"{candidate}__{score}"


def is_candidate_probability(column: str) -> bool:
    """Whether `column` is some candidate's probability of a binary label."""
    return "__" + PROBABILITY in str(column)


def tier_column(label: str) -> str:
    return TIER + label


def tier_label(column: str) -> str | None:
    """The label a tier column belongs to, or None when `column` is not a tier."""
    return column[len(TIER):] if str(column).startswith(TIER) else None


def observed_column(label: str) -> str:
    return OBSERVED + label


def observed_labels(columns: Iterable) -> dict[str, str]:
    """{observed column: its label} for the `y__<label>` columns among `columns`."""
    return {c: c[len(OBSERVED):] for c in map(str, columns) if c.startswith(OBSERVED)}
