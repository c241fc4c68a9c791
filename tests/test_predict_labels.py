"""Labels that mean what the user thinks: what counts as a purchase, a label that is another's
complement (modelled once), and a label with one class (skipped, no score, no tier)."""

import numpy as np
import pandas as pd
import pytest

from eventseg.data.labels import PurchaseFilter, build_labels, check_purchase_filter, parse_purchase_filter
from eventseg.data.schema import EventSchema
from eventseg.run.errors import ConfigError, UserError
from eventseg.propensity import evaluate_propensity, verdict_lines
from eventseg.segmentation.profiles import build_customers

SCHEMA = EventSchema(categorical=("event_type",), numeric=("amount",))


def _events():
    """Customer 1 views and buys after the cutoff, 2 only views, 3 orders, 4 is silent."""
    return pd.DataFrame({
        "customer_id": [1, 2, 3, 4, 1, 1, 2, 3, 1],
        "ts": pd.to_datetime(["2025-01-05", "2025-01-06", "2025-01-07", "2025-01-08",
                              "2025-02-03", "2025-02-04", "2025-02-05", "2025-02-06", "2025-03-20"]),
        "event_type": ["purchase", "view", "view", "purchase", "view", "purchase", "view", "order", "purchase"],
        "amount": [5.0, np.nan, np.nan, 7.0, np.nan, 20.0, np.nan, 30.0, 99.0],
    })


def _labels(spec):
    return build_labels(_events(), SCHEMA, "2025-02-01", 30, amount_col="amount", purchase_filter=spec).set_index("customer_id")


def test_purchase_filter_decides_what_counts_as_a_purchase():
    every = _labels(None)  # every event counts
    assert every["purchase_within_30d"].tolist() == [1, 1, 1, 0]
    assert every["spend_30d"].tolist() == [20.0, 0.0, 30.0, 0.0]
    only = _labels("event_type == purchase")
    assert only["purchase_within_30d"].tolist() == [1, 0, 0, 0]  # a view is not a purchase, nor an order
    assert only["spend_30d"].tolist() == [20.0, 0.0, 0.0, 0.0]
    both = _labels("event_type in [purchase, order]")
    assert both["purchase_within_30d"].tolist() == [1, 0, 1, 0] and both["spend_30d"].tolist() == [20.0, 0.0, 30.0, 0.0]
    pd.testing.assert_frame_equal(both, _labels({"event_type": ["purchase", "order"]}))
    for labels in (every, only, both):  # churn is "no event at all", whatever counts as a purchase
        assert labels["churn_30d"].tolist() == [0, 0, 0, 1]


def test_purchase_filter_mistakes_are_named():
    assert parse_purchase_filter("event_type == 'purchase'") == PurchaseFilter("event_type", ("purchase",))
    assert parse_purchase_filter(" event_type in (purchase,order) ") == PurchaseFilter("event_type", ("purchase", "order"))
    assert parse_purchase_filter(None) is None and parse_purchase_filter("null") is None
    for bad in ("event_type purchase", "event_type in purchase", "event_type in []", {}, {"a": [], "b": []}):
        with pytest.raises(ConfigError, match="labels.purchase_filter=.*not understood"):
            parse_purchase_filter(bad)
    with pytest.raises(ConfigError, match="'channel', which is not one of the event fields"):
        check_purchase_filter("channel == web", SCHEMA)
    with pytest.raises(UserError, match=r"matches no event at all: 'event_type' holds \['order', 'purchase', 'view'\]"):
        _labels("event_type == purchse")


def _customers(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.arange(n) + 100
    events = pd.DataFrame({"customer_id": np.repeat(ids, 2), "ts": pd.Timestamp("2025-01-01") + pd.to_timedelta(
        rng.integers(0, 60 * 86400, 2 * n), unit="s"), "event_type": "purchase", "amount": rng.lognormal(3, 1, 2 * n)})
    rep = rng.standard_normal((n, 4))
    buy = (rng.random(n) < 1 / (1 + np.exp(-2 * rep[:, 0]))).astype(float)
    return ids, rep, events, buy


def test_a_complementary_label_is_modelled_and_shown_once():
    ids, rep, events, buy = _customers()
    labels = pd.DataFrame({"customer_id": ids, "purchase_within_30d": buy, "churn_30d": 1 - buy})
    out = evaluate_propensity(ids, rep, labels, events, SCHEMA, {"kind": "logistic"}, seed=0)
    m = out["metrics"]
    assert m["labels"]["binary"] == ["purchase_within_30d"] and list(m["outcomes"]) == ["purchase_within_30d"]
    note = m["labels"]["complements"]["churn_30d"]
    assert "churn_30d is exactly 1 - purchase_within_30d" in note and "modelled and shown once" in note
    assert "p_churn_30d" not in out["scores"] and not any("churn" in c for c in out["candidate_scores"])
    assert any(line.startswith("churn_30d: churn_30d is exactly 1 - purchase_within_30d") for line in verdict_lines(m))


def test_a_label_with_one_class_is_skipped_with_no_score_and_no_tier():
    ids, rep, events, buy = _customers()
    n = len(ids)
    splits = np.repeat(np.array([0, 1, 2], dtype=np.int8), [n - 1000, 500, 500])
    only_train = np.where(splits == 2, 0.0, buy)  # one class among the test customers only
    labels = pd.DataFrame({"customer_id": ids, "buy": buy, "never": 0.0, "untestable": only_train})
    out = evaluate_propensity(ids, rep, labels, events, SCHEMA, {"kind": "logistic"}, seed=0, splits=splits)
    m = out["metrics"]
    assert m["labels"]["binary"] == ["buy"]
    assert m["labels"]["skipped"]["never"].startswith(f"only one class (all 0) among the {n} labelled customers")
    assert m["labels"]["skipped"]["untestable"].startswith("only one class (all 0) among the 500 labelled customers of the test split")
    assert "no p_untestable column, no tier" in m["labels"]["skipped"]["untestable"]
    assert set(out["scores"].columns) == {"customer_id", "split", "p_buy"}
    assert any(line.startswith("never: skipped: only one class") for line in verdict_lines(m))
    clusters = pd.DataFrame({"customer_id": ids, "cluster": 0, "subsegment": 0, "membership_strength": 1.0,
                             "is_core": True, "outlier_score": 0.0, "is_outlier": False})
    customers = build_customers(clusters, out["scores"].drop(columns=["split"]))
    assert [c for c in customers.columns if c.startswith(("p_", "tier_"))] == ["p_buy", "tier_buy"]
