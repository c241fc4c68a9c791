"""Read events from Parquet (file or directory of parts), CSV or a DataFrame, schema columns only."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds

from eventseg.data.schema import EventSchema
from eventseg.data.validate import EventDataError


def read_events(source: str | os.PathLike | pd.DataFrame, schema: EventSchema) -> pd.DataFrame:
    """Load the schema's columns; categorical fields come back as pandas categoricals.

    Reading only the named columns, with categoricals dictionary-encoded, keeps memory near
    the size of the raw columns on inputs of tens of millions of rows.
    """
    if isinstance(source, pd.DataFrame):
        _require_columns(list(source.columns), schema, "the DataFrame")
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
    dataset = ds.dataset(path, format=fmt, exclude_invalid_files=True)
    _require_columns(dataset.schema.names, schema, str(path))
    return dataset.to_table(columns=schema.columns)


def _read_csv(path: Path, schema: EventSchema) -> pa.Table:
    """Fields are read as text so a stray bad value becomes a validation error, not an Arrow crash."""
    text = {c: pa.string() for c in (*schema.categorical, *schema.numeric)}
    try:
        return _csv_table(path, schema, text)
    except pa.ArrowInvalid:  # id or time column of mixed types: read as text, validation judges it
        return _csv_table(path, schema, {**text, schema.id_col: pa.string(), schema.time_col: pa.string()})


def _csv_table(path: Path, schema: EventSchema, column_types: dict) -> pa.Table:
    fmt = ds.CsvFileFormat(convert_options=pacsv.ConvertOptions(column_types=column_types, strings_can_be_null=True))
    dataset = ds.dataset(path, format=fmt)
    _require_columns(dataset.schema.names, schema, str(path))
    return dataset.to_table(columns=schema.columns)


def read_table(path: str | os.PathLike, what: str = "table") -> pd.DataFrame:
    """A small side table (labels, truth, a customer list) from Parquet or CSV."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} file not found: {path}")
    return pd.read_csv(path) if _format_of(path) == "csv" else pd.read_parquet(path)


def _format_of(path: Path) -> str:
    if path.is_dir():
        suffixes = {p.suffix.lower() for p in path.rglob("*") if p.is_file() and not p.name.startswith((".", "_"))}
        if suffixes & {".csv"} and not suffixes & {".parquet", ".pq"}:
            return "csv"
        return "parquet"
    return "csv" if ".csv" in path.suffixes[-2:] or path.suffix.lower() == ".csv" else "parquet"


def _require_columns(available: list[str], schema: EventSchema, where: str) -> None:
    missing = [c for c in schema.columns if c not in available]
    if missing:
        raise EventDataError(
            [
                f"column '{c}' (named in the data config) is missing from {where}; "
                f"available columns: {sorted(map(str, available))}"
                for c in missing
            ]
        )


def _dictionary_encode(table: pa.Table, columns: tuple[str, ...]) -> pa.Table:
    for name in columns:
        i = table.schema.get_field_index(name)
        col = table.column(i)
        if not pa.types.is_dictionary(col.type):
            table = table.set_column(i, name, col.dictionary_encode())
    return table
