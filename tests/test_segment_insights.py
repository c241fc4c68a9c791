import json
import re

import numpy as np
import pandas as pd
import pytest

from eventseg.segmentation.insights import (observed_outcomes, segment_insights, segment_rules, suggest_actions,
                                       top_values)
from eventseg.segmentation.profiles import OUTLIERS, build_customers, profile_segments


def _customers(segment, subsegment, ids=None):
    """The columns the insights read from the customers table (outliers: -1 at both levels)."""
    segment, subsegment = np.asarray(segment), np.asarray(subsegment)
    ids = np.arange(len(segment)) + 100 if ids is None else np.asarray(ids)
    return pd.DataFrame({"customer_id": ids, "segment": segment.astype(np.int64),
                         "subsegment": subsegment.astype(np.int64), "is_outlier": segment == OUTLIERS})


def _row(table, level, segment):
    rows = table[(table["level"] == level) & (table["segment"] == segment)]
    assert len(rows) == 1, (level, segment)
    return rows.iloc[0]


# ---------------------------------------------------------------------------------------------
# observed outcomes


def _observed_inputs():
    """Broad 0 = micro 0 + micro 1, broad 1 = micro 2, and two outliers.

    Eval customers of broad 0: ten with a purchase flag (3 bought, all in micro 0) plus one
    whose flag is missing; six more broad-0 customers are training customers who all bought.
    """
    segment = [0] * 17 + [1] * 6 + [-1] * 2
    subsegment = [0] * 8 + [1] * 9 + [2] * 6 + [-1] * 2
    customers = _customers(segment, subsegment)
    ids = customers["customer_id"].to_numpy()
    bought = np.array([1, 1, 1, 0, 0, 0, 0, 0] + [0, 0, np.nan] + [1] * 6 + [1, 0, 0, 0, 0, 0] + [1, 0], dtype=float)
    spend = np.array([10, 20, 30, 40, 0, 0, 0, 0] + [5, 5, 7] + [500] * 6 + [1, 2, 3, 4, 5, 6] + [50, 60], dtype=float)
    outcomes = pd.DataFrame({"purchase_30d": bought, "spend_30d": spend}, index=pd.Index(ids, name="customer_id"))
    train = ids[11:17]
    eval_ids = np.setdiff1d(ids, train)
    return customers, outcomes, eval_ids


def test_observed_rate_and_wilson_interval_match_a_hand_computation():
    customers, outcomes, eval_ids = _observed_inputs()
    table = observed_outcomes(customers, outcomes, eval_ids)
    broad0 = _row(table, "broad", 0)
    # 3 of 10 eval customers bought (the one without a flag is not counted): p = 0.3, n = 10;
    # Wilson: centre (0.3 + 1.96²/20) / (1 + 1.96²/10) = 0.35551, half-width 0.24772
    assert broad0["observed_purchase_30d"] == pytest.approx(0.3)
    assert broad0["observed_purchase_30d_lo"] == pytest.approx(0.1078, abs=1e-4)
    assert broad0["observed_purchase_30d_hi"] == pytest.approx(0.6032, abs=1e-4)
    assert broad0["observed_n"] == 11  # the customer without a flag still has a spend
    # all eval customers: 3 + 1 + 1 bought out of 10 + 6 + 2 with a flag
    assert broad0["observed_lift_purchase_30d"] == pytest.approx(0.3 / (5 / 18))
    # spend: a mean with a normal interval over the 11 eval customers of broad 0
    spend = np.array([10, 20, 30, 40, 0, 0, 0, 0, 5, 5, 7], dtype=float)
    half = 1.96 * spend.std(ddof=1) / np.sqrt(11)
    assert broad0["observed_spend_30d"] == pytest.approx(spend.mean())
    assert broad0["observed_spend_30d_lo"] == pytest.approx(spend.mean() - half)
    assert broad0["observed_spend_30d_hi"] == pytest.approx(spend.mean() + half)
    # a rate of 0 keeps a Wilson interval above 0 and inside [0, 1]
    micro1 = _row(table, "micro", 1)
    assert micro1["observed_purchase_30d"] == 0 and micro1["observed_purchase_30d_lo"] == pytest.approx(0, abs=1e-12)
    assert 0 < micro1["observed_purchase_30d_hi"] < 1


