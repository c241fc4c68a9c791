import re

import numpy as np
import pandas as pd
import pytest

from eventseg.segmentation.profiles import OUTLIERS, attach_names, build_customers, profile_segments

MICRO_OF_BROAD = {0: [0, 1], 1: [2, 3], 2: [4, 5]}


def _inputs(n=300, seed=0, outlier_share=0.04):
    """Three broad segments of two micro segments each (micro m sits in broad m // 2):

    broad 0: weekly regulars, $40 basket; micro 1 shops in the app.
    broad 2: behaves like broad 0 but is mostly in Germany (the share is the main difference).
    broad 1: lapsing occasional small-basket buyers who also over-index on toys (behaviour is
             the main difference); micro 3 has a $4.5 basket and shops at night.
    """
    rng = np.random.default_rng(seed)
    ids = np.arange(n) + 10
    micro = np.arange(n) * 6 // n
    broad = micro // 2
    outlier = rng.random(n) < outlier_share
    clusters = pd.DataFrame({
        "customer_id": ids,
        "cluster": np.where(outlier, -1, broad).astype(np.int32),
        "subsegment": np.where(outlier, -1, micro).astype(np.int32),
        "membership_strength": rng.random(n).astype(np.float32),
        "is_core": (rng.random(n) < 0.7) & ~outlier,
        "outlier_score": rng.random(n).astype(np.float32),
        "is_outlier": outlier,
    })
    lapsing = broad == 1
    tenure = 300.0 + rng.normal(0, 5, n)
    active = np.where(lapsing, np.maximum(np.round(4 + rng.normal(0, 1, n)), 1), np.round(40 + rng.normal(0, 2, n)))
    basket = np.select([micro == 3, micro == 2], [4.5, 12.0], 40.0) + rng.normal(0, 0.2, n)
    germany = np.where(broad == 2, 0.7, 0.1)
    toys = np.where(lapsing, 0.6, 0.1)
    app = np.select([micro == 1, micro == 5], [0.8, 0.7], 0.2)
    night = np.where(micro == 3, 0.5, 0.1)
    features = pd.DataFrame({
        "recency_days": np.where(lapsing, 120.0, 5.0) + rng.random(n) * 5, "tenure_days": tenure, "n_events": active * 1.5,
        "active_days": active, "events_per_30d": 45 * active / tenure, "amount_sum": basket * active,
        "share_country_Germany": germany, "share_country_France": 1 - germany,
        "share_category_Toys": toys, "share_category_Books": 0.9 - toys, "share_category___other__": 0.1,
        "share_channel_app": app, "share_channel_web": 1 - app, "share_night": night, "share_morning": 1 - night,
    }, index=pd.Index(ids, name="customer_id"))
    p_purchase = np.clip(np.where(lapsing, 0.15, 0.6) + rng.normal(0, 0.05, n), 0, 1)
    scores = pd.DataFrame({"customer_id": ids, "p_churn_30d": 1 - p_purchase, "p_purchase_within_30d": p_purchase})
    return clusters, scores, features


def _profiled(monetary="amount_sum", **kw):
    clusters, scores, features = _inputs(**kw)
    customers = build_customers(clusters, scores)
    return customers, features, profile_segments(customers, features, monetary)


def _rows(segments, level):
    return segments[segments["level"] == level].set_index("segment")


def test_every_customer_once_with_outliers_as_minus_one():
    clusters, scores, _ = _inputs()
    customers = build_customers(clusters.sample(frac=1, random_state=1), scores)
    assert list(customers.columns[:8]) == ["customer_id", "cluster", "segment", "subsegment", "membership_strength",
                                           "is_core", "outlier_score", "is_outlier"]
    assert len(customers) == len(clusters) and customers["customer_id"].is_unique
    assert set(customers["customer_id"]) == set(clusters["customer_id"])
    assert customers["segment"].dtype == np.int64 and (customers["segment"] == customers["cluster"]).all()
    outliers = customers[customers["is_outlier"]]
    assert len(outliers) and (outliers["segment"] == OUTLIERS).all() and (outliers["subsegment"] == OUTLIERS).all()
    assert set(customers["tier_churn_30d"].dropna()) == {"low", "medium", "high"}


