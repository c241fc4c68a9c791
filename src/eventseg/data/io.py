"""Read events from Parquet (file or directory of parts), CSV or a DataFrame, schema columns only.

Every part of a directory is checked before reading: an unreadable part, a part without a
schema column or parts whose column types disagree stop the read with the part named, so no
rows are dropped or filled with nulls behind the user's back. Files whose name (or folder)
starts with '.' or '_' (hidden files, `_SUCCESS` markers) are not parts.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
from pyarrow import fs

from eventseg.data.schema import EventSchema
from eventseg.data.validate import EventDataError, duplicate_column_problems

_IGNORED_PREFIXES = (".", "_")  # pyarrow's own rule for files that are not data
_SHOWN = 3  # parts named per problem; the rest are counted


def read_events(source: str | os.PathLike | pd.DataFrame, schema: EventSchema) -> pd.DataFrame:
    """Load the schema's columns; categorical fields come back as pandas categoricals.

    Reading only the named columns, with categoricals dictionary-encoded, keeps memory near
    the size of the raw columns on inputs of tens of millions of rows.
    """
    if isinstance(source, pd.DataFrame):
        _check_columns(list(source.columns), schema, "the DataFrame")
        return source.loc[:, schema.columns]
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"events file not found: {path} (set data.path to a Parquet/CSV file or directory)")
    table = _read_csv(path, schema) if _format_of(path) == "csv" else _read_parquet(path, schema)
    if table.num_rows and schema.categorical:
        table = _dictionary_encode(table, schema.categorical)
    return table.to_pandas(split_blocks=True, self_destruct=True)


def _read_parquet(path: Path, schema: EventSchema) -> pa.Table:
    # categoricals straight from Parquet's dictionary pages: no per-row strings are built
    fmt = ds.ParquetFileFormat(read_options={"dictionary_columns": list(schema.categorical)})
    schemas = _inspect_parts(path, fmt, schema, "Parquet")
    target = _unified_schema(schemas, schema, path)
    return ds.dataset([str(f) for f in schemas], schema=target, format=fmt).to_table(columns=schema.columns)


def _read_csv(path: Path, schema: EventSchema) -> pa.Table:
    """Fields and ids are read as text: a stray bad value becomes a validation error, not an
    Arrow crash, and ids keep their spelling ('0123' and '123' stay two customers)."""
    text = {c: pa.string() for c in (schema.id_col, *schema.categorical, *schema.numeric)}
    files = list(_inspect_parts(path, _csv_format(text), schema, "CSV"))
    try:
        table = _csv_table(files, schema, text)
    except pa.ArrowInvalid:  # time column of mixed types: read as text, validation judges it
        return _csv_table(files, schema, {**text, schema.time_col: pa.string()})
    time_type = table.schema.field(schema.time_col).type
    if pa.types.is_timestamp(time_type) and time_type.tz is not None:
        # Arrow moved UTC offsets to UTC: read the text so validation keeps (and checks) the offsets
        return _csv_table(files, schema, {**text, schema.time_col: pa.string()})
    return table


def _csv_format(column_types: dict) -> ds.CsvFileFormat:
    return ds.CsvFileFormat(convert_options=pacsv.ConvertOptions(column_types=column_types, strings_can_be_null=True))


def _csv_table(files: list[Path], schema: EventSchema, column_types: dict) -> pa.Table:
    dataset = ds.dataset([str(f) for f in files], format=_csv_format(column_types))
    return dataset.to_table(columns=schema.columns)


def read_table(path: str | os.PathLike, what: str = "table") -> pd.DataFrame:
    """A small side table (labels, truth, a customer list) from Parquet or CSV.

    CSV integer columns with leading zeros ('0123') stay text: they are ids, and the
    events' CSV ids are text too, so '0123' and '123' stay two customers.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} file not found: {path}")
    if _format_of(path) != "csv":
        return pd.read_parquet(path)
    df = pd.read_csv(path)
    ints = [c for c in df.columns if pd.api.types.is_integer_dtype(df[c].dtype)]
    if ints:
        raw = pd.read_csv(path, usecols=ints, dtype=str)
        for c in ints:
            if raw[c].str.strip().str.match(r"[+-]?0\d").any():
                df[c] = raw[c]
    return df


def _format_of(path: Path) -> str:
    if path.is_dir():
        suffixes = {p.suffix.lower() for p in _data_files(path)}
        if suffixes & {".csv"} and not suffixes & {".parquet", ".pq"}:
            return "csv"
        return "parquet"
    return "csv" if ".csv" in path.suffixes[-2:] or path.suffix.lower() == ".csv" else "parquet"


def _data_files(path: Path) -> list[Path]:
    """The parts of a dataset: the file itself, or a directory's files that are not hidden/markers."""
    if not path.is_dir():
        return [path]
    return sorted(
        p for p in path.rglob("*")
        if p.is_file() and not any(part.startswith(_IGNORED_PREFIXES) for part in p.relative_to(path).parts)
    )


def _inspect_parts(path: Path, fmt: ds.FileFormat, schema: EventSchema, kind: str) -> dict[Path, pa.Schema]:
    """Each part's schema; raise naming every part that cannot be read or lacks a column."""
    files = _data_files(path)
    if not files:
        raise EventDataError([f"directory {path} holds no data files (names starting with '.' or '_' are ignored)"])
    local, schemas, problems = fs.LocalFileSystem(), {}, []
    for f in files:
        try:
            schemas[f] = fmt.make_fragment(str(f), filesystem=local).physical_schema
        except (pa.ArrowInvalid, OSError) as err:
            problems.append(_unreadable(f, kind, err))
    if problems:
        raise EventDataError(problems)
    for f, part_schema in schemas.items():
        problems += duplicate_column_problems(part_schema.names, schema, str(f))
    problems += _missing_in_parts(schemas, schema, path)
    if problems:
        raise EventDataError(problems)
    return schemas


