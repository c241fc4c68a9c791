import numpy as np
import pandas as pd

from eventseg.segments import UNSEGMENTED, attach_names, build_customers, profile_segments


def _inputs(n=300, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.arange(n) + 10
    cluster = np.repeat([0, 1, 2], n // 3)
    noise = rng.random(n) < 0.1
    clusters = pd.DataFrame({"customer_id": ids, "cluster": np.where(noise, -1, cluster),
                             "membership_strength": rng.random(n), "outlier_score": rng.random(n), "is_noise": noise})
    # segment 1: lapsing big spenders with high churn; segment 2: frequent night shoppers
    recency = np.where(cluster == 1, 120.0, 10.0) + rng.random(n)
    n_events = np.where(cluster == 2, 80.0, 20.0) + rng.integers(0, 3, n)
    amount = np.where(cluster == 1, 900.0, 100.0) + rng.random(n)
    night = np.where(cluster == 2, 0.6, 0.1)
    features = pd.DataFrame({"recency_days": recency, "n_events": n_events, "amount_sum": amount, "tenure_days": 200.0,
                             "share_night": night, "share_morning": 1 - night, "share_category___other__": 0.5},
                            index=pd.Index(ids, name="customer_id"))
    p_churn = np.clip(np.where(cluster == 1, 0.7, 0.2) + rng.normal(0, 0.05, n), 0, 1)
    scores = pd.DataFrame({"customer_id": ids, "p_churn_30d": p_churn, "p_purchase_within_30d": 1 - p_churn})
    return clusters, scores, features


def test_every_customer_once_with_noise_as_unsegmented():
    clusters, scores, _ = _inputs()
    customers = build_customers(clusters.sample(frac=1, random_state=1), scores)
    assert len(customers) == len(clusters) and customers["customer_id"].is_unique
    assert set(customers["customer_id"]) == set(clusters["customer_id"])
    noise = clusters.set_index("customer_id")["is_noise"]
    assert (customers.set_index("customer_id")["segment"][noise[noise].index] == UNSEGMENTED).all()
    assert set(customers["tier_churn_30d"].dropna()) == {"low", "medium", "high"}


def test_customers_without_scores_are_kept():
    clusters, scores, _ = _inputs()
    customers = build_customers(clusters, scores.iloc[10:])
    assert len(customers) == len(clusters) and customers["p_churn_30d"].isna().sum() == 10


def test_profiles_and_names_describe_what_was_planted():
    clusters, scores, features = _inputs()
    customers = build_customers(clusters, scores)
    segments = profile_segments(customers, features, monetary="amount_sum").set_index("segment")
    assert segments.loc[1, "recency_vs_all"] > 1.5 and segments.loc[1, "monetary_vs_all"] > 1.5
    assert segments.loc[1, "lift_churn_30d_lo"] > 1.2
    assert segments.loc[1, "name"].startswith("Lapsing high spenders") and "churn risk high" in segments.loc[1, "name"]
    assert segments.loc[2, "name"].startswith("Frequent customers · night")
    assert segments.loc[UNSEGMENTED, "name"] == "Unsegmented"
    assert segments["size"].sum() == len(customers)
    assert segments["name"].is_unique


def test_names_and_profiles_are_deterministic():
    clusters, scores, features = _inputs()
    a = profile_segments(build_customers(clusters, scores), features, "amount_sum")
    b = profile_segments(build_customers(clusters.sample(frac=1, random_state=3), scores), features, "amount_sum")
    pd.testing.assert_frame_equal(a, b)
    named = attach_names(build_customers(clusters, scores), a)
    assert named["segment_name"].notna().all()
