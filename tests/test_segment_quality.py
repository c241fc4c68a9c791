"""η² of segmentations: the definition, the analyst's RFM k-means, propensity tiers, paired comparisons."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from eventseg.segmentation.predictiveness import (
    compare_segmentations, eta_squared, propensity_tiers, rfm_kmeans_groups, segment_predictiveness,
)


def _eta2_by_hand(groups, y):
    """Straight from the definition, one group at a time."""
    groups, y = np.asarray(groups), np.asarray(y, dtype=float)
    mean = y.mean()
    between = sum((groups == g).sum() * (y[groups == g].mean() - mean) ** 2 for g in np.unique(groups))
    return between / ((y - mean) ** 2).sum()


# --- eta_squared ---------------------------------------------------------------------------------


def test_eta_squared_hand_made_case():
    # means 2 and 6 around 4: between = 2*4 + 2*4 = 16; total = 9 + 1 + 1 + 9 = 20
    assert eta_squared([0, 0, 1, 1], [1, 3, 5, 7]) == pytest.approx(16 / 20)
    assert eta_squared(["a", "a", "b", "b"], [1, 3, 5, 7]) == pytest.approx(0.8)  # any hashable labels


def test_eta_squared_matches_the_definition_on_random_data():
    rng = np.random.default_rng(3)
    g, y = rng.integers(0, 5, 200), rng.normal(size=200) + rng.integers(0, 5, 200) * 0.1
    assert eta_squared(g, y) == pytest.approx(_eta2_by_hand(g, y), rel=1e-12)
    assert eta_squared(np.arange(200), y) == pytest.approx(1.0)  # one group per row explains everything
    assert eta_squared(np.zeros(200), y) == 0.0  # one group explains nothing


def test_eta_squared_constant_outcome_is_zero():
    assert eta_squared([0, 1, 2, 0], [5.0, 5.0, 5.0, 5.0]) == 0.0


def test_eta_squared_drops_non_finite_rows():
    got = eta_squared([0, 0, 1, 1, 1, 2], [1, 3, 5, 7, np.nan, np.inf])
    assert got == pytest.approx(0.8)
    assert eta_squared(pd.Series([0, 0, 1, 1]), pd.Series([1, 3, 5, None], dtype="Float64")) == pytest.approx(
        _eta2_by_hand([0, 0, 1], [1, 3, 5]))


def test_eta_squared_rejects_bad_input():
    with pytest.raises(ValueError, match="same rows.*3 group labels and 4 outcome"):
        eta_squared([0, 0, 1], [1, 2, 3, 4])
    with pytest.raises(ValueError, match="at least one row"):
        eta_squared([], [])
    with pytest.raises(ValueError, match="finite"):
        eta_squared([0, 1], [np.nan, np.nan])


# --- RFM k-means ---------------------------------------------------------------------------------


def _planted_rfm(n_per: int, seed: int, with_money: bool = True):
    """Four groups far apart on log recency, frequency, AOV and tenure."""
    rng = np.random.default_rng(seed)
    centres = np.array([[3, 30, 20, 400], [200, 2, 200, 60], [30, 300, 5, 900], [90, 10, 1000, 150]], float)
    truth = np.repeat(np.arange(4), n_per)
    noise = np.exp(rng.normal(0, 0.08, size=(len(truth), 4)))
    r, f, aov, t = (centres[truth] * noise).T
    f = np.round(f) + 1
    return pd.DataFrame({"recency": r, "frequency": f, "monetary": aov * f if with_money else 0.0,
                         "tenure": t}), truth


@pytest.mark.parametrize("with_money", [True, False])
def test_rfm_kmeans_recovers_planted_groups_on_new_customers(with_money):
    fit, _ = _planted_rfm(100, seed=0, with_money=with_money)
    ev, truth = _planted_rfm(80, seed=1, with_money=with_money)
    groups = rfm_kmeans_groups(fit, ev, k=4, seed=0)
    assert groups.shape == (len(ev),) and set(groups) <= {0, 1, 2, 3}
    assert adjusted_rand_score(truth, groups) > 0.95


def test_rfm_kmeans_without_a_monetary_column_and_too_few_customers():
    fit, _ = _planted_rfm(30, seed=0, with_money=False)
    ev, truth = _planted_rfm(30, seed=1, with_money=False)
    groups = rfm_kmeans_groups(fit.drop(columns="monetary"), ev.drop(columns="monetary"), k=4)
    assert adjusted_rand_score(truth, groups) > 0.95
    with pytest.raises(ValueError, match="cannot fit 4"):
        rfm_kmeans_groups(fit.head(3), ev, k=4)


# --- propensity tiers ----------------------------------------------------------------------------


def test_propensity_tiers_are_equal_sized_on_the_fit_set():
    p = np.random.default_rng(0).random(1000)
    tiers = propensity_tiers(p, p, k=5)
    counts = np.bincount(tiers)
    assert len(counts) == 5 and counts.min() >= 195 and counts.max() <= 205
    # higher scores never land in a lower tier
    order = np.argsort(p)
    assert (np.diff(tiers[order]) >= 0).all()


def test_propensity_tiers_use_the_fit_cut_points():
    rng = np.random.default_rng(1)
    fit = rng.random(1000)
    shifted = rng.random(1000) * 0.5 + 0.5  # all in the upper half of the fit scores
    tiers = propensity_tiers(fit, shifted, k=4)
    assert tiers.min() >= 2  # cut at the fit quartiles, not re-spread over the eval scores
    assert np.bincount(tiers, minlength=4)[2:].min() > 400


def test_propensity_tiers_with_ties_never_exceed_k():
    fit = np.r_[np.zeros(700), np.linspace(0.1, 1, 300)]  # 70% tied at 0
    tiers = propensity_tiers(fit, fit, k=5)
    assert len(np.unique(tiers)) <= 5 and tiers.max() <= 4
    assert (tiers[:700] == tiers[0]).all()  # ties stay together
    assert propensity_tiers(fit, [np.nan, 0.5], k=5)[0] == -1


# --- compare_segmentations -----------------------------------------------------------------------


def test_the_outcome_itself_beats_a_random_segmentation():
    rng = np.random.default_rng(0)
    y = (rng.random(600) < 0.3).astype(float)
    out = compare_segmentations(y, {"random": rng.integers(0, 2, 600), "oracle": y.copy()}, reference="random",
                                n_boot=300, seed=0)
    assert out["eta2"]["oracle"] == pytest.approx(1.0)
    vs = out["vs_reference"]["oracle"]
    assert vs["diff"]["lo"] > 0 and vs["diff"]["estimate"] == pytest.approx(1.0 - out["eta2"]["random"])
    assert vs["verdict"].startswith("explains more than random (+")
    assert "random" not in out["vs_reference"]
    flipped = compare_segmentations(y, {"random": rng.integers(0, 2, 600), "oracle": y}, "oracle", n_boot=300)
    assert flipped["vs_reference"]["random"]["verdict"].startswith("explains less than oracle")


def test_identical_segmentations_are_within_noise():
    rng = np.random.default_rng(2)
    y = rng.normal(size=400)
    g = rng.integers(0, 4, 400)
    relabelled = np.array(["a", "b", "c", "d"])[g]  # the same partition under other labels
    out = compare_segmentations(y, {"ref": g, "same": g.copy(), "relabelled": relabelled}, "ref", n_boot=200)
    for name in ("same", "relabelled"):
        vs = out["vs_reference"][name]
        assert vs["verdict"].startswith("within noise of ref (")
        assert vs["diff"]["estimate"] == 0.0 and vs["ratio"] == pytest.approx(1.0)


def test_bootstrap_matches_a_hand_computed_paired_resample():
    """The interval is of the paired difference: the same rows for every segmentation per resample."""
    rng = np.random.default_rng(5)
    y = rng.normal(size=40) + np.repeat([0, 1], 20)
    a, b = np.repeat([0, 1], 20), rng.integers(0, 3, 40)
    n_boot, seed = 150, 4
    rows = np.random.default_rng(seed).integers(0, 40, size=(n_boot, 40))
    diffs = [_eta2_by_hand(a[r], y[r]) - _eta2_by_hand(b[r], y[r]) for r in rows]
    out = compare_segmentations(y, {"a": a, "b": b}, "b", n_boot=n_boot, seed=seed)["vs_reference"]["a"]
    assert (out["diff"]["lo"], out["diff"]["hi"]) == pytest.approx(tuple(np.percentile(diffs, [2.5, 97.5])), abs=1e-10)


def test_compare_drops_non_finite_outcomes_for_every_segmentation():
    y = np.array([1, 3, 5, 7, np.nan])
    out = compare_segmentations(y, {"r": [0, 1, 0, 1, 9], "s": [0, 0, 1, 1, 7]}, "r", n_boot=50)
    assert out["n"] == 4 and out["eta2"]["s"] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="reference"):
        compare_segmentations(y, {"r": [0] * 5}, "missing")


# --- segment_predictiveness ----------------------------------------------------------------------


def _customers(n: int = 1600, k: int = 4, seed: int = 0):
    """Segments built from the true purchase probability; RFM is noise unrelated to the outcomes."""
    rng = np.random.default_rng(seed)
    ids = pd.Index([f"c{i:05d}" for i in range(n)], name="customer_id")
    p_true = rng.beta(1.2, 2.0, n)
    segments = pd.Series(np.digitize(p_true, np.quantile(p_true, np.arange(1, k) / k)), index=ids)
    outliers = rng.random(n) < 0.05
    segments[outliers] = -1
    outcomes = pd.DataFrame({
        "purchase": (rng.random(n) < p_true).astype(float),
        "spend": 100 * p_true + rng.normal(0, 10, n),
    }, index=ids)
    # an outlier's outcome is extreme: if outliers slipped into η², "eventseg" would change a lot
    outcomes.loc[outliers, "spend"] = 1e5
    rfm = pd.DataFrame({"recency": rng.exponential(30, n), "frequency": rng.poisson(5, n) + 1.0,
                        "monetary": rng.lognormal(4, 1, n), "tenure": rng.uniform(10, 700, n)}, index=ids)
    propensity = pd.DataFrame({"p_purchase": p_true, "pred_spend": 100 * p_true}, index=ids)
    return segments, outcomes, rfm, propensity, ids, outliers


def test_segments_built_from_the_truth_beat_rfm_kmeans_on_noise():
    segments, outcomes, rfm, propensity, ids, outliers = _customers()
    fit_ids, eval_ids = ids[::2], ids[1::2]
    out = segment_predictiveness(segments, outcomes, rfm, fit_ids, eval_ids, propensity, seed=0)
    assert set(out) == {"purchase", "spend"}
    n_eval_outliers = int(outliers[1::2].sum())
    for label, o in out.items():
        assert o["n_groups"] == 4
        assert o["n_eval"] == len(eval_ids) - n_eval_outliers and o["n_outliers_excluded"] == n_eval_outliers
        assert o["eta2"]["eventseg"] > o["eta2"]["rfm_kmeans"]
        assert o["diff_vs_rfm"]["lo"] > 0 and o["verdict"].startswith("explains more than rfm_kmeans")
        assert o["ratio_vs_rfm"] > 5
        assert o["eta2"]["limit"] >= o["eta2"]["eventseg"] - 0.02  # same construction as the segments
    assert out["purchase"]["kind"] == "binary" and out["spend"]["kind"] == "numeric"
    assert out["purchase"]["limit_source"] == "p_purchase" and out["spend"]["limit_source"] == "pred_spend"


def test_outliers_are_excluded_from_every_eta2():
    segments, outcomes, rfm, propensity, ids, outliers = _customers()
    fit_ids, eval_ids = ids[::2], ids[1::2]
    out = segment_predictiveness(segments, outcomes, rfm, fit_ids, eval_ids, propensity, seed=0)["spend"]
    keep = eval_ids[(segments.reindex(eval_ids) != -1).to_numpy()]
    y = outcomes.loc[keep, "spend"].to_numpy()
    assert y.max() < 1e4  # the planted extreme outcomes are gone
    assert out["eta2"]["eventseg"] == pytest.approx(eta_squared(segments[keep].to_numpy(), y))
    rfm_groups = rfm_kmeans_groups(rfm.loc[fit_ids], rfm.loc[keep], k=4, seed=0)
    assert out["eta2"]["rfm_kmeans"] == pytest.approx(eta_squared(rfm_groups, y))
    tiers = propensity_tiers(propensity.loc[fit_ids, "pred_spend"], propensity.loc[keep, "pred_spend"], 4)
    assert out["eta2"]["limit"] == pytest.approx(eta_squared(tiers, y))


def test_report_is_json_ready_without_propensity_and_with_an_empty_outcome():
    segments, outcomes, rfm, _, ids, _ = _customers(n=400)
    outcomes["never_seen"] = np.nan
    outcomes["constant"] = 1.0
    out = segment_predictiveness(segments, outcomes, rfm, ids[:200], ids[200:], None, seed=1)
    json.dumps(out, allow_nan=False)
    assert out["purchase"]["eta2"]["limit"] is None and out["purchase"]["limit_source"] is None
    assert out["never_seen"]["n_eval"] == 0 and out["never_seen"]["eta2"]["eventseg"] is None
    assert out["constant"]["eta2"]["rfm_kmeans"] == 0.0 and out["constant"]["ratio_vs_rfm"] is None
    for o in out.values():
        for v in o["eta2"].values():
            assert v is None or type(v) is float


def test_fit_and_eval_customers_must_differ():
    segments, outcomes, rfm, propensity, ids, _ = _customers(n=200)
    with pytest.raises(ValueError, match="must differ"):
        segment_predictiveness(segments, outcomes, rfm, ids[:150], ids[100:], propensity)
