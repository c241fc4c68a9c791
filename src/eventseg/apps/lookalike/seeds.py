"""Who the seeds are: a file of customer ids, a `top:<column>:<share>` query against the run's
columns, or (through the API) any list of ids, resolved to rows of the run's customers.

Every way a seed definition can be wrong is refused here, before any similarity is computed:
a query that does not parse, a column the run does not have (the message lists the numeric
columns it has), ids of another type than the run's (refused, not coerced: '0123' is not 123),
null ids, ids that are not customers of the run (named, with the count; `on_missing=drop`
keeps the rest), and fewer than `min_seeds` seeds left.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from eventseg.data.ids import check_id_kind
from eventseg.data.io import read_table
from eventseg.data.schema import OUTPUT_ID, id_key
from eventseg.run.artifacts import file_hash
from eventseg.run.errors import ConfigError, UserError
from eventseg.run.layout import RunLayout

TOP_PREFIX = "top:"
ON_MISSING = ("fail", "drop")
COLUMN_SOURCES = (RunLayout.customers, RunLayout.aggregates)  # where a top: column is looked up, in order
_TABLE_SUFFIXES = (".parquet", ".pq", ".csv")


@dataclass(frozen=True)
class SeedSpec:
    """A parsed seed definition: kind 'top' (column, share), 'file' (path) or 'ids' (given ids)."""

    kind: str
    text: str
    column: str | None = None
    share: float | None = None
    path: Path | None = None
    ids: tuple | None = None

    @property
    def default_name(self) -> str:
        """The output name when none is given: top_<column>_<share> or the seed file's stem."""
        if self.kind == "top":
            return f"top_{self.column}_{self.share:g}"
        if self.kind == "file":
            return self.path.name.split(".")[0]
        return "ids"


def parse_seed_spec(seeds) -> SeedSpec:
    """`top:<column>:<share>`, a path to a file of ids, or a list/array/Series of ids (API only)."""
    if isinstance(seeds, (list, tuple, np.ndarray, pd.Series, pd.Index)):
        return SeedSpec(kind="ids", text=f"{len(seeds)} ids given to the API", ids=tuple(np.asarray(seeds).tolist()))
    text = str(seeds).strip()
    if not text:
        raise ConfigError("seeds is empty: pass seeds=FILE (one customer id per line, or a table with a "
                          "customer_id column) or seeds=top:<column>:<share>, "
                          "e.g. seeds=top:p_purchase_within_30d:0.10")
    if text.startswith(TOP_PREFIX):
        parts = text[len(TOP_PREFIX):].split(":")
        if len(parts) != 2 or not parts[0]:
            raise ConfigError(f"seeds={text!r} is not a query of the form top:<column>:<share>, "
                              "e.g. top:p_purchase_within_30d:0.10 (the top 10% by that column)")
        return SeedSpec(kind="top", text=text, column=parts[0], share=_share(parts[1], text))
    path = Path(text)
    if not path.exists():
        raise FileNotFoundError(f"seed file not found: {path} (seeds= takes a file of customer ids or "
                                "top:<column>:<share>)")
    return SeedSpec(kind="file", text=text, path=path)


def _share(value: str, text: str) -> float:
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(%?)\s*", value)
    share = (float(match.group(1)) / (100.0 if match.group(2) else 1.0)) if match else float("nan")
    if not 0.0 < share <= 1.0:
        raise ConfigError(f"seeds={text!r}: share {value!r} must be a fraction in (0, 1] such as 0.10, or a percent "
                          "such as 10%")
    return share


@dataclass(frozen=True)
class Seeds:
    """The resolved seeds: rows of customers.parquet, and the definition recorded in the sidecar."""

    positions: np.ndarray
    definition: dict


def resolve_seeds(spec: SeedSpec, run: Path, customers: pd.DataFrame, *, run_id_col: str = OUTPUT_ID,
                  min_seeds: int = 10, on_missing: str = "fail") -> Seeds:
    """The rows of `customers` (the run's customers.parquet) that `spec` selects."""
    if on_missing not in ON_MISSING:
        raise ConfigError(f"on_missing={on_missing!r} is not one of {list(ON_MISSING)}")
    if spec.kind == "top":
        seeds = _top_seeds(spec, run, customers)
    else:
        where = f"seed file {spec.path}" if spec.kind == "file" else "the seed ids given"
        raw = _read_seed_ids(spec, customers[OUTPUT_ID], run_id_col) if spec.kind == "file" else pd.Series(spec.ids)
        seeds = _matched(raw, customers[OUTPUT_ID], where, on_missing)
        seeds.definition.update(_provenance(spec))
    n = len(seeds.positions)
    if n < min_seeds:
        raise UserError(f"seeds={spec.text!r} gives {n} seed customer(s) of the run; at least min_seeds={min_seeds} "
                        "are needed (a few are held out to measure the audience): add seeds, widen the query's "
                        "share, or lower min_seeds")
    return seeds


