import numpy as np
import pandas as pd
import pytest

from eventseg.data.store import SequenceStore
from eventseg.data.prepare import PreparedData, encode_events, prepare_events


def test_store_is_sorted_by_customer_then_time(events, schema):
    store = prepare_events(events, schema, max_len=1000).store
    assert np.all(np.diff(store.customer_ids) > 0)
    for i in range(store.n_customers):
        ts = store.timestamps[store.offsets[i] : store.offsets[i + 1]]
        assert np.all(np.diff(ts) >= 0)
    expected = events.groupby("customer_id").size().sort_index()
    np.testing.assert_array_equal(store.lengths, expected.to_numpy())


def test_store_rows_match_the_raw_events(events, schema):
    prepared = prepare_events(events, schema, max_len=1000)
    store, enc = prepared.store, prepared.encoders
    i = 3
    cid = store.customer_ids[i]
    raw = events[events.customer_id == cid].sort_values("ts", kind="stable")
    rows = slice(store.offsets[i], store.offsets[i + 1])
    np.testing.assert_array_equal(store.timestamps[rows], raw.ts.values.astype("datetime64[s]").view(np.int64))
    np.testing.assert_array_equal(store.categorical[rows, 1], enc.categorical["category"].transform(raw.category))


def test_truncation_keeps_most_recent_events(events, schema):
    full = prepare_events(events, schema, max_len=1000).store
    short = prepare_events(events, schema, max_len=5).store
    assert short.lengths.max() == 5
    np.testing.assert_array_equal(short.lengths, np.minimum(full.lengths, 5))
    for i in range(full.n_customers):
        np.testing.assert_array_equal(
            short.timestamps[short.offsets[i] : short.offsets[i + 1]],
            full.timestamps[full.offsets[i + 1] - short.lengths[i] : full.offsets[i + 1]],
        )


def test_save_and_memory_mapped_load_round_trip(tmp_path, events, schema):
    prepared = prepare_events(events, schema)
    prepared.save(tmp_path / "prep")
    back = PreparedData.load(tmp_path / "prep")
    for name in ("customer_ids", "offsets", "timestamps", "categorical", "numeric"):
        arr = getattr(back.store, name)
        assert isinstance(arr, np.memmap), f"{name} was copied instead of memory-mapped"
        np.testing.assert_array_equal(arr, getattr(prepared.store, name))
    np.testing.assert_array_equal(back.splits, prepared.splits)
    assert back.store.numeric_features == prepared.store.numeric_features


def test_string_customer_ids_survive_a_round_trip(tmp_path, events, schema):
    named = events.assign(customer_id="cust-" + events.customer_id.astype(str))
    prepared = prepare_events(named, schema)
    prepared.store.save(tmp_path / "s")
    back = SequenceStore.load(tmp_path / "s")
    assert back.customer_ids.tolist() == sorted(named.customer_id.unique().tolist())


def test_batch_pads_and_masks(events, schema):
    store = prepare_events(events, schema, max_len=1000).store
    idx = [0, 4, 9]
    batch = store.batch(idx)
    lens = store.lengths[idx]
    assert batch.lengths.tolist() == lens.tolist()
    assert batch.categorical.shape[:2] == (3, lens.max())
    assert batch.mask.sum().item() == lens.sum()
    assert (batch.categorical[~batch.mask] == 0).all()  # padding code
    assert (batch.categorical[batch.mask] >= 1).all()
    np.testing.assert_array_equal(batch.numeric[1, : lens[1]].numpy(), store.numeric[store.offsets[4] : store.offsets[5]])


def test_scoring_path_applies_fitted_encoders_to_unseen_values(events, schema):
    prepared = prepare_events(events, schema)
    new = events.head(30).assign(customer_id=99999, category="never-seen")
    store = encode_events(new, prepared.encoders, max_len=200)
    assert store.n_customers == 1 and store.n_events == 30
    assert (store.categorical[:, 1] == 1).all()  # UNSEEN
    assert store.numeric_features == prepared.store.numeric_features


def test_a_failed_save_leaves_nothing_behind(tmp_path, events, schema, monkeypatch):
    prepared = prepare_events(events, schema)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", boom)
    with pytest.raises(OSError):
        prepared.save(tmp_path / "prep")
    assert list(tmp_path.iterdir()) == []


def test_one_event_customers_are_kept(schema):
    df = pd.DataFrame({"customer_id": [1, 2, 2], "ts": pd.to_datetime(["2025-01-01", "2025-01-02", "2025-01-03"]),
                       "event_type": ["view", "cart", "view"], "category": ["a", "b", "a"], "amount": [1.0, None, 2.0]})
    store = prepare_events(df, schema, split_fractions=(1, 0, 0)).store
    assert store.lengths.tolist() == [1, 2]
    gap_flag = store.numeric[:, store.numeric_features.index("time_first_event")]
    assert gap_flag.tolist() == [1, 1, 0]


def test_parallel_block_sort_equals_one_stable_sort(events, schema, monkeypatch):
    import eventseg.data.store as store_module

    dupes = pd.concat([events, events.iloc[:50]], ignore_index=True)  # ties keep input order
    single = prepare_events(dupes, schema).store
    monkeypatch.setattr(store_module, "_PARALLEL_SORT_MIN_ROWS", 0)
    monkeypatch.setattr(store_module.os, "cpu_count", lambda: 3)
    blocked = prepare_events(dupes, schema).store
    np.testing.assert_array_equal(blocked.timestamps, single.timestamps)
    np.testing.assert_array_equal(blocked.categorical, single.categorical)
    np.testing.assert_array_equal(blocked.numeric, single.numeric)


def test_events_beyond_max_len_are_summarised_not_lost(schema):
    """A customer with more than max_len events keeps the newest ones as events and the older
    ones as `earlier`: their count, span, gap to the first kept event and amount sums."""
    ts = pd.Timestamp("2025-01-01") + pd.to_timedelta([0, 2, 3, 10, 11, 12], unit="D")
    events = pd.DataFrame({"customer_id": [1] * 6 + [2], "ts": list(ts) + [ts[0]],
                           "event_type": ["view"] * 7, "category": ["a", "b"] * 3 + ["a"],
                           "amount": [1.0, 2.0, np.nan, 4.0, 5.0, 6.0, 9.0]})
    store = prepare_events(events, schema, max_len=3).store
    assert store.earlier_features[:3] == ["earlier_log_events", "earlier_log_span_days", "earlier_log_gap_days"]
    heavy, light = store.earlier[0], store.earlier[1]
    np.testing.assert_allclose(heavy[:4], [np.log1p(3), np.log1p(3.0), np.log1p(7.0), np.log1p(3.0)], rtol=1e-6)
    assert not light.any()  # nothing cut off: zeros
    assert store.batch([0, 1]).earlier.shape == (2, 4)
    # the summary changes when the cut-off part changes, the kept events being the same
    more = events.copy()
    more.loc[0, "amount"] = 100.0
    assert prepare_events(more, schema, max_len=3).store.earlier[0, 3] > heavy[3]