def _unreadable(f: Path, kind: str, err: Exception) -> str:
    """'not a Parquet file' (or CSV) with Arrow's reason; a repeated CSV header is named."""
    if kind == "CSV":
        header = _csv_header(f)
        repeated = sorted({c for c in header if header.count(c) > 1})
        if repeated:
            return f"CSV file {f} repeats column name(s) {repeated} in its header: give each column one name"
    reason = str(err).split(": ", 1)[-1]
    return f"not a {kind} file (or unreadable): {f} ({reason})"


def _csv_header(f: Path) -> list[str]:
    try:
        with pa.input_stream(str(f), compression="detect") as raw:
            return next(csv.reader(io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def _missing_in_parts(schemas: dict[Path, pa.Schema], schema: EventSchema, path: Path) -> list[str]:
    """One line per schema column some part lacks, naming the parts."""
    problems = []
    for c in schema.columns:
        lacking = [f for f, s in schemas.items() if c not in s.names]
        if lacking:
            names = sorted(map(str, schemas[lacking[0]].names))
            problems.append(
                f"column '{c}' (named in the data config) is missing from {_some(lacking, path)}; "
                f"available columns: {names}"
            )
    return problems


def _some(files: list[Path], root: Path) -> str:
    """Name a few parts (relative to the directory), count the rest."""
    if root.is_file():
        return str(root)
    return f"part(s) {_names(files, root)} of {root}"


def _names(files: list[Path], root: Path) -> str:
    shown = ", ".join(str(f.relative_to(root)) for f in files[:_SHOWN])
    return shown + (f" and {len(files) - _SHOWN} more" if len(files) > _SHOWN else "")


_UNITS = ("s", "ms", "us", "ns")


def _unified_schema(schemas: dict[Path, pa.Schema], schema: EventSchema, path: Path) -> pa.Schema:
    """One type per schema column for every part, or an error naming the parts that disagree.

    Safe differences are unified: integer widths (to int64), float widths, integers beside
    floats in a numeric field (to float64), timestamp units (to the finest), string vs
    large_string, all-null parts. Anything else (int vs string ids, naive vs tz-aware times)
    would read differently depending on part order, so it is an error.
    """
    fields, problems = [], []
    for c in schema.columns:
        types = {f: s.field(c).type for f, s in schemas.items()}
        unified = _unify(list(types.values()), numeric=c in schema.numeric)
        if unified is None:
            problems.append(_type_clash(c, types, path))
        else:
            fields.append(pa.field(c, unified))
    if problems:
        raise EventDataError(problems)
    return pa.schema(fields)


def _unify(types: list[pa.DataType], numeric: bool) -> pa.DataType | None:
    """The common type of a column's parts, or None when they cannot be read as one."""
    distinct = list(dict.fromkeys(t for t in types if not pa.types.is_null(t)))
    if len(distinct) <= 1:
        return distinct[0] if distinct else pa.null()
    kinds = {_kind(t, numeric) for t in distinct}
    if len(kinds) != 1:
        return None
    kind = kinds.pop()
    if kind == "integer":
        return pa.int64()
    if kind in ("float", "number"):
        return pa.float64()
    if kind.startswith("timestamp"):
        return pa.timestamp(max((t.unit for t in distinct), key=_UNITS.index), distinct[0].tz)
    if any(pa.types.is_dictionary(t) for t in distinct):
        return pa.dictionary(pa.int32(), pa.string())
    return pa.large_string() if any(pa.types.is_large_string(t) for t in distinct) else pa.string()


def _kind(t: pa.DataType, numeric: bool) -> str:
    """What a type reads as, ignoring widths and units."""
    value = t.value_type if pa.types.is_dictionary(t) else t
    if pa.types.is_integer(value) or pa.types.is_floating(value):
        if numeric:
            return "number"
        return "integer" if pa.types.is_integer(value) else "float"
    if pa.types.is_string(value) or pa.types.is_large_string(value):
        return "string"
    if pa.types.is_timestamp(value):
        return f"timestamp[tz={value.tz}]"
    return str(value)


def _type_clash(column: str, types: dict[Path, pa.DataType], path: Path) -> str:
    by_type: dict[str, list[Path]] = {}
    for f, t in types.items():
        by_type.setdefault(str(t), []).append(f)
    listed = "; ".join(f"{t} in {_names(files, path)}" for t, files in by_type.items())
    return (
        f"column '{column}' has different types in the parts of {path}: {listed}; "
        "rewrite the parts with one type (integer widths and timestamp units may differ)"
    )


def _check_columns(available: list[str], schema: EventSchema, where: str) -> None:
    problems = duplicate_column_problems(available, schema, where)
    missing = [c for c in schema.columns if c not in available]
    problems += [
        f"column '{c}' (named in the data config) is missing from {where}; "
        f"available columns: {sorted(map(str, available))}"
        for c in missing
    ]
    if problems:
        raise EventDataError(problems)


def _dictionary_encode(table: pa.Table, columns: tuple[str, ...]) -> pa.Table:
    for name in columns:
        i = table.schema.get_field_index(name)
        col = table.column(i)
        if not pa.types.is_dictionary(col.type):
            table = table.set_column(i, name, col.dictionary_encode())
    return table