def _top_seeds(spec: SeedSpec, run: Path, customers: pd.DataFrame) -> Seeds:
    """The top `share` of the customers that have a value in `column`, highest first; ties at the
    threshold are broken by customers.parquet order, so the count is exactly round(share · n)."""
    source = _column_source(spec.column, run, customers)
    if source == COLUMN_SOURCES[0]:
        values = customers[spec.column]
    else:
        table = pd.read_parquet(run / source, columns=[OUTPUT_ID, spec.column])
        values = table.set_index(OUTPUT_ID)[spec.column].reindex(customers[OUTPUT_ID].to_numpy())
    values = pd.Series(values.to_numpy(dtype=np.float64, na_value=np.nan))
    valued = np.flatnonzero(values.notna().to_numpy())
    count = int(round(spec.share * len(valued)))
    order = valued[np.argsort(-values.to_numpy()[valued], kind="stable")]
    chosen = np.sort(order[:count])
    threshold = float(values.iloc[order[count - 1]]) if count else None
    return Seeds(positions=chosen, definition={
        "kind": "top", "definition": spec.text, "column": spec.column, "table": source, "share": spec.share,
        "customers_with_value": int(len(valued)), "threshold": threshold, "seeds": int(count)})


def _column_source(column: str, run: Path, customers: pd.DataFrame) -> str:
    """Which run table holds numeric `column`: customers.parquet first, then aggregates.parquet."""
    available = {COLUMN_SOURCES[0]: [c for c in customers.columns if c != OUTPUT_ID
                                     and pd.api.types.is_numeric_dtype(customers[c].dtype)
                                     and not pd.api.types.is_bool_dtype(customers[c].dtype)]}
    if (run / COLUMN_SOURCES[1]).exists():
        schema = pq.read_schema(run / COLUMN_SOURCES[1])
        available[COLUMN_SOURCES[1]] = [f.name for f in schema if f.name != OUTPUT_ID
                                        and (str(f.type).startswith(("int", "uint", "float", "double")))]
    for source, columns in available.items():
        if column in columns:
            return source
    listing = "; ".join(f"{source}: {', '.join(cols)}" for source, cols in available.items())
    raise ConfigError(f"seeds=top:{column}:...: the run has no numeric column '{column}'. Numeric columns it has: "
                      f"{listing}")


def _read_seed_ids(spec: SeedSpec, run_ids: pd.Series, run_id_col: str) -> pd.Series:
    """The id column of a Parquet/CSV seed table, or the lines of a text file (one id per line,
    '#' comments and blank lines ignored). Text lines take the run's id type when they all can."""
    path = spec.path
    if path.is_dir() or path.suffix.lower() in _TABLE_SUFFIXES:
        table = read_table(path, "seed")
        col = id_key(table.columns, run_id_col)
        if col not in table.columns:
            if len(table.columns) != 1:
                raise UserError(f"seed file {path} has no id column: expected '{run_id_col}' (or one column only), "
                                f"found {list(map(str, table.columns))}; rename its id column")
            col = table.columns[0]
        return table[col].rename(str(col))
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    ids = pd.Series([line for line in lines if line], dtype=object, name=OUTPUT_ID)
    if pd.api.types.is_numeric_dtype(run_ids.dtype):
        numbers = pd.to_numeric(ids, errors="coerce")
        if numbers.notna().all():
            return numbers.astype(np.int64) if (numbers == np.floor(numbers)).all() else numbers
    return ids.astype(str)


def _matched(raw: pd.Series, run_ids: pd.Series, where: str, on_missing: str) -> Seeds:
    """Positions in `run_ids` of the given ids, after the type, null, duplicate and membership checks."""
    if raw.isna().any():
        raise UserError(f"{where}: {int(raw.isna().sum())} null id(s) of {len(raw)}; remove those rows")
    check_id_kind(raw, run_ids, str(raw.name or OUTPUT_ID), where)
    unique = raw.drop_duplicates()
    pos = pd.Index(run_ids).get_indexer(unique.to_numpy())
    missing = unique[pos < 0]
    if len(missing) and on_missing == "fail":
        raise UserError(f"{where}: {len(missing)} of {len(unique)} seed ids are not customers of the run, e.g. "
                        f"{missing.iloc[:5].tolist()}: remove them, check the seeds belong to this run, or pass "
                        "on_missing=drop to use the others")
    return Seeds(positions=np.sort(pos[pos >= 0]), definition={
        "rows": int(len(raw)), "duplicates_dropped": int(len(raw) - len(unique)),
        "not_in_run_dropped": int(len(missing)), "seeds": int((pos >= 0).sum())})


def _provenance(spec: SeedSpec) -> dict:
    """What identifies the seed set later: the file and its SHA-256, or the given ids' SHA-256."""
    if spec.kind == "file":
        digest = file_hash(spec.path) if spec.path.is_file() else None
        return {"kind": "file", "definition": spec.text, "file": str(os.path.abspath(spec.path)), "file_sha256": digest}
    joined = "\n".join(sorted(map(str, spec.ids))).encode()
    return {"kind": "ids", "definition": spec.text, "ids_sha256": hashlib.sha256(joined).hexdigest()}
