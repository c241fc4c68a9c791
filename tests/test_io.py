import pandas as pd
import pytest

from eventseg.data.io import read_events
from eventseg.data.validate import EventDataError, validate_events


def test_parquet_file_directory_and_csv_give_the_same_events(tmp_path, events, schema):
    events.to_parquet(tmp_path / "one.parquet")
    parts = tmp_path / "parts"
    parts.mkdir()
    events.iloc[: len(events) // 2].to_parquet(parts / "part-0.parquet")
    events.iloc[len(events) // 2 :].to_parquet(parts / "part-1.parquet")
    events.to_csv(tmp_path / "ev.csv", index=False)

    loaded = [validate_events(read_events(src, schema), schema)[0] for src in (events, tmp_path / "one.parquet", parts, tmp_path / "ev.csv")]
    for other in loaded[1:]:
        pd.testing.assert_series_equal(other["ts"], loaded[0]["ts"])
        assert other["customer_id"].astype(str).tolist() == loaded[0]["customer_id"].astype(str).tolist()
        assert other["category"].astype(str).tolist() == loaded[0]["category"].astype(str).tolist()
        pd.testing.assert_series_equal(other["amount"], loaded[0]["amount"])


def test_only_schema_columns_are_read(tmp_path, events, schema):
    events.assign(extra=1).to_parquet(tmp_path / "ev.parquet")
    assert list(read_events(tmp_path / "ev.parquet", schema).columns) == schema.columns


def test_csv_with_a_bad_number_becomes_a_validation_error(tmp_path, events, schema):
    bad = events.astype({"amount": "object"})
    bad.loc[len(bad) - 1, "amount"] = "n/a?"
    bad.to_csv(tmp_path / "ev.csv", index=False)
    with pytest.raises(EventDataError, match="non-numeric value; example value 'n/a\\?'"):
        validate_events(read_events(tmp_path / "ev.csv", schema), schema)


def test_missing_file_is_named(tmp_path, schema):
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        read_events(tmp_path / "nope.parquet", schema)
