import pandas as pd
import pytest

from eventseg.data.io import read_events, read_table
from eventseg.data.validate import EventDataError, validate_events
from eventseg.data.prepare import prepare_events


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


def test_csv_ids_keep_their_spelling(tmp_path, events, schema):
    ids = events["customer_id"].astype(str)
    ids[ids == "1000"] = "01000"  # a different customer from 1000 ...
    ids[ids == "1001"] = "1000"  # ... who is now also in the file
    events.assign(customer_id=ids).to_csv(tmp_path / "ev.csv", index=False)
    clean, _ = validate_events(read_events(tmp_path / "ev.csv", schema), schema)
    assert clean["customer_id"].tolist() == ids.tolist()
    assert clean["customer_id"].nunique() == events["customer_id"].nunique()


def test_csv_ids_reach_the_store_as_text(tmp_path, events, schema):
    events.assign(customer_id="0" + events["customer_id"].astype(str)).to_csv(tmp_path / "ev.csv", index=False)
    store = prepare_events(tmp_path / "ev.csv", schema).store
    assert store.customer_ids.dtype.kind == "U"
    assert store.customer_ids[0] == "01000"


def test_side_table_ids_with_leading_zeros_stay_text(tmp_path):
    pd.DataFrame({"customer_id": ["0123", "123"], "churn": [1, 0]}).to_csv(tmp_path / "labels.csv", index=False)
    labels = read_table(tmp_path / "labels.csv", "labels")
    assert labels["customer_id"].tolist() == ["0123", "123"]
    assert labels["churn"].dtype == "int64"
    pd.DataFrame({"customer_id": [5, 6]}).to_csv(tmp_path / "plain.csv", index=False)
    assert read_table(tmp_path / "plain.csv")["customer_id"].dtype == "int64"


def test_csv_offsets_are_kept_not_moved_to_utc(tmp_path, events, schema):
    text = events["ts"].dt.strftime("%Y-%m-%d %H:%M:%S") + "+02:00"
    events.assign(ts=text).to_csv(tmp_path / "ev.csv", index=False)
    clean, _ = validate_events(read_events(tmp_path / "ev.csv", schema), schema)
    assert (clean["ts"] == events["ts"]).all()  # the local wall clock, as for a DataFrame


def test_csv_with_a_repeated_header_names_it(tmp_path, events, schema):
    events.assign(extra=1).rename(columns={"extra": "category"}).to_csv(tmp_path / "ev.csv", index=False)
    with pytest.raises(EventDataError, match=r"ev\.csv repeats column name\(s\) \['category'\]"):
        read_events(tmp_path / "ev.csv", schema)


def test_dataframe_with_a_duplicate_column_names_it(events, schema):
    doubled = pd.concat([events, events[["amount"]]], axis=1)
    with pytest.raises(EventDataError, match="column 'amount' appears 2 times"):
        read_events(doubled, schema)
    with pytest.raises(EventDataError, match="column 'amount' appears 2 times"):
        validate_events(doubled, schema)
