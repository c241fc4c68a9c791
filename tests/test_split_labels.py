import warnings

import numpy as np
import pandas as pd
import pytest

from eventseg.data.labels import build_labels, events_before
from eventseg.data.split import assign_splits
from eventseg.data.prepare import prepare_events


def test_split_is_stable_under_row_order_and_other_customers():
    ids = np.arange(10_000)
    a = assign_splits(ids, seed=3)
    perm = np.random.default_rng(0).permutation(ids)
    b = assign_splits(perm, seed=3)
    np.testing.assert_array_equal(a[perm], b)
    np.testing.assert_array_equal(assign_splits(ids[:100], seed=3), a[:100])  # independent of the others
    assert not np.array_equal(a, assign_splits(ids, seed=4))
    shares = np.bincount(a) / len(a)
    np.testing.assert_allclose(shares, [0.8, 0.1, 0.1], atol=0.02)


def test_prepare_split_does_not_depend_on_row_order(events, schema):
    a = prepare_events(events, schema)
    b = prepare_events(events.sample(frac=1.0, random_state=7), schema)
    np.testing.assert_array_equal(a.splits, b.splits)
    np.testing.assert_array_equal(a.store.numeric, b.store.numeric)


def test_bad_fractions():
    with pytest.raises(ValueError, match="sum"):
        assign_splits(np.arange(5), fractions=(0.5, 0.5, 0.5))


def _toy(schema):
    return pd.DataFrame({
        "customer_id": [1, 1, 1, 2, 2, 3, 4],
        "ts": pd.to_datetime(["2025-01-01", "2025-01-20", "2025-02-05", "2025-01-10", "2025-03-15", "2025-02-02", "2025-02-03"]),
        "event_type": ["purchase", "view", "purchase", "view", "purchase", "view", "purchase"],
        "category": ["a"] * 7,
        "amount": [10.0, np.nan, 25.0, np.nan, 99.0, np.nan, 5.0],
    })


def test_labels_hand_checked(schema):
    labels = build_labels(_toy(schema), schema, cutoff="2025-02-01", horizon_days=30, amount_col="amount",
                          purchase_col="event_type", purchase_values=("purchase",)).set_index("customer_id")
    # customers 3 and 4 have no history before the cutoff: no label row
    assert labels.index.tolist() == [1, 2]
    assert labels["purchase_within_30d"].tolist() == [1, 0]  # 1 bought on 02-05; 2's purchase is after the horizon
    assert labels["churn_30d"].tolist() == [0, 1]
    assert labels["spend_30d"].tolist() == [25.0, 0.0]


def test_features_never_see_post_cutoff_events(schema):
    df = _toy(schema)
    cutoff = pd.Timestamp("2025-02-01")
    prepared = prepare_events(df, schema, cutoff=cutoff, split_fractions=(1, 0, 0))
    store = prepared.store
    assert store.timestamps.max() < cutoff.value // 10**9
    assert store.customer_ids.tolist() == [1, 2]  # 3 and 4 only act after the cutoff
    assert prepared.report["rows_after_cutoff_filter"] == len(events_before(df, schema, cutoff)) == 3
    # event ages are measured to the cutoff, so the store cannot encode what happens after it
    age = store.numeric[:, store.numeric_features.index("time_log_age")]
    assert np.all(np.diff(age[:2]) < 0)


def test_cutoff_before_all_events(schema):
    with pytest.raises(ValueError, match="no events before the cutoff"):
        build_labels(_toy(schema), schema, cutoff="2024-01-01")


def test_cutoff_after_every_event_is_an_error(schema):
    with pytest.raises(ValueError, match=r"no events after the cutoff.*last event is at 2025-03-15.*constant"):
        build_labels(_toy(schema), schema, cutoff="2025-06-01")


def test_empty_label_window_is_an_error(schema):
    # events before 2025-02-05 and on 2025-03-15: nothing in [02-06, 03-08)
    with pytest.raises(ValueError, match=r"no events in the label window.*constant"):
        build_labels(_toy(schema), schema, cutoff="2025-02-06", horizon_days=30)


def test_window_past_the_data_warns_with_the_last_event(schema):
    with pytest.warns(UserWarning, match=r"events end at 2025-03-15.*labels see only 11\.0 of 30 days"):
        labels = build_labels(_toy(schema), schema, cutoff="2025-03-04", horizon_days=30)
    assert len(labels) == 4


def test_window_covered_by_the_data_does_not_warn(schema):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_labels(_toy(schema), schema, cutoff="2025-02-01", horizon_days=30)
        build_labels(_toy(schema), schema, cutoff="2025-02-14", horizon_days=30)  # last day of the window is the data's last day
