"""Which columns of an event table mean what: built from config, checked against the data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class EventSchema:
    """One row per event: a customer id, a timestamp, categorical and numeric fields."""

    id_col: str = "customer_id"
    time_col: str = "ts"
    categorical: tuple[str, ...] = field(default_factory=tuple)
    numeric: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "categorical", tuple(self.categorical))
        object.__setattr__(self, "numeric", tuple(self.numeric))
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

    @property
    def columns(self) -> list[str]:
        return [self.id_col, self.time_col, *self.categorical, *self.numeric]

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "EventSchema":
        """Build from a config mapping with keys id_col, time_col, categorical, numeric."""
        return cls(
            id_col=str(cfg.get("id_col", "customer_id")),
            time_col=str(cfg.get("time_col", "ts")),
            categorical=tuple(str(c) for c in (cfg.get("categorical") or ())),
            numeric=tuple(str(c) for c in (cfg.get("numeric") or ())),
        )

    def to_dict(self) -> dict:
        return {
            "id_col": self.id_col,
            "time_col": self.time_col,
            "categorical": list(self.categorical),
            "numeric": list(self.numeric),
        }
