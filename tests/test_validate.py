import numpy as np
import pandas as pd
import pytest

from eventseg.data.io import read_events
from eventseg.data.schema import EventSchema
from eventseg.data.validate import EventDataError, validate_events
from eventseg.data.prepare import prepare_events


def test_clean_data_passes_with_normalised_dtypes(events, schema):
    clean, report = validate_events(events, schema)
    assert report.rows_in == report.rows_out == len(events)
    assert clean["ts"].dtype == "datetime64[ns]"
    assert clean["amount"].dtype == np.float64
    assert isinstance(clean["category"].dtype, pd.CategoricalDtype)


def test_missing_column_names_it_and_lists_available(events, schema):
    with pytest.raises(EventDataError, match=r"column 'category'.*missing.*available columns") as err:
        validate_events(events.drop(columns="category"), schema)
    assert len(err.value.problems) == 1


def test_missing_column_in_file_is_caught_before_reading(tmp_path, events, schema):
    path = tmp_path / "ev.parquet"
    events.drop(columns="amount").to_parquet(path)
    with pytest.raises(EventDataError, match=r"column 'amount'.*ev.parquet"):
        read_events(path, schema)


def test_empty_table(events, schema):
    with pytest.raises(EventDataError, match="empty"):
        validate_events(events.iloc[:0], schema)


def test_null_ids_counted(events, schema):
    bad = events.astype({"customer_id": "float64"})
    bad.loc[[3, 7, 9], "customer_id"] = np.nan
    with pytest.raises(EventDataError, match=r"'customer_id': 3 row\(s\) with null customer id; first at row 3"):
        validate_events(bad, schema)


def test_unparseable_and_null_timestamps_reported_separately(events, schema):
    bad = events.astype({"ts": "object"})
    bad.loc[5, "ts"] = "not a date"
    bad.loc[6, "ts"] = "also bad"
    bad.loc[8, "ts"] = None
    with pytest.raises(EventDataError) as err:
        validate_events(bad, schema)
    text = str(err.value)
    assert "'ts': 2 row(s) with unparseable timestamp; example value 'not a date' at row 5" in text
    assert "'ts': 1 row(s) with null timestamp; first at row 8" in text


def test_string_timestamps_are_parsed(events, schema):
    as_text = events.assign(ts=events["ts"].dt.strftime("%Y-%m-%d %H:%M:%S"))
    clean, _ = validate_events(as_text, schema)
    assert (clean["ts"] == events["ts"]).all()


def test_numeric_time_column_is_rejected_with_advice(events, schema):
    with pytest.raises(EventDataError, match="number instead of a timestamp.*pd.to_datetime"):
        validate_events(events.assign(ts=np.arange(len(events))), schema)


def test_non_numeric_value_in_numeric_field(events, schema):
    bad = events.astype({"amount": "object"})
    bad.loc[4, "amount"] = "12,50 EUR"
    with pytest.raises(EventDataError, match=r"'amount': 1 row\(s\) with a non-numeric value; example value '12,50 EUR' at row 4"):
        validate_events(bad, schema)


def test_infinite_values(events, schema):
    bad = events.copy()
    bad.loc[[1, 2], "amount"] = np.inf
    with pytest.raises(EventDataError, match=r"'amount': 2 row\(s\) with an infinite value"):
        validate_events(bad, schema)


def test_every_problem_listed_at_once(events, schema):
    bad = events.astype({"amount": "object", "customer_id": "float64"})
    bad.loc[0, "customer_id"] = np.nan
    bad.loc[1, "amount"] = "x"
    with pytest.raises(EventDataError) as err:
        validate_events(bad, schema)
    assert len(err.value.problems) == 2
    assert all("data.on_invalid=drop" in p for p in err.value.problems)


def test_drop_policy_removes_and_counts_bad_rows(events, schema):
    bad = events.astype({"amount": "object", "customer_id": "float64"})
    bad.loc[0, "customer_id"] = np.nan
    bad.loc[[1, 2], "amount"] = "x"
    bad.loc[2, "customer_id"] = np.nan  # one row with two problems is dropped once
    clean, report = validate_events(bad, schema, on_invalid="drop")
    assert report.dropped == {"null_id": 2, "non_numeric": 2}
    assert report.rows_out == len(events) - 3 == len(clean)


def test_null_numeric_and_categorical_are_allowed(events, schema):
    ok = events.copy()
    ok.loc[0, "category"] = None
    clean, report = validate_events(ok, schema)
    assert report.rows_out == len(events)
    assert clean["amount"].isna().any()


def test_single_value_categorical_warns(events, schema):
    with pytest.warns(UserWarning, match="'event_type' has 1 distinct value"):
        _, report = validate_events(events.assign(event_type="view"), schema)
    assert report.warnings


def test_duplicates_are_kept_and_counted(events, schema):
    doubled = pd.concat([events, events.iloc[:7]], ignore_index=True)
    prepared = prepare_events(doubled, schema, max_len=1000)
    assert prepared.report["validation"]["duplicate_events"] == 7
    assert prepared.store.n_events == len(doubled)


def test_unknown_policy(events, schema):
    with pytest.raises(ValueError, match="on_invalid"):
        validate_events(events, schema, on_invalid="ignore")


def test_schema_rejects_column_in_two_roles():
    with pytest.raises(ValueError, match=r"\['amount'\] more than once"):
        EventSchema(categorical=("amount",), numeric=("amount",))


def _with_offsets(events, offsets):
    return events.assign(ts=events["ts"].dt.strftime("%Y-%m-%d %H:%M:%S") + offsets)


@pytest.mark.parametrize("policy", ["fail", "drop"])
def test_mixed_utc_offsets_are_one_clear_error(events, schema, policy):
    offsets = np.where(np.arange(len(events)) < 5, "+02:00", "+01:00")
    with pytest.raises(EventDataError, match=r"'ts': 5 row\(s\) with a different time zone.*example value '.*\+02:00' at row 0") as err:
        validate_events(_with_offsets(events, offsets), schema, on_invalid=policy)
    assert len(err.value.problems) == 1 and "on_invalid=drop" not in str(err.value)


def test_times_with_and_without_offset_are_one_clear_error(events, schema):
    offsets = np.where(np.arange(len(events)) == 3, "Z", "")
    with pytest.raises(EventDataError, match=r"'ts': 1 row\(s\) with a different time zone.*no offset.*at row 3"):
        validate_events(_with_offsets(events, offsets), schema, on_invalid="drop")


def test_mixed_time_zones_in_timestamp_objects(events, schema):
    zones = ["UTC" if i % 2 else "Europe/Paris" for i in range(len(events))]
    objects = pd.Series([t.tz_localize(z) for t, z in zip(events["ts"], zones)], dtype=object)
    with pytest.raises(EventDataError, match=r"'ts': 460 row\(s\) with a different time zone.*\+00:00") as err:
        validate_events(events.assign(ts=objects), schema)
    # the Paris rows span winter and summer: no single offset may be claimed for all of them
    assert "460 at +01:00" not in str(err.value) and "460 at +02:00" not in str(err.value)


def test_one_offset_keeps_the_wall_clock_and_bad_rows_stay_droppable(events, schema):
    bad = _with_offsets(events, "+05:30")
    bad.loc[4, "ts"] = "garbage"
    clean, report = validate_events(bad, schema, on_invalid="drop")
    assert report.dropped == {"bad_time": 1}
    assert (clean["ts"] == events["ts"].drop(index=4).reset_index(drop=True)).all()