def test_only_eval_customers_count():
    customers, outcomes, eval_ids = _observed_inputs()
    table = observed_outcomes(customers, outcomes, eval_ids)
    flipped = outcomes.copy()
    train = ~outcomes.index.isin(eval_ids)
    flipped.loc[train, ["purchase_30d", "spend_30d"]] = [0.0, -1e6]  # training outcomes must change nothing
    pd.testing.assert_frame_equal(table, observed_outcomes(customers, flipped, eval_ids))
    everyone = observed_outcomes(customers, outcomes, None)
    assert _row(everyone, "broad", 0)["observed_purchase_30d"] == pytest.approx(9 / 16)
    assert _row(table, "broad", 0)["observed_purchase_30d"] == pytest.approx(0.3)


def test_observed_rows_at_both_levels_with_the_outliers_only_broad():
    customers, outcomes, eval_ids = _observed_inputs()
    table = observed_outcomes(customers, outcomes, eval_ids)
    assert list(zip(table["level"], table["segment"])) == [("broad", 0), ("broad", 1), ("broad", -1),
                                                           ("micro", 0), ("micro", 1), ("micro", 2)]
    assert table["observed_n"].dtype == np.int64
    assert _row(table, "micro", 0)["observed_purchase_30d"] == pytest.approx(3 / 8)
    outliers = _row(table, "broad", OUTLIERS)
    assert outliers["observed_n"] == 2 and outliers["observed_purchase_30d"] == pytest.approx(0.5)
    assert np.isfinite(outliers["observed_purchase_30d_lo"])


def test_fewer_than_two_customers_give_no_interval():
    customers, outcomes, _ = _observed_inputs()
    one = customers["customer_id"].to_numpy()[[0, 17, 18]]  # one eval customer in micro 0, two in broad 1
    table = observed_outcomes(customers, outcomes, one)
    micro0 = _row(table, "micro", 0)
    assert micro0["observed_n"] == 1 and micro0["observed_purchase_30d"] == 1.0
    assert np.isnan(micro0["observed_purchase_30d_lo"]) and np.isnan(micro0["observed_spend_30d_hi"])
    nobody = _row(table, "micro", 1)
    assert nobody["observed_n"] == 0 and np.isnan(nobody["observed_purchase_30d"])


# ---------------------------------------------------------------------------------------------
# rules


def _rule_inputs(n=3000, seed=0):
    """Broad 0 is exactly the customers seen in the last 10 days; broad 1 shops in the evening;
    broad 2 is the rest. Every other feature is noise."""
    rng = np.random.default_rng(seed)
    recency = rng.uniform(0, 100, n)
    evening = rng.uniform(0, 1, n)
    segment = np.where(recency <= 10, 0, np.where(evening > 0.6, 1, 2))
    customers = _customers(segment, segment)
    tenure = rng.uniform(100, 600, n)
    active = rng.integers(1, 60, n).astype(float)
    features = pd.DataFrame({
        "recency_days": recency, "tenure_days": tenure, "n_events": active * 2, "active_days": active,
        "events_per_30d": 60 * active / tenure, "amount_sum": active * rng.uniform(5, 50, n),
        "amount_mean": rng.uniform(5, 50, n), "amount_n": active, "trend_log_ratio": rng.normal(0, 0.5, n),
        "share_evening": evening, "share_morning": 1 - evening, "share_weekend": rng.uniform(0, 0.5, n),
        "share_category_toys": rng.uniform(0, 0.5, n), "share_category___other__": rng.uniform(0, 0.5, n),
    }, index=pd.Index(customers["customer_id"].to_numpy(), name="customer_id"))
    return customers, features


def test_a_planted_recency_segment_gets_a_recency_rule():
    customers, features = _rule_inputs()
    rules = segment_rules(customers, features)
    assert list(rules["level"]) == ["broad"] * 3 and list(rules["segment"]) == [0, 1, 2]
    recent = _row(rules, "broad", 0)
    assert re.fullmatch(r"recency ≤ \d+(\.\d+)? days", recent["rule"]), recent["rule"]
    assert recent["rule_precision"] > 0.8 and recent["rule_recall"] > 0.8
    evening = _row(rules, "broad", 1)
    assert "evening share > " in evening["rule"] and "%" in evening["rule"]


