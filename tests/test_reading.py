"""Reading must never drop, null-fill or reinterpret data quietly: each way a Parquet input
or the data config can go wrong stops with the file or setting named."""

from pathlib import Path

import pandas as pd
import pytest
from eventseg.run.config import CONFIG_DIR
from hydra import compose, initialize_config_dir

from eventseg.data.io import read_events
from eventseg.data.sources import resolve_source, source_files
from eventseg.data.validate import EventDataError, validate_events

CONFIGS = CONFIG_DIR


def _parts(root: Path, *frames: pd.DataFrame) -> Path:
    root.mkdir()
    for i, frame in enumerate(frames):
        frame.to_parquet(root / f"part-{i}.parquet")
    return root


def _halves(events: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    half = len(events) // 2
    return events.iloc[:half], events.iloc[half:]


def test_unreadable_part_is_named_not_skipped(tmp_path, events, schema):
    parts = _parts(tmp_path / "parts", _halves(events)[0])
    (parts / "part-1.parquet").write_bytes(b"not parquet at all, just some bytes")
    with pytest.raises(EventDataError, match=r"not a Parquet file.*part-1\.parquet") as err:
        read_events(parts, schema)
    assert len(err.value.problems) == 1


def test_part_without_a_column_is_named_not_null_filled(tmp_path, events, schema):
    first, second = _halves(events)
    parts = _parts(tmp_path / "parts", first, second.drop(columns="amount"))
    with pytest.raises(EventDataError, match=r"column 'amount'.*missing from part\(s\) part-1\.parquet of"):
        read_events(parts, schema)


@pytest.mark.parametrize("string_first", [False, True])
def test_int_and_string_ids_in_different_parts_fail_whatever_the_order(tmp_path, events, schema, string_first):
    first, second = _halves(events)
    frames = [first, second.astype({"customer_id": str})]
    parts = _parts(tmp_path / "parts", *(frames[::-1] if string_first else frames))
    with pytest.raises(EventDataError, match=r"column 'customer_id' has different types") as err:
        read_events(parts, schema)
    assert "int64 in part-" in str(err.value) and "string in part-" in str(err.value)


def test_integer_widths_float_widths_and_time_units_are_unified(tmp_path, events, schema):
    first, second = _halves(events)
    parts = _parts(
        tmp_path / "parts",
        first.astype({"customer_id": "int32", "amount": "float32"}),
        second.assign(ts=second["ts"].astype("datetime64[ms]"), amount=second["amount"].fillna(0).astype("int64")),
    )
    clean, _ = validate_events(read_events(parts, schema), schema)
    assert len(clean) == len(events)
    assert clean["customer_id"].tolist() == events["customer_id"].tolist()
    assert (clean["ts"] == events["ts"].dt.floor("ms")).all()


def test_hidden_files_and_success_markers_are_not_parts(tmp_path, events, schema):
    parts = _parts(tmp_path / "parts", *_halves(events))
    (parts / "_SUCCESS").touch()
    (parts / ".part-0.parquet.crc").write_bytes(b"checksum")
    (parts / "_temporary").mkdir()
    (parts / "_temporary" / "part-9.parquet").write_bytes(b"half written")
    assert len(read_events(parts, schema)) == len(events)


@pytest.mark.parametrize("content", [b"", b"customer_id,ts\n1,2025-01-01\n"], ids=["zero-byte", "csv-inside"])
def test_a_file_that_is_not_parquet_is_named(tmp_path, schema, content):
    path = tmp_path / "events.parquet"
    path.write_bytes(content)
    with pytest.raises(EventDataError, match=r"not a Parquet file.*events\.parquet") as err:
        read_events(path, schema)
    assert "missing" not in str(err.value)


def test_directory_without_parts(tmp_path, schema):
    (tmp_path / "_SUCCESS").touch()
    with pytest.raises(EventDataError, match="holds no data files"):
        read_events(tmp_path, schema)


def test_events_config_without_path_fails_instead_of_using_synthetic():
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="pipeline", overrides=["data=events"])
    assert cfg.data.path is None and cfg.data.labels_path is None
    with pytest.raises(ValueError, match=r"data\.path is not set"):
        resolve_source(cfg.data)
    with pytest.raises(ValueError, match=r"data\.path is not set"):  # the pipeline's first call
        source_files(cfg.data)


def test_events_config_with_path_uses_it(tmp_path):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="pipeline", overrides=["data=events", f"data.path={tmp_path / 'ev.parquet'}"])
    assert resolve_source(cfg.data) == str(tmp_path / "ev.parquet")
