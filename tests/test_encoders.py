import json

import numpy as np
import pandas as pd
import pytest

from eventseg.data.batch import MISSING, N_SPECIAL, RARE, UNSEEN
from eventseg.data.encoders import TIME_FEATURES, CategoricalEncoder, EventEncoders, NumericScaler, TimeEncoder
from eventseg.data.prepare import prepare_events


def test_vocabulary_is_frequency_ordered_capped_with_rare_bucket():
    values = pd.Series(["a"] * 10 + ["b"] * 30 + ["c"] * 20 + ["d"] * 2 + ["e"] * 6)
    enc = CategoricalEncoder.fit(values, max_size=2, min_count=5)
    assert enc.vocabulary == ["b", "c"]
    assert sorted(enc.rare) == ["a", "d", "e"]
    codes = enc.transform(pd.Series(["b", "c", "a", "d", "zzz", None]))
    assert codes.tolist() == [N_SPECIAL, N_SPECIAL + 1, RARE, RARE, UNSEEN, MISSING]


def test_unseen_only_categories_never_error():
    enc = CategoricalEncoder.fit(pd.Series(["x"] * 10), min_count=1)
    assert enc.transform(pd.Series(["new1", "new2"], dtype="category")).tolist() == [UNSEEN, UNSEEN]


def test_ties_are_broken_by_value_so_fit_is_deterministic():
    a = CategoricalEncoder.fit(pd.Series(["q", "p"] * 5), min_count=1)
    b = CategoricalEncoder.fit(pd.Series(["p", "q"] * 5), min_count=1)
    assert a.vocabulary == b.vocabulary == ["p", "q"]


def test_numeric_scaler_is_robust_to_heavy_tails_and_flags_nan():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.lognormal(3, 1, 10_000), [1e9]])
    scaler = NumericScaler.fit(x)
    v, missing = scaler.transform(np.array([np.nan, np.median(x), 1e9, -1e9]))
    assert missing.tolist() == [1, 0, 0, 0]
    assert v[0] == 0 and abs(v[1]) < 1e-6
    assert v[2] == scaler.clip and v[3] == -scaler.clip  # signed log keeps sign, clip bounds the tail


def test_constant_numeric_does_not_divide_by_zero():
    v, _ = NumericScaler.fit(np.full(100, 7.0)).transform(np.array([7.0, 8.0]))
    assert np.isfinite(v).all() and v[0] == 0


def test_time_features_cyclic_and_gaps():
    ts = pd.to_datetime(["2025-01-06 00:00", "2025-01-06 06:00", "2025-01-07 18:00"]).values.astype("datetime64[s]").view(np.int64)
    first = np.array([True, False, False])
    gap, age = TimeEncoder.raw(ts, first, np.int64(ts[-1]))
    assert np.isnan(gap[0]) and gap[1] == 6 and gap[2] == 36
    assert age.tolist() == [1.75, 1.5, 0.0]
    out = TimeEncoder.fit(gap, age).transform(ts, gap, age)
    cols = {n: out[:, i] for i, n in enumerate(TIME_FEATURES)}
    assert cols["time_first_event"].tolist() == [1, 0, 0]
    np.testing.assert_allclose(cols["time_hour_sin"], [0, 1, -1], atol=1e-6)  # 0h, 6h, 18h
    np.testing.assert_allclose(cols["time_week_sin"][0], 0, atol=1e-6)  # Monday 00:00 starts the week


def test_encoders_round_trip_through_json(tmp_path, events, schema):
    enc = prepare_events(events, schema).encoders
    enc.save(tmp_path / "enc.json")
    json.loads((tmp_path / "enc.json").read_text())  # plain JSON
    back = EventEncoders.load(tmp_path / "enc.json")
    assert back.to_dict() == enc.to_dict()
    for col in schema.categorical:
        np.testing.assert_array_equal(back.categorical[col].transform(events[col]), enc.categorical[col].transform(events[col]))
    assert back.feature_spec == enc.feature_spec
    assert list(back.feature_spec.categorical) == list(schema.categorical)  # column order, not JSON key order


def test_wrong_format_version_is_refused(events, schema):
    d = prepare_events(events, schema).encoders.to_dict()
    d["format_version"] = 99
    with pytest.raises(ValueError, match="format_version 99"):
        EventEncoders.from_dict(d)


def test_encoders_see_only_training_customers(events, schema):
    prepared = prepare_events(events, schema, split_fractions=(0.5, 0.25, 0.25))
    train_ids = set(prepared.store.customer_ids[prepared.splits == 0].tolist())
    held_out = events["customer_id"].isin(set(events["customer_id"]) - train_ids)
    marked = events.copy()
    marked["category"] = marked["category"].astype(object)
    marked.loc[held_out, "category"] = "only_in_holdout"
    enc = prepare_events(marked, schema, split_fractions=(0.5, 0.25, 0.25), encoder_options=None).encoders
    assert "only_in_holdout" not in enc.categorical["category"].vocabulary + enc.categorical["category"].rare


def test_a_vocabulary_that_collapses_to_the_rare_bucket_is_a_warning():
    """100,000 item ids seen two or three times each: min_count=5 gives them no codes at all,
    which used to happen silently (the field then tells the model nothing)."""
    rng = np.random.default_rng(0)
    ids = pd.Series(np.repeat(np.arange(100_000), rng.choice([2, 3], 100_000)).astype(str), name="stock_code")
    with pytest.warns(UserWarning, match=r"'stock_code'.*distinct values.*rare bucket.*data\.encoders\.min_count=2") as caught:
        enc = CategoricalEncoder.fit(ids, min_count=5)
    assert enc.vocabulary == []
    message = str(caught[0].message)
    assert "100,000 distinct values" in message and "min_count=5" in message and "100% of its" in message
    # past max_vocab, not min_count: the fix named is max_vocab
    many = pd.Series(np.repeat(np.arange(3000), 6).astype(str), name="sku")
    with pytest.warns(UserWarning, match=r"'sku'.*data\.encoders\.max_vocab=3,000"):
        CategoricalEncoder.fit(many, max_size=1000, min_count=5)


def test_a_healthy_vocabulary_is_no_warning():
    values = pd.Series(np.random.default_rng(0).choice([f"c{i}" for i in range(40)], 5000), name="category")
    values.iloc[:300] = [f"once{i}" for i in range(300)]  # a long tail, but a minority of the events
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        enc = CategoricalEncoder.fit(values, min_count=5)
    assert len(enc.vocabulary) == 40
