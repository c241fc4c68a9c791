"""The synthetic generator: contract, built-in archetype signals, labels that follow truth, and the
months after the cutoff (stationary continuation plus planted migrations)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from eventseg.data.synthetic import (
    ARCHETYPE_NAMES,
    CATEGORIES,
    CHANNELS,
    EVENT_TYPES,
    LOYAL,
    ORDER_ONLY_PAIR,
    generate_synthetic,
    write_synthetic,
)

ROOT = Path(__file__).resolve().parents[1]
N = 10_000  # big enough that per-archetype statistics are stable; generates in < 1 s


@pytest.fixture(scope="module")
def data():
    return generate_synthetic(n_customers=N, seed=0)


@pytest.fixture(scope="module")
def ev(data):
    """Events joined with archetype plus per-event timing features."""
    e = data.events.merge(data.truth[["customer_id", "archetype"]], on="customer_id")
    start = pd.Timestamp("2025-01-01")
    e["day"] = (e["ts"] - start) / pd.Timedelta(days=1)
    e["weekend"] = e["ts"].dt.day_of_week >= 5
    e["night"] = (e["ts"].dt.hour >= 22) | (e["ts"].dt.hour < 4)
    e["second_half"] = e["day"] >= 365 / 2
    e["app"] = e["channel"] == "app"
    return e


def _by_arch(ev, col):
    return ev.groupby("archetype")[col].mean()


def _tv(a: pd.Series, b: pd.Series) -> float:
    """Total-variation distance between two value distributions."""
    pa, pb = a.value_counts(normalize=True), b.value_counts(normalize=True)
    return 0.5 * pa.sub(pb, fill_value=0).abs().sum()


def test_deterministic_in_seed():
    a, b = generate_synthetic(1500, seed=3), generate_synthetic(1500, seed=3)
    for name in ("events", "labels", "truth"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    c = generate_synthetic(1500, seed=4)
    assert len(c.events) != len(a.events) or not c.events.equals(a.events)
    assert not np.array_equal(c.truth["customer_id"], a.truth["customer_id"])


def test_schema_and_value_sets(data):
    e = data.events
    assert list(e.columns) == ["customer_id", "ts", "event_type", "category", "channel", "amount"]
    assert e["customer_id"].dtype == np.int64
    assert e["ts"].dtype == "datetime64[ns]"
    assert e["amount"].dtype == np.float64
    for col in ("event_type", "category", "channel"):
        assert pd.api.types.is_string_dtype(e[col]), col
        assert e[col].notna().all()
    assert set(e["event_type"]) == set(EVENT_TYPES)
    assert set(e["channel"]) == set(CHANNELS)
    assert set(e["category"]) <= set(CATEGORIES) and e["category"].nunique() >= 25
    assert (e["ts"].dt.nanosecond == 0).all() and (e["ts"].dt.microsecond == 0).all()
    # every customer has history and exactly one row of labels and truth
    ids = np.sort(data.truth["customer_id"].to_numpy())
    assert len(ids) == N and len(np.unique(ids)) == N
    assert np.array_equal(np.sort(e["customer_id"].unique()), ids)
    assert np.array_equal(np.sort(data.labels["customer_id"].to_numpy()), ids)
    assert set(data.truth["archetype"]) == set(ARCHETYPE_NAMES)
    assert list(data.labels.columns) == [
        "customer_id", "purchase_within_30d", "churn_30d", "spend_30d",
    ]  # fmt: skip
    assert list(data.truth.columns) == [
        "customer_id", "archetype", "p_purchase_within_30d", "p_churn_30d", "expected_spend_30d",
    ]  # fmt: skip


def test_volume_funnel_and_rows_shuffled(data):
    e = data.events
    assert 40 <= len(e) / N <= 70  # ~1M events at the default 20k customers
    share = e["event_type"].value_counts(normalize=True)
    assert share["view"] > share["cart"] > share["purchase"] > share["return"] > 0
    assert share["view"] > 0.6 and share["return"] < 0.02
    assert not e["customer_id"].is_monotonic_increasing
    assert not e["ts"].is_monotonic_increasing
    counts = e.groupby("customer_id").size()
    assert (counts == 1).mean() > 0.005  # some one-event customers
    cat = e["category"].value_counts(normalize=True)  # Zipf-like: a head and a long tail
    assert cat.iloc[0] > 5 * cat.iloc[len(cat) // 2] and cat.iloc[:5].sum() > 0.5


def test_timestamps_inside_history_window(data):
    start = pd.Timestamp("2025-01-01")
    assert data.cutoff == start + pd.Timedelta(days=365)
    assert data.events["ts"].min() >= start
    assert data.events["ts"].max() < data.cutoff


def test_amount_rule(data):
    e = data.events
    kind = e["event_type"]
    assert e.loc[kind.isin(["view", "cart"]), "amount"].isna().all()
    buy = e.loc[kind == "purchase", "amount"]
    ret = e.loc[kind == "return", "amount"]
    assert buy.notna().all() and (buy > 0).all()
    assert ret.notna().all() and (ret < 0).all()
    assert buy.mean() > 1.5 * buy.median()  # right skew
    assert buy.quantile(0.999) > 20 * buy.median()  # heavy tail


def test_archetype_proportions_uneven_but_none_tiny(data):
    share = data.truth["archetype"].value_counts(normalize=True)
    assert len(share) == len(ARCHETYPE_NAMES)
    assert share.min() > 0.05
    assert share.max() > 1.5 * share.min()


def test_archetypes_differ_in_their_built_in_signals(data, ev):
    weekend, night, app = _by_arch(ev, "weekend"), _by_arch(ev, "night"), _by_arch(ev, "app")
    others = lambda s, name: s.drop(name)  # noqa: E731
    assert weekend["weekend_big_spender"] > 0.6 > others(weekend, "weekend_big_spender").max()
    assert night["night_app_browser"] > 0.5 > others(night, "night_app_browser").max()
    assert app["night_app_browser"] > 0.7 > others(app, "night_app_browser").max()

    first_day = ev.groupby("customer_id")["day"].min()
    arch = data.truth.set_index("customer_id")["archetype"]
    first_med = first_day.groupby(arch).median()
    assert first_med["new_explorer"] > 365 - 100
    assert first_med.drop("new_explorer").max() < 200

    second_half = _by_arch(ev, "second_half")
    assert second_half["lapsing_loyalist"] < 0.3
    flat = second_half.drop([*ORDER_ONLY_PAIR, "new_explorer"])
    assert (flat - 0.5).abs().max() < 0.1

    buys = ev[ev["event_type"] == "purchase"].groupby("archetype")["amount"].median()
    assert buys["weekend_big_spender"] > 2 * buys.drop("weekend_big_spender").max()
    assert buys["bargain_hunter"] < buys.drop("bargain_hunter").min()
    views = ev.groupby("archetype")["event_type"].apply(lambda s: (s == "view").mean())
    assert views["bargain_hunter"] == views.max()


def test_order_only_pair_same_totals_different_timing(data, ev):
    a, b = ORDER_ONLY_PAIR
    ea, eb = ev[ev["archetype"] == a], ev[ev["archetype"] == b]
    arch = data.truth.set_index("customer_id")["archetype"]
    counts = ev.groupby("customer_id").size().groupby(arch).mean()
    assert abs(counts[a] / counts[b] - 1) < 0.1
    # same mixes: the pair is much closer to each other than to any other archetype
    for col in ("event_type", "category", "channel"):
        within = _tv(ea[col], eb[col])
        others = [ev.loc[ev["archetype"] == o, col] for o in ARCHETYPE_NAMES if o not in (a, b)]
        assert within < 0.06 and within < min(_tv(ea[col], o) for o in others) / 2, col
    amt_a = ea.loc[ea["event_type"] == "purchase", "amount"]
    amt_b = eb.loc[eb["event_type"] == "purchase", "amount"]
    assert abs(amt_a.median() / amt_b.median() - 1) < 0.1
    hours = _tv(ea["ts"].dt.hour, eb["ts"].dt.hour)
    assert hours < 0.05
    # ...but activity decays for one and ramps up for the other
    half = _by_arch(ev, "second_half")
    assert half[a] < 0.3 and half[b] > 0.7
    recency = data.cutoff - ev.groupby("customer_id")["ts"].max()
    rec_days = (recency / pd.Timedelta(days=1)).groupby(arch).median()
    assert rec_days[a] > 5 * rec_days[b]


def test_labels_follow_truth(data):
    m = data.truth.merge(data.labels, on="customer_id")
    for p, y in (("p_purchase_within_30d", "purchase_within_30d"), ("p_churn_30d", "churn_30d")):
        assert set(m[y].unique()) == {0, 1}
        assert m[p].between(0, 1).all()
        assert abs(m[y].mean() - m[p].mean()) < 0.02
        assert 0.6 < roc_auc_score(m[y], m[p]) < 0.97
    # a purchase means the customer was active; spend exactly when purchasing
    assert not ((m["purchase_within_30d"] == 1) & (m["churn_30d"] == 1)).any()
    assert ((m["spend_30d"] > 0) == (m["purchase_within_30d"] == 1)).all()
    assert abs(m["spend_30d"].mean() / m["expected_spend_30d"].mean() - 1) < 0.15
    assert (m["p_purchase_within_30d"] <= 1 - m["p_churn_30d"] + 1e-12).all()
    # the order-only pair ends up with different outcomes purely through timing
    by = m.groupby("archetype")["p_churn_30d"].mean()
    assert by["lapsing_loyalist"] > by["rising_loyalist"] + 0.2


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(n_customers=0), "n_customers"),
        (dict(horizon_days=0), "horizon_days"),
        (dict(days=40, horizon_days=30), "days"),
        (dict(start="not a date"), "start"),
        (dict(months_after=-1), "months_after"),
        (dict(months_after=1.5), "months_after"),
        (dict(months_after="3"), "months_after"),
        (dict(months_after=True), "months_after"),
        (dict(migration_share=-0.1), "migration_share"),
        (dict(migration_share=1.5), "migration_share"),
        (dict(migration_share=float("nan")), "migration_share"),
        (dict(migration_share="0.2"), "migration_share"),
    ],
)
def test_bad_params_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        generate_synthetic(**kwargs)


@pytest.mark.parametrize("months_after", [0, 4])
def test_script_writes_files(tmp_path, months_after):
    out = tmp_path / "syn"
    res = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_synthetic.py"),
         "n_customers=300", "seed=1", f"months_after={months_after}", f"out_dir={out}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "300 customers" in res.stdout
    names = ["events", "labels", "truth"] + (["events_full"] if months_after else [])
    for name in names:
        df = pd.read_parquet(out / f"{name}.parquet")
        meta = json.loads((out / f"{name}.parquet.json").read_text())
        assert meta["rows"] == len(df) > 0
        assert meta["params"]["seed"] == 1 and meta["params"]["n_customers"] == 300
        assert meta["params"]["months_after"] == months_after
        assert meta["cutoff"].startswith("2026-01-01")
    assert pd.read_parquet(out / "truth.parquet")["customer_id"].nunique() == 300
    assert (out / "events_full.parquet").exists() == bool(months_after)
    if months_after:
        truth = pd.read_parquet(out / "truth.parquet")
        assert "events_full.parquet" in res.stdout
        assert f"{truth['migration_date'].notna().sum()} planted migrations" in res.stdout
    assert not (tmp_path / "outputs").exists()  # hydra leaves no run folders behind


# --- the months after the cutoff ------------------------------------------------------------
M = 6  # months simulated after the cutoff
N_LATER = 3000


@pytest.fixture(scope="module")
def later():
    return generate_synthetic(n_customers=N_LATER, seed=0, months_after=M)


@pytest.fixture(scope="module")
def per_customer(later):
    """Per customer: archetype, migration date, and event counts in the windows the tests use."""
    c, e, le = later.cutoff, later.events, later.later_events
    t = later.truth.set_index("customer_id")[["archetype", "migration_date"]].copy()
    t["migrant"] = t["migration_date"].notna()
    count = lambda rows: rows.groupby("customer_id").size().reindex(t.index, fill_value=0)  # noqa: E731
    t["last_90d_before"] = count(e[e["ts"] >= c - pd.Timedelta(days=90)])
    t["first_90d_after"] = count(le[le["ts"] < c + pd.Timedelta(days=90)])
    t["last_2_months"] = count(le[le["ts"] >= c + pd.DateOffset(months=M - 2)])
    return t


def test_history_does_not_depend_on_the_continuation(later):
    base = generate_synthetic(n_customers=N_LATER, seed=0)
    pd.testing.assert_frame_equal(base.events, later.events)
    pd.testing.assert_frame_equal(base.labels, later.labels)
    pd.testing.assert_frame_equal(base.truth, later.truth[base.truth.columns])
    assert list(later.truth.columns) == [*base.truth.columns, "migration_date", "archetype_after"]
    # without a continuation: today's truth columns and an empty frame shaped like events
    assert list(base.later_events.columns) == list(base.events.columns)
    assert len(base.later_events) == 0
    assert base.later_events.dtypes.equals(base.events.dtypes)


def test_later_events_schema_window_and_rules(later):
    le, e = later.later_events, later.events
    assert le.dtypes.equals(e.dtypes) and list(le.columns) == list(e.columns)
    end = later.cutoff + pd.DateOffset(months=M)
    assert le["ts"].min() >= later.cutoff and le["ts"].max() < end
    assert le["ts"].max() > end - pd.Timedelta(days=2)  # the whole period is filled
    assert set(le["customer_id"]) <= set(later.truth["customer_id"])
    assert not le["ts"].is_monotonic_increasing  # shuffled like the history
    kind = le["event_type"]
    assert set(kind) == set(EVENT_TYPES)
    assert le.loc[kind.isin(["view", "cart"]), "amount"].isna().all()
    assert (le.loc[kind == "purchase", "amount"] > 0).all() and (le.loc[kind == "return", "amount"] < 0).all()
    # every later refund matches an earlier purchase (same customer, amount) 1-21 days before;
    # some of those purchases were made in the history, just before the cutoff
    keys = ["customer_id", "amount"]
    buys = pd.concat([e, le]).query("event_type == 'purchase'")[[*keys, "ts"]]
    refunds = le[kind == "return"].assign(amount=lambda d: -d["amount"])[[*keys, "ts"]]
    m = refunds.reset_index().merge(buys, on=keys, suffixes=("", "_buy"))
    lag = (m["ts"] - m["ts_buy"]) / pd.Timedelta(days=1)
    matched = m[(lag >= 1) & (lag <= 21)]
    assert matched["index"].nunique() == len(refunds)
    assert (matched["ts_buy"] < later.cutoff).any()


def test_later_visits_use_the_same_in_visit_model(later):
    """After the cutoff each archetype keeps its own mixes and its built-in timing signals."""
    arch = later.truth.set_index("customer_id")["archetype"]
    le, he = (d.assign(archetype=d["customer_id"].map(arch), hour=d["ts"].dt.hour)
              for d in (later.later_events, later.events))  # fmt: skip
    for name in ARCHETYPE_NAMES:
        a, b = le[le["archetype"] == name], he[he["archetype"] == name]
        for col in ("event_type", "category", "channel", "hour"):
            assert _tv(a[col], b[col]) < 0.12, (name, col)
    le["weekend"] = le["ts"].dt.day_of_week >= 5
    le["night"] = (le["hour"] >= 22) | (le["hour"] < 4)
    weekend, night = _by_arch(le, "weekend"), _by_arch(le, "night")
    assert weekend["weekend_big_spender"] > 0.6 > weekend.drop("weekend_big_spender").max()
    assert night["night_app_browser"] > 0.5 > night.drop("night_app_browser").max()
    buys = le[le["event_type"] == "purchase"].groupby("archetype")["amount"].median()
    assert buys["weekend_big_spender"] > 2 * buys.drop("weekend_big_spender").max()


def test_events_full_file_is_history_plus_later(later, tmp_path):
    paths = write_synthetic(later, tmp_path)
    full = pd.read_parquet(paths["events_full"])
    events = pd.read_parquet(paths["events"])
    assert len(full) == len(later.events) + len(later.later_events)
    assert json.loads((tmp_path / "events_full.parquet.json").read_text())["rows"] == len(full)
    assert full.dtypes.equals(events.dtypes)
    key = list(events.columns)
    before = full[full["ts"] < later.cutoff].sort_values(key, ignore_index=True)
    pd.testing.assert_frame_equal(before, events.sort_values(key, ignore_index=True))
    assert not full["ts"].is_monotonic_increasing
    # without a continuation there is no events_full file
    assert "events_full" not in write_synthetic(generate_synthetic(200, seed=0), tmp_path / "plain")
    assert not (tmp_path / "plain" / "events_full.parquet").exists()


@pytest.mark.parametrize("share", [0.2, 0.5])
def test_migrations_only_in_loyal_archetypes_in_window(later, share):
    data = later if share == 0.2 else generate_synthetic(N_LATER, 0, months_after=M, migration_share=share)
    t = data.truth
    migrant = t["migration_date"].notna()
    assert t["migration_date"].dtype == "datetime64[ns]"
    assert set(t.loc[migrant, "archetype"]) == set(LOYAL)
    loyal = t["archetype"].isin(LOYAL)
    assert abs(migrant[loyal].mean() - share) < 0.03  # one-visit customers cannot migrate
    dates = t.loc[migrant, "migration_date"]
    assert dates.min() >= data.cutoff and dates.max() < data.cutoff + pd.DateOffset(months=M - 2)
    assert dates.max() > data.cutoff + pd.DateOffset(months=M - 2) - pd.Timedelta(days=7)
    assert (dates == dates.dt.normalize()).all()
    assert (t["archetype_after"] == t["archetype"].where(~migrant, "lapsed")).all()


@pytest.mark.parametrize("months_after", [1, 2])
def test_too_short_a_continuation_plants_no_migrations(months_after):
    t = generate_synthetic(500, seed=0, months_after=months_after).truth
    assert t["migration_date"].isna().all() and t["migration_date"].dtype == "datetime64[ns]"
    assert (t["archetype_after"] == t["archetype"]).all()


def test_migrants_lapse_after_their_date(per_customer):
    """Once every migration date has passed, migrants do a small fraction of what their
    archetype's non-migrants do over the same months."""
    t = per_customer[per_customer["archetype"].isin(LOYAL)]
    late = t.groupby(["archetype", "migrant"])["last_2_months"].mean().unstack()
    assert (late[True] < 0.3 * late[False]).all(), late