def test_rule_numbers_are_those_of_the_rounded_rule_on_all_customers():
    customers, features = _rule_inputs()
    rules = segment_rules(customers, features, sample_size=800, seed=3)  # fitted on a sample, scored on all
    recent = _row(rules, "broad", 0)
    cut = float(re.search(r"≤ ([\d.]+) days", recent["rule"])[1])
    hit = features["recency_days"].to_numpy() <= cut
    truth = customers["segment"].to_numpy() == 0
    assert recent["rule_precision"] == pytest.approx((hit & truth).sum() / hit.sum())
    assert recent["rule_recall"] == pytest.approx((hit & truth).sum() / truth.sum())
    pd.testing.assert_frame_equal(rules, segment_rules(customers, features, sample_size=800, seed=3))


def test_outliers_get_no_rule_and_a_hopeless_segment_keeps_its_rule_text():
    customers, features = _rule_inputs()
    rng = np.random.default_rng(1)
    customers.loc[rng.random(len(customers)) < 0.05, ["segment", "subsegment"]] = OUTLIERS
    noise = rng.random(len(customers)) < 0.1  # broad 3: a random tenth, nothing describes it
    customers.loc[noise & (customers["segment"] != OUTLIERS), ["segment", "subsegment"]] = 3
    rules = segment_rules(customers, features)
    assert OUTLIERS not in set(rules["segment"])
    random = _row(rules, "broad", 3)
    assert isinstance(random["rule"], str) and random["rule"]
    assert random["rule_precision"] < 0.3


# ---------------------------------------------------------------------------------------------
# top values and timing


def _value_inputs():
    """Six customers: broad 0 (micro 0, 1) over-indexes on groceries and app; broad 1 on toys
    and evenings. `share_category_rare` is above everyone's only in broad 1 but is rare overall."""
    customers = _customers([0, 0, 0, 1, 1, 1], [0, 0, 1, 2, 2, 2])
    features = pd.DataFrame({
        "n_events": [100.0, 200.0, 300.0, 50.0, 50.0, 100.0],
        "share_category_groceries": [0.6, 0.8, 0.7, 0.1, 0.2, 0.3],
        "share_category_toys": [0.1, 0.0, 0.1, 0.6, 0.5, 0.7],
        "share_category_rare": [0.0, 0.0, 0.0, 0.02, 0.03, 0.04],
        "share_category___other__": [0.3, 0.2, 0.2, 0.28, 0.27, 0.26],
        "share_channel_app": [0.9, 0.9, 0.9, 0.5, 0.5, 0.5],
        "share_evening": [0.1, 0.1, 0.1, 0.5, 0.6, 0.7],
        "share_morning": [0.9, 0.9, 0.9, 0.5, 0.4, 0.3],
        "share_weekend": [0.3, 0.3, 0.3, 0.3, 0.3, 0.3],
    }, index=pd.Index(customers["customer_id"].to_numpy(), name="customer_id"))
    return customers, features


def _parsed(text):
    """"category groceries 430 events (x1.6); ..." -> [("category groceries", 430, 1.6), ...]"""
    parts = [re.fullmatch(r"(.+) ([\d,]+) events \(x([\d.]+)\)", part) for part in text.split("; ")]
    return [(m[1], int(m[2].replace(",", "")), float(m[3])) for m in parts]


def test_top_values_counts_and_index_match_a_hand_computation():
    customers, features = _value_inputs()
    table = top_values(customers, features)
    broad0 = _parsed(_row(table, "broad", 0)["top_values"])
    # groceries: 0.6·100 + 0.8·200 + 0.7·300 = 430 events; mean share 0.7 over 0.45 overall (x1.56)
    # app: 0.9·600 = 540 events; 0.9 over 0.7 overall (x1.29)
    assert broad0 == [("category groceries", 430, 1.6), ("channel app", 540, 1.3)]
    broad1 = _parsed(_row(table, "broad", 1)["top_values"])
    # toys: 0.6·50 + 0.5·50 + 0.7·100 = 125 events, 0.6 over 1/3 overall (x1.8);
    # the rare value (x2 but 1.5% overall, under 2%) is not listed
    assert broad1 == [("category toys", 125, 1.8)]
    assert "other" not in " ".join(table["top_values"])
    micro1 = _parsed(_row(table, "micro", 1)["top_values"])
    assert micro1[0] == ("category groceries", 210, 1.6)  # customer 3 alone: 0.7·300 events


