"""Which columns of an event table mean what: built from config, checked against the data."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

from eventseg.run.errors import UserError

# Every output table of a run names its id column this, whatever the input calls it (data.id_col).
OUTPUT_ID = "customer_id"


def id_key(columns, id_col: str) -> str:
    """The id column of an input table keyed by `id_col` (data.id_col) or by OUTPUT_ID: labels, truth."""
    return id_col if id_col in columns else OUTPUT_ID


@dataclass(frozen=True)
class EventSchema:
    """One row per event: a customer id, a timestamp, categorical and numeric fields."""

    id_col: str = OUTPUT_ID  # by default the input already uses the output name
    time_col: str = "ts"
    categorical: tuple[str, ...] = field(default_factory=tuple)
    numeric: tuple[str, ...] = field(default_factory=tuple)
    amount_col: str | None = None  # the money field: spend labels, monetary value, basket size

    def __post_init__(self) -> None:
        object.__setattr__(self, "categorical", tuple(self.categorical))
        object.__setattr__(self, "numeric", tuple(self.numeric))
        object.__setattr__(self, "amount_col", self._resolved_amount_col())
        names = self.columns
        dupes = sorted({c for c in names if names.count(c) > 1})
        if dupes:
            raise ValueError(
                f"schema names column(s) {dupes} more than once; each column may play one role "
                f"(id, time, categorical or numeric)"
            )
        if not self.categorical and not self.numeric:
            raise ValueError(
                "schema has no event fields: name at least one categorical or numeric column "
                "(data.categorical=[...] or data.numeric=[...])"
            )

    def _resolved_amount_col(self) -> str | None:
        """The one money column every stage uses; never guessed silently among several fields."""
        if self.amount_col is not None:
            if self.amount_col not in self.numeric:
                raise UserError(f"data.amount_col={self.amount_col!r} is not one of the numeric fields "
                                f"data.numeric={list(self.numeric)}: add it there or name another")
            return self.amount_col
        if len(self.numeric) > 1:
            warnings.warn(f"data.amount_col is not set: spend and monetary value use the first numeric field "
                          f"'{self.numeric[0]}' of {list(self.numeric)}; set data.amount_col to choose", stacklevel=3)
        return self.numeric[0] if self.numeric else None

    @property
    def columns(self) -> list[str]:
        return [self.id_col, self.time_col, *self.categorical, *self.numeric]

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "EventSchema":
        """Build from a config mapping with keys id_col, time_col, categorical, numeric."""
        return cls(
            id_col=str(cfg.get("id_col", OUTPUT_ID)),
            time_col=str(cfg.get("time_col", "ts")),
            categorical=tuple(str(c) for c in (cfg.get("categorical") or ())),
            numeric=tuple(str(c) for c in (cfg.get("numeric") or ())),
            amount_col=None if cfg.get("amount_col") is None else str(cfg.get("amount_col")),
        )

    def to_dict(self) -> dict:
        return {
            "id_col": self.id_col,
            "time_col": self.time_col,
            "categorical": list(self.categorical),
            "numeric": list(self.numeric),
            "amount_col": self.amount_col,
        }