def test_customers_without_scores_are_kept():
    clusters, scores, _ = _inputs()
    customers = build_customers(clusters, scores.iloc[10:])
    assert len(customers) == len(clusters) and customers["p_churn_30d"].isna().sum() == 10


def test_cluster_output_that_breaks_the_two_level_contract_is_refused():
    clusters, _, _ = _inputs()
    old = clusters.drop(columns=["subsegment", "is_core", "is_outlier"]).assign(is_noise=clusters["is_outlier"])
    with pytest.raises(ValueError, match="lack"):
        build_customers(old)
    with pytest.raises(ValueError, match="exactly for outliers"):
        build_customers(clusters.assign(is_outlier=False))
    spanning = clusters.copy()
    spanning.loc[(spanning["cluster"] == 0).idxmax(), "subsegment"] = 2  # micro 2 now also in broad 0
    with pytest.raises(ValueError, match=r"micro segments \[2\] span several broad segments"):
        build_customers(spanning)


def test_one_table_with_broad_rows_then_micro_rows_under_their_parent():
    customers, _, segments = _profiled()
    assert list(segments.columns[:6]) == ["level", "segment", "parent", "name", "size", "share"]
    assert segments["segment"].dtype == np.int64 and segments["parent"].dtype == np.int64
    assert list(segments["level"]) == ["broad"] * 4 + ["micro"] * 6  # three broad + outliers, then six micro
    broad, micro = _rows(segments, "broad"), _rows(segments, "micro")
    assert list(broad.index) == [0, 1, 2, OUTLIERS] and (broad["parent"] == -1).all()
    assert list(micro.index) == [0, 1, 2, 3, 4, 5]
    assert {m: p for m, p in micro["parent"].items()} == {m: b for b, ms in MICRO_OF_BROAD.items() for m in ms}
    assert broad["size"].sum() == len(customers)
    assert micro["size"].sum() == (~customers["is_outlier"]).sum()
    for b, ms in MICRO_OF_BROAD.items():  # a parent is exactly its micro segments
        assert micro.loc[ms, "size"].sum() == broad.loc[b, "size"]
    assert broad.loc[OUTLIERS, "name"] == "Outliers"
    assert broad.loc[OUTLIERS, "size"] == customers["is_outlier"].sum()
    assert np.isclose(broad["share"].sum(), 1.0)


def test_no_outliers_row_without_outliers():
    _, _, segments = _profiled(outlier_share=0.0)
    assert OUTLIERS not in set(segments["segment"]) and "Outliers" not in set(segments["name"])


def test_names_carry_the_measured_numbers():
    customers, features, segments = _profiled()
    broad = _rows(segments, "broad")
    feats = features.reindex(customers["customer_id"])
    visits = pd.Series(30 * feats["active_days"].to_numpy() / np.maximum(feats["tenure_days"].to_numpy(), 30))
    for seg in (0, 1, 2):
        expected = visits[(customers["segment"] == seg).to_numpy()].median()
        assert f"· {expected:.1f} visits/month" in broad.loc[seg, "name"]
        assert np.isclose(broad.loc[seg, "visits_per_month"], expected)
    assert broad.loc[0, "name"].startswith("Weekly regulars · ")
    status = "Dormant" if broad.loc[1, "recency_vs_all"] >= 3 else "Lapsing"  # 3x / 1.5x the median recency
    assert broad.loc[1, "recency_vs_all"] >= 1.5
    assert broad.loc[1, "name"].startswith(f"{status} occasional small-basket buyers · ")
    assert re.search(r"· \$\d\d per visit", broad.loc[0, "name"])  # $10 and above: no decimals
    assert re.search(r"· \$4\.\d per visit", _rows(segments, "micro").loc[3, "name"])  # below $10 the decimals tell
    purchase = broad.loc[1, "mean_p_purchase_within_30d"]
    assert broad.loc[1, "name"].endswith(f"· {purchase:.0%} likely to buy in 30 days")
    assert "churn" not in " ".join(segments["name"])
    assert broad.loc[1, "recency_vs_all"] > 1.5 and broad.loc[1, "basket_vs_all"] < 0.6
    assert broad.loc[1, "lift_churn_30d_lo"] > 1.2