def test_timing_picks_the_planted_time_share():
    customers, features = _value_inputs()
    table = top_values(customers, features)
    # broad 1 evening events: 25 + 30 + 70 = 125 of 200 (62%); all customers: 185 of 800 (23%)
    assert _row(table, "broad", 1)["timing"] == "evenings (62% of events vs 23%)"
    # broad 0 leans to mornings: 540 of 600 (90%) vs 655 of 800 (82%): under x1.2, nothing stands out
    assert _row(table, "broad", 0)["timing"] == ""
    assert "weekend" not in " ".join(table["timing"])


def test_thousands_are_written_with_separators():
    customers, features = _value_inputs()
    features["n_events"] *= 10
    assert _row(top_values(customers, features), "broad", 0)["top_values"].startswith("category groceries 4,300 events")


# ---------------------------------------------------------------------------------------------
# actions


def _profiles():
    """One planted segment profile per action branch (ratios vs all customers, lifts vs the mean)."""
    base = {"level": "broad", "visits_vs_all": 1.0, "basket_vs_all": 1.0, "recency_vs_all": 1.0, "tenure_vs_all": 1.0,
            "mean_p_churn_90d": 0.2, "lift_churn_90d": 1.0, "mean_p_purchase_within_30d": 0.3,
            "lift_purchase_within_30d": 1.0}
    planted = {
        "outliers": {"segment": OUTLIERS, "basket_vs_all": 3.0, "lift_churn_90d": 2.0},
        "big basket, churn risk": {"basket_vs_all": 1.8, "lift_churn_90d": 1.4},
        "frequent, lapsing": {"visits_vs_all": 1.6, "recency_vs_all": 2.0},
        "new": {"tenure_vs_all": 0.3, "lift_churn_90d": 1.3},
        "lapsing, small": {"recency_vs_all": 2.5, "basket_vs_all": 0.6},
        "recent buyers": {"recency_vs_all": 0.5, "lift_purchase_within_30d": 1.5},
        "average": {"lift_purchase_within_30d": 1.2},
        "big basket, steady": {"basket_vs_all": 2.2},
    }
    rows = [{**base, "segment": i, **change} for i, change in enumerate(planted.values())]
    return pd.DataFrame(rows, index=list(planted))


def test_each_action_branch_fires_on_its_planted_profile():
    actions = suggest_actions(_profiles())
    assert actions.name == "action" and list(actions.index) == list(_profiles().index)
    assert actions["outliers"].startswith("review individually")
    assert actions["big basket, churn risk"].startswith("retention offer: high value at risk (")
    assert "basket x1.8" in actions["big basket, churn risk"] and "churn risk x1.4" in actions["big basket, churn risk"]
    assert actions["frequent, lapsing"].startswith("retention offer: high value at risk (visits x1.6, recency x2.0")
    assert actions["new"].startswith("onboarding journey (new: tenure x0.3")
    assert actions["lapsing, small"].startswith("low-cost win-back or suppress (at risk, not high value: recency x2.5")
    assert actions["recent buyers"].startswith("cross-sell / upsell: already buying (")
    assert "purchase propensity x1.5" in actions["recent buyers"]
    assert actions["average"].startswith("nurture with regular newsletters")
    assert actions["big basket, steady"].startswith("loyalty / VIP programme: high value, not at risk (basket x2.2")


