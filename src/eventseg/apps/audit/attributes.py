"""The protected attributes an audit compares segments and tiers against: read, checked, joined
to the run's customers and turned into a few ordered levels each.

Everything a user can get wrong is checked here, before any statistics run: the id column
(the run's data.id_col or customer_id), its type against the run's ids (text ids never match
integer ids, so a silent join would audit nobody), how many customers match, and that each
attribute has at least two values among them. Numeric attributes with many values become
quantile bands whose edges are recorded, so "age 45–61" in the report can be traced back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from eventseg.data.ids import check_id_kind, id_examples
from eventseg.data.io import read_table
from eventseg.data.labels import align_to_ids
from eventseg.data.schema import OUTPUT_ID, id_key
from eventseg.run.errors import ConfigError, UserError


@dataclass(frozen=True)
class Attribute:
    """One attribute as audited: each matched customer's level (NaN where unknown), the levels in
    order, and how they were made (`bands` holds the quantile edges of a banded numeric)."""

    name: str
    levels: pd.Series  # ordered categorical, one row per run customer
    kind: str  # "categorical" | "numeric levels" | "numeric bands"
    bands: list[float] | None = None

    def describe(self) -> dict:
        known = self.levels.notna()
        return {"kind": self.kind, "bands": self.bands, "values": [str(v) for v in self.levels.cat.categories],
                "known": int(known.sum()), "unknown": int((~known).sum())}


@dataclass(frozen=True)
class Attributes:
    """The attributes aligned to the run's customers (row i = customer i), and how the join went."""

    source: str
    id_column: str
    items: list[Attribute]
    join: dict = field(default_factory=dict)


def load_attributes(source: str | os.PathLike | pd.DataFrame, run_ids: pd.Series, *, run_id_col: str = OUTPUT_ID,
                    columns=None, min_cell: int = 10, bands: int = 4, numeric_levels: int = 6) -> Attributes:
    """Read and check the attribute table, join it to `run_ids` and make each attribute's levels.

    `columns` picks attributes (default: every column but the id). Raises a `UserError` naming
    the file, column or value and the fix for: no id column, ids of another type than the run's,
    fewer than `min_cell` matching customers, an unknown column, an attribute with one value.
    """
    where = "the attribute DataFrame" if isinstance(source, pd.DataFrame) else f"attribute file {source}"
    table = source if isinstance(source, pd.DataFrame) else read_table(Path(source), "attribute")
    id_col = id_key(table.columns, run_id_col)
    if id_col not in table.columns:
        names = sorted({run_id_col, OUTPUT_ID})
        raise UserError(f"{where} has no id column: expected {' or '.join(repr(n) for n in names)} "
                        f"(the run's data.id_col), found {list(map(str, table.columns))}; rename its id column")
    check_id_kind(table[id_col], run_ids, id_col, where)
    wanted = _wanted_columns(table, {id_col, run_id_col, OUTPUT_ID}, columns, where)
    matched = int(table[id_col].isin(pd.Index(run_ids)).sum())
    if matched < min_cell:
        raise UserError(f"{where}: {matched} of its {len(table):,} ids match a customer of the run "
                        f"({len(run_ids):,} customers; ids look like {id_examples(run_ids)} in the run and "
                        f"{id_examples(table[id_col])} in the file); at least {min_cell} (min_cell) must match: "
                        "is this the attribute file for this run?")
    # as text, booleans stay the values they were (align_to_ids would make them 0.0 / 1.0)
    table = table.astype({c: "string" for c in wanted if pd.api.types.is_bool_dtype(table[c].dtype)})
    values, join = align_to_ids(run_ids.to_numpy(), table, id_col, where, columns=wanted)
    items = [_levels(name, values[name], where, bands, numeric_levels) for name in wanted]
    return Attributes(source=str(source) if not isinstance(source, pd.DataFrame) else "DataFrame",
                      id_column=id_col, items=items, join=join)


def _wanted_columns(table: pd.DataFrame, ids: set[str], columns, where: str) -> list[str]:
    """The attributes to audit: `columns`, or every column that is not an id (either name)."""
    available = [str(c) for c in table.columns if c not in ids]
    if columns is None:
        wanted = available
    else:
        wanted = [str(c) for c in ([columns] if isinstance(columns, str) else list(columns))]
        unknown = [c for c in wanted if c not in available]
        if unknown:
            raise ConfigError(f"columns={unknown} not in {where}; its attributes: {available}")
    if not wanted:
        raise UserError(f"{where} holds only id columns ({sorted(ids & set(map(str, table.columns)))}): "
                        "add one column per protected attribute")
    return wanted


def _levels(name: str, values: pd.Series, where: str, bands: int, numeric_levels: int) -> Attribute:
    """Ordered levels: categories in their own order (or sorted), small integer-like numerics as
    they are, other numerics as `bands` quantile bands of the matched customers."""
    known = values.dropna()
    distinct = known.unique()
    if len(distinct) < 2:
        what = f"a single value ({distinct[0]!r})" if len(distinct) else "no value"
        raise UserError(f"{where}: attribute '{name}' has {what} among the {len(values):,} run customers it "
                        "was joined to, so there is nothing to compare; leave it out with columns=[...]")
    if isinstance(values.dtype, pd.CategoricalDtype):
        used = [c for c in values.cat.categories if c in set(distinct)]
        return Attribute(name, _ordered(values.astype(object), used), "categorical")
    if not pd.api.types.is_numeric_dtype(values.dtype):
        return Attribute(name, _ordered(values.astype(object), sorted(distinct, key=str)), "categorical")
    if len(distinct) <= numeric_levels:
        order = np.sort(distinct.astype(np.float64))
        text = {v: _number(v) for v in order}
        return Attribute(name, _ordered(values.map(text), [text[v] for v in order]), "numeric levels")
    edges = np.unique(np.quantile(known.astype(np.float64), np.linspace(0, 1, bands + 1)))
    labels = [f"{_number(lo)}–{_number(hi)}" for lo, hi in zip(edges[:-1], edges[1:])]
    banded = pd.cut(values.astype(np.float64), edges, labels=labels, include_lowest=True)
    return Attribute(name, _ordered(banded.astype(object), labels), "numeric bands", [float(e) for e in edges])


def _ordered(values: pd.Series, order: list) -> pd.Series:
    text = [str(v) for v in order]
    out = values.map(lambda v: None if pd.isna(v) else str(v))
    return pd.Series(pd.Categorical(out, categories=text, ordered=True), index=values.index)


def _number(value: float) -> str:
    """A band edge or level as written: 3 not 3.0, 0.25, 1.2e+05 only when it must."""
    return f"{float(value):.4g}"