def test_new_big_basket_customers_are_called_so():
    clusters, scores, features = _inputs()
    joined = (clusters["cluster"] == 0).to_numpy()  # broad 0 joined two months ago, same weekly rhythm, triple basket
    features.loc[joined, ["tenure_days", "active_days"]] = [60.0, 8.0]
    features.loc[joined, "amount_sum"] = 120.0 * 8
    broad = _rows(profile_segments(build_customers(clusters, scores), features, "amount_sum"), "broad")
    assert broad.loc[0, "name"].startswith("New weekly big-basket customers · 4.0 visits/month · $120 per visit")


def test_a_share_names_a_segment_only_when_it_is_the_main_difference():
    _, _, segments = _profiled()
    broad = _rows(segments, "broad")
    # broad 2 behaves like everyone (all ratios within 25%): Germany is what sets it apart
    assert all(abs(broad.loc[2, f"{x}_vs_all"] - 1) <= 0.25 for x in ("visits", "basket", "recency", "tenure"))
    assert "country Germany x" in broad.loc[2, "name"]
    # broad 1 over-indexes on toys as strongly, but lapsing and small baskets are the story
    assert broad.loc[1, "over_indexed"].startswith("category Toys x")
    assert "Toys" not in broad.loc[1, "name"]
    # broad 0 leans towards the app only mildly (below 1.5x): no share in its name
    assert "channel app" in broad.loc[0, "over_indexed"] and "channel app" not in broad.loc[0, "name"]


def test_names_are_unique_per_level_and_micro_names_tell_siblings_apart():
    _, _, segments = _profiled()
    for _, rows in segments.groupby("level"):
        assert rows["name"].is_unique
    assert not segments["name"].str.contains("#").any()  # the id suffix is a last resort, not needed here
    micro = _rows(segments, "micro")
    behaviour_and_share = micro["name"].str.replace(r" · \d+% likely to buy.*$", "", regex=True)
    for parent, siblings in behaviour_and_share.groupby(micro["parent"]):
        assert siblings.is_unique, parent
    assert "channel app x" in micro.loc[1, "name"] and "night x" in micro.loc[3, "name"]
    assert "country Germany x" in micro.loc[5, "name"] and "channel app x" in micro.loc[5, "name"]


def test_segments_alike_in_every_measure_are_told_apart_by_id():
    clusters, scores, features = _inputs()
    features["share_country_Germany"] = 0.3  # broad 0 and 2 now differ in nothing the name shows
    customers = build_customers(clusters, scores.drop(columns=["p_purchase_within_30d"]))
    broad = _rows(profile_segments(customers, features, "amount_sum"), "broad")
    assert broad.loc[0, "name"].endswith(" #0") and broad.loc[2, "name"].endswith(" #2")
    assert broad.loc[0, "name"].removesuffix(" #0") == broad.loc[2, "name"].removesuffix(" #2")
    assert "#" not in broad.loc[1, "name"]


def test_without_monetary_the_basket_is_left_out():
    _, _, segments = _profiled(monetary=None)
    assert segments["basket"].isna().all() and segments["basket_vs_all"].isna().all()
    assert not segments["name"].str.contains("per visit").any()
    assert _rows(segments, "broad").loc[0, "name"].startswith("Weekly regulars · ")


def test_attach_names_adds_broad_and_micro_names():
    customers, _, segments = _profiled()
    named = attach_names(customers, segments)
    cols = list(named.columns)
    assert cols.index("segment_name") == cols.index("segment") + 1
    assert cols.index("subsegment_name") == cols.index("subsegment") + 1
    assert named["segment_name"].notna().all() and named["subsegment_name"].notna().all()
    one = named[named["subsegment"] == 3].iloc[0]
    assert one["segment_name"] == _rows(segments, "broad").loc[1, "name"]
    assert one["subsegment_name"] == _rows(segments, "micro").loc[3, "name"]
    assert (named.loc[named["is_outlier"], ["segment_name", "subsegment_name"]] == "Outliers").all().all()


def test_names_and_profiles_are_deterministic():
    clusters, scores, features = _inputs()
    a = profile_segments(build_customers(clusters, scores), features, "amount_sum")
    b = profile_segments(build_customers(clusters.sample(frac=1, random_state=3), scores), features, "amount_sum")
    pd.testing.assert_frame_equal(a, b)