def test_observed_lift_stands_in_for_a_missing_prediction():
    profiles = _profiles().drop(columns=["mean_p_churn_90d", "lift_churn_90d"])
    profiles["observed_lift_churn_90d"] = 1.0
    profiles.loc["average", ["basket_vs_all", "observed_lift_churn_90d"]] = [2.0, 1.6]
    action = suggest_actions(profiles)["average"]
    assert action.startswith("retention offer: high value at risk") and "observed churn risk x1.6" in action
    # labels are read by name: without any churn label a big basket alone is no risk
    assert suggest_actions(_profiles().drop(columns=["mean_p_churn_90d", "lift_churn_90d"]))[
        "big basket, churn risk"].startswith("loyalty / VIP programme")


# ---------------------------------------------------------------------------------------------
# all together


def _pipeline_like(n=600, seed=0):
    """customers and segments as the pipeline builds them (build_customers, profile_segments)."""
    customers, features = _rule_inputs(n, seed)
    rng = np.random.default_rng(seed + 1)  # not the stream that drew recency: outliers independent of it
    segment = customers["segment"].to_numpy().copy()
    segment[rng.random(n) < 0.05] = OUTLIERS
    micro = np.where(segment == OUTLIERS, OUTLIERS, 2 * segment + (rng.random(n) < 0.5))
    clusters = pd.DataFrame({
        "customer_id": customers["customer_id"], "cluster": segment, "subsegment": micro,
        "membership_strength": rng.random(n), "is_core": segment != OUTLIERS, "outlier_score": rng.random(n),
        "is_outlier": segment == OUTLIERS})
    p = np.clip(np.where(segment == 0, 0.6, 0.2) + rng.normal(0, 0.05, n), 0, 1)
    scores = pd.DataFrame({"customer_id": customers["customer_id"], "p_churn_30d": 1 - p, "p_purchase_30d": p})
    customers = build_customers(clusters, scores)
    return customers, features, profile_segments(customers, features, "amount_sum")


def test_segment_insights_appends_columns_and_keeps_row_order():
    customers, features, segments = _pipeline_like()
    shuffled = segments.sample(frac=1.0, random_state=2)
    rng = np.random.default_rng(5)
    ids = customers["customer_id"].to_numpy()
    outcomes = pd.DataFrame({"purchase_30d": (rng.random(len(ids)) < 0.3).astype(int),
                             "spend_30d": rng.gamma(2, 10, len(ids))}, index=ids)
    out = segment_insights(customers, shuffled, features, outcomes=outcomes, eval_ids=ids[::3])
    assert list(out.columns[: len(segments.columns)]) == list(segments.columns)
    pd.testing.assert_frame_equal(out[segments.columns], shuffled)
    for col in ("top_values", "timing", "rule", "rule_precision", "rule_recall", "observed_n",
                "observed_purchase_30d", "observed_purchase_30d_lo", "observed_lift_spend_30d", "action"):
        assert col in out.columns
    observed = observed_outcomes(customers, outcomes, ids[::3]).set_index(["level", "segment"])
    for (level, seg), row in out.set_index(["level", "segment"]).iterrows():
        assert row["observed_n"] == observed.loc[(level, seg), "observed_n"]
        assert isinstance(row["action"], str) and row["action"]
        assert (level == "broad" and seg != OUTLIERS) == isinstance(row["rule"], str)
    assert _row(out, "broad", OUTLIERS)["action"].startswith("review individually")
    assert "recency" in _row(out, "broad", 0)["rule"]
    # run again on its own output: the insight columns are replaced, not doubled
    again = segment_insights(customers, out, features, outcomes=outcomes, eval_ids=ids[::3])
    assert list(again.columns) == list(out.columns)
    assert not [c for c in segment_insights(customers, out, features).columns if c.startswith("observed")]


def test_segment_insights_is_json_friendly_and_has_no_observed_columns_without_outcomes():
    customers, features, segments = _pipeline_like()
    out = segment_insights(customers, segments, features)
    assert not [c for c in out.columns if c.startswith("observed")]
    for col in out.columns:
        dtype = out[col].dtype
        if pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
            continue
        assert pd.api.types.is_string_dtype(dtype), (col, dtype)  # text only, no arrays or dicts
        assert all(isinstance(v, str) for v in out[col].dropna()), col
    records = json.loads(out.to_json(orient="records"))
    assert len(records) == len(segments) and isinstance(records[0]["action"], str)