def test_migrants_behave_like_their_archetype_before_their_date(later, per_customer):
    t = per_customer[per_customer["archetype"].isin(LOYAL)]
    le = later.later_events.merge(t[["migration_date"]], left_on="customer_id", right_index=True)
    mig = t[t["migrant"]]
    before = le[le["ts"] < le["migration_date"]].groupby("customer_id").size()
    before = before.reindex(mig.index, fill_value=0)
    days = (mig["migration_date"] - later.cutoff) / pd.Timedelta(days=1)
    rate_mig = before.groupby(mig["archetype"]).sum() / days.groupby(mig["archetype"]).sum()
    stay = t[~t["migrant"]]
    rate_stay = stay.groupby("archetype")["first_90d_after"].mean() / 90
    ratio = rate_mig / rate_stay
    assert ratio.between(0.5, 2).all(), ratio


def test_continuation_keeps_each_customers_end_of_history_rate(per_customer):
    """Flat and regular customers keep their rate; lapsing ones keep lapsing, rising ones rising."""
    t = per_customer[~per_customer["migrant"]]
    by = t.groupby("archetype")[["last_90d_before", "first_90d_after"]].sum()
    ratio = by["first_90d_after"] / by["last_90d_before"]
    steady = ["weekly_regular", "weekend_big_spender", "bargain_hunter", "night_app_browser"]
    assert ratio[steady].between(0.75, 1.33).all(), ratio
    assert ratio["lapsing_loyalist"] < 0.85 and ratio["rising_loyalist"] > 1.2, ratio
    rate = t.groupby("archetype")["first_90d_after"].mean()
    assert rate["rising_loyalist"] > 5 * rate["lapsing_loyalist"]


def test_continuation_deterministic_in_seed(later):
    again = generate_synthetic(n_customers=N_LATER, seed=0, months_after=M)
    pd.testing.assert_frame_equal(later.later_events, again.later_events)
    pd.testing.assert_frame_equal(later.truth, again.truth)
    other = generate_synthetic(n_customers=N_LATER, seed=1, months_after=M)
    assert not other.later_events["ts"].equals(later.later_events["ts"])
