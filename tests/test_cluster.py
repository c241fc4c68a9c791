"""SegmentClusterer: recovery, determinism, placement of new customers, outliers (only above the
threshold), the outcome-aware broad level, the scikit-learn estimator contract, input and setting
errors, the script and atomic outputs. The hierarchy itself (broad count, merging, nesting) is in
test_hierarchy.py; save/load safety in test_persistence.py."""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.base import clone
from sklearn.metrics import adjusted_rand_score

from eventseg import __version__
from eventseg.segmentation.clusterer import (
    ClusterConfigError,
    ClustererFileError,
    ClusterInputError,
    DenseGroupPlacer,
    SegmentClusterer,
    cluster_from_config,
    write_cluster_outputs,
)

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(n_resamples=2, n_jobs=1, silhouette_sample_size=2000)
COLUMNS = ["customer_id", "cluster", "subsegment", "membership_strength", "is_core", "outlier_score", "is_outlier"]


def blobs(n=2500, k=5, dim=64, seed=0, spread=1.0, centers=None):
    rng = np.random.default_rng(seed)
    if centers is None:
        centers = np.random.default_rng(100).normal(0, 2.5, (k, dim))
    y = rng.integers(0, len(centers), n)
    X = centers[y] + rng.normal(0, spread, (n, dim))
    return X.astype(np.float32), y, centers


def far_points(m, dim, seed=5, at=40.0):
    """Points far from every planted cluster (each coordinate about ±at)."""
    rng = np.random.default_rng(seed)
    return (at * np.sign(rng.normal(size=(m, dim))) + rng.normal(0, 3, (m, dim))).astype(np.float32)


def outcome_tiers(n, seed=0):
    """Propensity scores driven by a hidden tier that is independent of the representation's blobs:
    (tier, outcomes with p_buy / pred_spend and an ignored non-score column, the logit of p_buy)."""
    rng = np.random.default_rng(seed)
    tier = rng.integers(0, 4, n)
    p = np.array([0.02, 0.1, 0.4, 0.85])[tier]
    logit = np.log(p / (1 - p)) + rng.normal(0, 0.15, n)
    spend = np.array([5, 20, 80, 300.0])[tier] * np.exp(rng.normal(0, 0.1, n))
    out = pd.DataFrame({"p_buy": 1 / (1 + np.exp(-logit)), "pred_spend": spend, "note": rng.normal(size=n)})
    return tier, out, logit


def eta_squared(values, labels):
    v = pd.Series(np.asarray(values, dtype=np.float64))
    means = v.groupby(np.asarray(labels)).transform("mean")
    return float(1 - ((v - means) ** 2).sum() / ((v - v.mean()) ** 2).sum())


def write_embeddings_parquet(path, ids, X):
    vec = pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1), type=pa.float32()), X.shape[1])
    pq.write_table(pa.table({"customer_id": pa.array(ids, type=pa.int64()), "embedding": vec}), path)


@pytest.fixture(scope="module")
def fitted():
    X, y, centers = blobs()
    ids = np.arange(len(X)) + 5000
    return SegmentClusterer(seed=0, **FAST).fit(X, ids=ids), X, y, centers, ids


@pytest.fixture(scope="module")
def with_far():
    """The planted blobs plus 15 far-away customers (the last rows)."""
    X, y, centers = blobs()
    Xa = np.vstack([X, far_points(15, X.shape[1])])
    return SegmentClusterer(seed=0, **FAST).fit(Xa), Xa, y, centers


@pytest.fixture(scope="module")
def outcome_fitted():
    X, y, _ = blobs(n=2000, dim=16, seed=1, centers=np.random.default_rng(100).normal(0, 4, (5, 16)))
    tier, out, logit = outcome_tiers(len(X))
    sc = SegmentClusterer(n_segments=(3, 6), seed=0, **FAST).fit(X, outcomes=out)
    return sc, X, y, tier, out, logit


# ---- recovery, determinism, placement ------------------------------------------------------


def test_recovers_planted_clusters(fitted):
    sc, X, y, _, ids = fitted
    assert sc.n_clusters_ == 5
    assert adjusted_rand_score(y, sc.labels_) > 0.9
    df = sc.assignments()
    assert list(df.columns) == COLUMNS
    assert df["customer_id"].tolist() == ids.tolist()
    assert df["cluster"].dtype == np.int32 and df["subsegment"].dtype == np.int32
    assert df["is_outlier"].dtype == bool and df["is_core"].dtype == bool
    assert df["membership_strength"].between(0, 1).all() and df["outlier_score"].between(0, 1).all()
    assert (df["is_outlier"] == (df["cluster"] == -1)).all() and (df["is_outlier"] == (df["subsegment"] == -1)).all()
    sizes = df[df.cluster >= 0].cluster.value_counts().sort_index().to_numpy()
    assert (np.diff(sizes) <= 0).all(), "segment 0 is the largest"
    m = sc.metrics_
    for key in ("n_clusters", "n_subsegments", "coverage", "outlier_share", "core_share", "outlier_threshold",
                "cluster_sizes", "subsegment_sizes", "subsegment_parent", "broad", "dense"):
        assert key in m, key
    assert m["n_clusters"] == 5 and m["n_subsegments"] == sc.n_subsegments_ >= 5
    assert m["coverage"] == pytest.approx(1 - m["outlier_share"]) and m["coverage"] > 0.9
    b, d = m["broad"], m["dense"]
    assert b["space"] == "representation" and b["outcome_columns"] is None and b["status"] == "ok"
    assert b["requested"] == [4, 8] and b["merged_unstable"] == [] and sum(r["chosen"] for r in b["selection"]) == 1
    assert b["stability"]["ari_seed"] > 0.9 and b["stability"]["ari_resample_mean"] > 0.9
    assert d["n_groups"] == sc.n_dense_ >= 5 and d["silhouette"] > 0.5
    assert d["stability"]["ari_mean"] > 0.9 and d["stability"]["unstable_groups"] == []
    assert d["chosen"]["auto"] and len(sc.sweep_) >= 2 and sc.sweep_["chosen"].sum() == 1
    json.dumps(m, allow_nan=False)  # strict JSON


def test_same_seed_same_result(fitted):
    sc, X, _, _, ids = fitted
    again = SegmentClusterer(seed=0, **FAST).fit(X, ids=ids)
    for name in ("labels_", "subsegments_", "membership_strength_", "is_core_", "outlier_score_"):
        np.testing.assert_array_equal(getattr(again, name), getattr(sc, name), err_msg=name)
    assert again.metrics_["dense"]["stability"] == sc.metrics_["dense"]["stability"]
    assert again.metrics_["broad"]["selection"] == sc.metrics_["broad"]["selection"]
    pd.testing.assert_frame_equal(again.sweep_.drop(columns="seconds"), sc.sweep_.drop(columns="seconds"))


def test_predict_places_new_customers_in_their_planted_cluster(fitted):
    sc, X, y, centers, _ = fitted
    Xn, yn, _ = blobs(n=400, seed=7, centers=centers)
    pred = sc.predict(Xn)
    # map planted → found on the training data, then check the new points
    found = {c: np.bincount(sc.labels_[(y == c) & (sc.labels_ >= 0)]).argmax() for c in range(5)}
    expected = np.array([found[c] for c in yn])
    placed = pred.labels >= 0
    assert placed.mean() > 0.95
    assert (pred.labels[placed] == expected[placed]).mean() > 0.99
    assert np.all((pred.membership_strength >= 0) & (pred.membership_strength <= 1))
    assert (pred.subsegments[placed] >= 0).all() and (sc.micro_.parent_[pred.subsegments[placed]] == pred.labels[placed]).all()
    frame = pred.to_frame()
    assert list(frame.columns) == ["customer_id"] + COLUMNS[1:]
    # a far-away point is an outlier with a high outlier score
    far = sc.predict(far_points(1, X.shape[1]))
    assert far.labels[0] == -1 and far.subsegments[0] == -1 and far.is_outlier[0] and not far.is_core[0]
    assert far.outlier_score[0] > max(0.5, sc.outlier_threshold_)
    soft = sc.predict(Xn[:50], soft=True).membership
    assert soft.shape == (50, sc.n_dense_) and np.isfinite(soft).all()
    # the soft membership's best dense group, within the broad segment, is the customer's micro-segment
    lab, sub = pred.labels[:50], pred.subsegments[:50]
    ok = lab >= 0
    assert (sc.micro_.table_[lab[ok], soft.argmax(axis=1)[ok]] == sub[ok]).mean() > 0.9
    assert not hasattr(sc, "training_membership")


def test_vectorised_placement_matches_hdbscan(fitted):
    import hdbscan

    sc, X, _, centers, _ = fitted
    Xn, _, _ = blobs(n=300, seed=11, centers=centers, spread=1.6)
    Z = np.vstack([sc.transform(Xn), sc.hdbscan_.prediction_data_.raw_data[:20]])
    labels, prob, scores = DenseGroupPlacer(sc.hdbscan_).place(Z)
    ref_labels, ref_prob = hdbscan.approximate_predict(sc.hdbscan_, Z)
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_allclose(prob, ref_prob, atol=1e-12)
    np.testing.assert_allclose(scores, hdbscan.approximate_predict_scores(sc.hdbscan_, Z), atol=1e-12)


def test_nearest_core_joins_the_nearest_dense_group_with_a_falling_strength(fitted):
    sc = fitted[0]
    placer = DenseGroupPlacer(sc.hdbscan_)
    core_points = sc.hdbscan_.prediction_data_.raw_data[sc.hdbscan_.labels_ >= 0]
    core_labels = sc.hdbscan_.labels_[sc.hdbscan_.labels_ >= 0]
    direction = np.ones(core_points.shape[1]) / np.sqrt(core_points.shape[1])
    steps = np.array([0.0, 2.0, 8.0, 32.0])
    Z = core_points[0] + steps[:, None] * direction
    labels, strength = placer.nearest_core(Z)
    assert labels[0] == core_labels[0] and strength[0] == 1.0
    assert ((strength >= 0) & (strength <= 1)).all() and (np.diff(strength) <= 0).all() and strength[-1] < 0.5
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=1).fit(core_points)
    np.testing.assert_array_equal(labels, core_labels[nn.kneighbors(Z)[1][:, 0]])


def test_fit_on_sample_places_the_rest():
    X, y, _ = blobs(n=4000, seed=3)
    sc = SegmentClusterer(fit_sample_size=1000, n_resamples=0, n_jobs=1).fit(X)
    assert len(sc.fit_index_) == 1000 and len(sc.labels_) == 4000 and len(sc.subsegments_) == 4000
    assert adjusted_rand_score(y, sc.labels_) > 0.9
    m = sc.metrics_
    assert m["n_fit_sample"] == 1000 and m["dense"]["stability"]["n_resamples"] == 0
    # the customers outside the fit sample are placed exactly as predict() would place them
    rest = np.setdiff1d(np.arange(4000), sc.fit_index_)[:300]
    pred = sc.predict(X[rest])
    np.testing.assert_array_equal(pred.labels, sc.labels_[rest])
    np.testing.assert_array_equal(pred.subsegments, sc.subsegments_[rest])
    np.testing.assert_array_equal(pred.outlier_score, sc.outlier_score_[rest])


def test_identical_customers_form_a_clean_segment():
    """One-event customers collapse to one embedding: finite numbers, their own dense group."""
    X, y, _ = blobs(n=2000, k=3, seed=5)
    X[:500] = X[0] + 0.0
    X[500:600] = X[0] + np.random.default_rng(1).normal(0, 1e-5, (100, X.shape[1]))
    sc = SegmentClusterer(n_resamples=0, n_jobs=1).fit(X)
    assert np.isfinite(sc.membership_strength_).all() and np.isfinite(sc.outlier_score_).all()
    clump = sc.subsegments_[:600]
    assert clump[0] >= 0 and (clump == clump[0]).all()
    # its micro-segment is the clump (a stray customer whose cell is too small may fold into it)
    assert (sc.subsegments_[600:] == clump[0]).mean() < 0.01
    assert sc.is_core_[:600].all() and not sc.is_outlier_[:600].any()
    # exact copies and copies a hair away are alike: neither looks like outliers of the clump
    exact, near = sc.outlier_score_[:500], sc.outlier_score_[500:600]
    assert np.median(exact) < 0.3 and np.median(near) < 0.3 and abs(exact.mean() - near.mean()) < 0.1
    assert sc.metrics_["duplicate_share_fit_sample"] >= 0.25
    pred = sc.predict(X[:3])
    assert (pred.subsegments == clump[0]).all() and np.isfinite(pred.outlier_score).all()


def test_custom_reducer_by_duck_typing_and_no_reducer():
    from sklearn.decomposition import TruncatedSVD

    X, y, _ = blobs(n=1500, k=4, dim=16, seed=2)
    sc = SegmentClusterer(reducer=TruncatedSVD(5, random_state=0), n_resamples=0, n_jobs=1).fit(X)
    assert adjusted_rand_score(y, sc.labels_) > 0.9 and sc.transform(X[:2]).shape == (2, 5)
    sc = SegmentClusterer(reducer="none", n_resamples=0, n_jobs=1).fit(X)
    assert adjusted_rand_score(y, sc.labels_) > 0.9 and sc.transform(X[:2]).shape == (2, 16)


def test_given_parameters_skip_the_sweep():
    X, y, _ = blobs(n=1500, seed=4)
    sc = SegmentClusterer(min_cluster_size=40, min_samples=5, n_resamples=0, n_jobs=1).fit(X)
    dense = sc.metrics_["dense"]
    assert len(sc.sweep_) == 1 and dense["selection"]["status"] == "given"
    assert (sc.min_cluster_size_, sc.min_samples_) == (40, 5) and not dense["chosen"]["auto"]
    share = SegmentClusterer(min_cluster_size=0.05, min_samples=5, n_resamples=0, n_jobs=1).fit(X)
    assert share.min_cluster_size_ == 75


# ---- outliers: only outside every core and above the threshold ------------------------------------


def _check_outlier_contract(sc, labels, subsegments, strength, is_core, score):
    out = labels == -1
    assert (subsegments[out] == -1).all()
    assert not is_core[out].any(), "a core customer was left out as an outlier"
    assert (score[out] > sc.outlier_threshold_).all(), "an outlier at or below the threshold"
    placed = ~out
    assert (labels[placed] >= 0).all() and (labels[placed] < sc.n_clusters_).all()
    assert (subsegments[placed] >= 0).all() and (subsegments[placed] < sc.n_subsegments_).all()
    assert ((strength >= 0) & (strength <= 1)).all() and np.isfinite(strength).all()
    # and the other way round: every non-core customer above the threshold is an outlier
    assert out[~is_core & (score > sc.outlier_threshold_)].all()


def test_outliers_are_non_core_customers_above_the_threshold(with_far):
    sc, Xa, y, centers = with_far
    _check_outlier_contract(sc, sc.labels_, sc.subsegments_, sc.membership_strength_, sc.is_core_, sc.outlier_score_)
    assert sc.outlier_threshold_ == pytest.approx(np.quantile(np.clip(sc.hdbscan_.outlier_scores_, 0, 1), 0.95))
    assert (sc.labels_[-15:] == -1).all(), "the far-away customers are outliers"
    assert sc.is_outlier_.mean() <= sc.outlier_share + 0.01
    assert sc.metrics_["outlier_share"] == pytest.approx(sc.is_outlier_.mean(), abs=1e-6)
    assert adjusted_rand_score(y, sc.labels_[:-15]) > 0.9, "the planted clusters keep their customers"
    # non-core customers that are not outliers join a group with a strength below 1 on average
    joined = ~sc.is_core_ & ~sc.is_outlier_
    assert sc.membership_strength_[sc.is_core_].max() <= 1
    if joined.any():
        assert (sc.subsegments_[joined] >= 0).all()
    # new customers follow the same rule
    Xn = np.vstack([blobs(n=300, seed=12, centers=centers, spread=1.3)[0], far_points(10, Xa.shape[1], seed=9)])
    p = sc.predict(Xn)
    _check_outlier_contract(sc, p.labels, p.subsegments, p.membership_strength, p.is_core, p.outlier_score)
    assert (p.labels[-10:] == -1).all() and (p.labels[:300] >= 0).mean() > 0.95


def test_outlier_share_zero_leaves_no_one_out_and_a_fixed_threshold_is_used():
    X, _, centers = blobs(n=1500, seed=2)
    Xa = np.vstack([X, far_points(10, X.shape[1])])
    with warnings.catch_warnings():
        # nobody left out: the far customers take part in the broad k-means and unsettle its count
        warnings.simplefilter("ignore", UserWarning)
        none = SegmentClusterer(outlier_share=0, **FAST).fit(Xa)
    assert not none.is_outlier_.any() and (none.labels_ >= 0).all() and (none.subsegments_ >= 0).all()
    assert none.metrics_["coverage"] == 1.0 and none.metrics_["outlier_share"] == 0.0
    assert (none.predict(far_points(5, X.shape[1], seed=3)).labels >= 0).all(), "everyone is placed"
    fixed = SegmentClusterer(outlier_threshold=0.9, **FAST).fit(Xa)
    assert fixed.outlier_threshold_ == 0.9
    _check_outlier_contract(fixed, fixed.labels_, fixed.subsegments_, fixed.membership_strength_, fixed.is_core_,
                            fixed.outlier_score_)
    assert (fixed.labels_[-10:] == -1).all() and fixed.is_outlier_.sum() < 30


# ---- the outcome-aware broad level ----------------------------------------------------------------


def test_broad_segments_follow_the_outcomes_not_the_representation(outcome_fitted):
    sc, X, y, tier, out, logit = outcome_fitted
    ok = sc.labels_ >= 0
    assert sc.n_clusters_ == 4
    assert adjusted_rand_score(tier[ok], sc.labels_[ok]) > 0.9, "broad segments are the outcome tiers"
    assert eta_squared(logit[ok], sc.labels_[ok]) > 0.9
    assert abs(adjusted_rand_score(y[ok], sc.labels_[ok])) < 0.1, "not the representation's blobs"
    # the dense groups (the representation) live on below as micro-segments
    assert adjusted_rand_score(y * 4 + tier, sc.subsegments_) > 0.8
    b = sc.metrics_["broad"]
    assert b["space"] == "outcomes" and b["outcome_columns"] == ["p_buy", "pred_spend"]
    # new customers are placed by their scores
    t2, out2, _ = outcome_tiers(400, seed=3)
    Xn = blobs(n=400, dim=16, seed=4, centers=np.random.default_rng(100).normal(0, 4, (5, 16)))[0]
    p = sc.predict(Xn, outcomes=out2)
    keep = p.labels >= 0
    assert adjusted_rand_score(t2[keep], p.labels[keep]) > 0.9


def test_outcome_aware_model_needs_the_same_scores_to_predict(outcome_fitted):
    sc, X, _, _, out, _ = outcome_fitted
    with pytest.raises(ClusterInputError, match=r"propensity scores \(p_buy, pred_spend\).*pass outcomes="):
        sc.predict(X[:10])
    with pytest.raises(ClusterInputError, match=r"lack column\(s\) \['pred_spend'\].*fitted with \['p_buy', 'pred_spend'\]"):
        sc.predict(X[:10], outcomes=out.iloc[:10].drop(columns="pred_spend"))
    with pytest.raises(ClusterInputError, match="9 rows of outcome scores for 10 embedding rows"):
        sc.predict(X[:10], outcomes=out.iloc[:9])
    with pytest.raises(ClusterInputError, match="must be a DataFrame"):
        sc.predict(X[:10], outcomes=out.iloc[:10].to_numpy())
    nan = out.iloc[:10].copy()
    nan.loc[nan.index[3], "p_buy"] = np.nan
    with pytest.raises(ClusterInputError, match=r"p_buy has 1 missing or non-finite"):
        sc.predict(X[:10], outcomes=nan)
    # an index that is not 0..n-1 is fine: rows are matched by position
    shifted = out.iloc[:10].set_axis(np.arange(10) + 777)
    np.testing.assert_array_equal(sc.predict(X[:10], outcomes=shifted).labels, sc.labels_[:10])


def test_outcomes_without_scores_are_refused_at_fit():
    X, _, _ = blobs(n=600, dim=8, seed=1)
    with pytest.raises(ClusterInputError, match="p_<label> or pred_<label>"):
        SegmentClusterer(**FAST).fit(X, outcomes=pd.DataFrame({"spend": np.ones(len(X))}))
    with pytest.raises(ClusterInputError, match="599 rows of outcome scores for 600 embedding rows"):
        SegmentClusterer(**FAST).fit(X, outcomes=pd.DataFrame({"p_buy": np.full(599, 0.5)}))


# ---- the scikit-learn estimator contract and settings ---------------------------------------------


def test_clone_round_trips_the_settings():
    sc = SegmentClusterer(n_segments=5, min_cluster_size=30)
    copy = clone(sc)
    assert copy is not sc and copy.get_params() == sc.get_params()
    assert copy.n_segments == 5 and copy.min_cluster_size == 30
    assert set(sc.get_params()) >= {"n_segments", "min_cluster_size", "outlier_share", "outlier_threshold", "seed"}
    copy.set_params(n_segments=(3, 5), outlier_share=0.02)
    assert copy.get_params()["n_segments"] == (3, 5) and sc.n_segments == 5
    fitted = clone(copy).set_params(**FAST).fit(blobs(n=800, dim=16, seed=3)[0])
    assert 3 <= fitted.n_clusters_ <= 5
    assert not hasattr(clone(fitted), "labels_"), "a clone is unfitted"


def test_init_only_stores_and_fit_checks():
    """scikit-learn's contract: __init__ stores arguments unchanged and never raises; fit checks."""
    X = blobs(n=400, dim=8)[0]
    bad_settings = [
        (dict(n_segments=[8, 4]), "n_segments"),
        (dict(n_segments=1), "n_segments"),
        (dict(n_segments=4.5), "n_segments"),
        (dict(n_segments=["a", "b"]), "n_segments"),
        (dict(outlier_share=0.7), "outlier_share"),
        (dict(outlier_share=-0.1), "outlier_share"),
        (dict(outlier_threshold=2), "outlier_threshold"),
        (dict(outlier_threshold="x"), "outlier_threshold"),
        (dict(min_ari=1.5), "min_ari"),
        (dict(min_ari="high"), "min_ari"),
        (dict(max_segment_share=0), "max_segment_share"),
        (dict(min_cluster_size=1), "min_cluster_size"),
        (dict(min_cluster_size="big"), "min_cluster_size"),
        (dict(min_samples=0), "min_samples"),
        (dict(fit_sample_size=50), "fit_sample_size"),
        (dict(cluster_selection_method="foo"), "cluster_selection_method"),
        (dict(resample_share=1.0), "resample_share"),
        (dict(n_resamples=-1), "n_resamples"),
        (dict(chunk_size=0), "chunk_size"),
        (dict(unstable_jaccard=1.5), "unstable_jaccard"),
        (dict(silhouette_sample_size=0), "silhouette_sample_size"),
        (dict(seed=-1), "seed"),
        (dict(n_jobs="all"), "n_jobs"),
        (dict(sweep_min_samples=()), "sweep_min_samples"),
    ]
    for kwargs, name in bad_settings:
        sc = SegmentClusterer(**kwargs)  # stored, not checked
        assert all(sc.get_params()[k] == v for k, v in kwargs.items())
        with pytest.raises(ClusterConfigError, match=name):
            sc.fit(X)
        with pytest.raises(ClusterConfigError, match=name):
            sc.check_params()


def test_bad_settings_are_named_in_config():
    with pytest.raises(ClusterConfigError, match="n_segments"):
        SegmentClusterer.from_config({"n_segments": [8, 4]})
    with pytest.raises(ClusterConfigError, match="outlier_share"):
        SegmentClusterer.from_config({"outlier_share": 2})
    with pytest.raises(ClusterConfigError, match="min_ari"):
        SegmentClusterer.from_config({"stability": {"min_ari": 3}})
    with pytest.raises(ClusterConfigError, match="chunk_size"):
        SegmentClusterer.from_config({"chunk_size": 0})
    with pytest.raises(ClusterConfigError, match="unknown cluster setting"):
        SegmentClusterer.from_config({"min_cluster_sise": 5})
    with pytest.raises(ClusterConfigError, match=r"unknown cluster.stability setting\(s\) \['ari'\]"):
        SegmentClusterer.from_config({"stability": {"ari": 0.9}})
    with pytest.raises(ClusterConfigError, match="unknown reducer 'tsne'"):
        SegmentClusterer(reducer="tsne").fit(blobs(n=300)[0])
    try:
        import umap  # noqa: F401
    except ImportError:
        with pytest.raises(ClusterConfigError, match=r"pip install eventseg\[umap\]"):
            SegmentClusterer(reducer="umap").fit(blobs(n=300)[0])
    sc = SegmentClusterer.from_config({"n_segments": [3, 5], "outlier_share": 0.02, "n_jobs": 1,
                                       "stability": {"n_resamples": 2, "min_ari": 0.8, "sample_share": 0.7}})
    assert sc.get_params()["n_segments"] == (3, 5) and sc.min_ari == 0.8 and sc.resample_share == 0.7
    assert SegmentClusterer.from_config({"outlier_threshold": None}).outlier_threshold is None
    defaults = SegmentClusterer.from_config({})
    assert defaults.get_params() == SegmentClusterer().get_params()
    # n_segments=None means the default range
    X = blobs(n=800, dim=16, seed=3)[0]
    assert SegmentClusterer(n_segments=None, **FAST).fit(X).metrics_["broad"]["requested"] == [4, 8]


# ---- input errors ---------------------------------------------------------------------------


def test_bad_embeddings_are_named(fitted):
    X, _, _ = blobs(n=300)
    ids = np.arange(300) + 100
    bad = X.copy()
    bad[[5, 9]] = np.nan
    with pytest.raises(ClusterInputError, match=r"2 customer\(s\).*NaN.*customer 105"):
        SegmentClusterer(n_jobs=1).fit(bad, ids=ids)
    bad = X.copy()
    bad[7, 3] = np.inf
    with pytest.raises(ClusterInputError, match=r"1 customer\(s\).*customer 107.*infinite"):
        SegmentClusterer(n_jobs=1).fit(bad, ids=ids)
    dup = ids.copy()
    dup[[10, 11, 12]] = 100
    with pytest.raises(ClusterInputError, match=r"1 customer id\(s\) appear more than once \(4 rows\).*100 appears 4"):
        SegmentClusterer(n_jobs=1).fit(X, ids=dup)
    with pytest.raises(ClusterInputError, match="too few customers to cluster: 15"):
        SegmentClusterer(n_jobs=1).fit(X[:15])
    with pytest.raises(ClusterInputError, match="300 customer ids for 299 embedding rows"):
        SegmentClusterer(n_jobs=1).fit(X[:299], ids=ids)
    with pytest.raises(ClusterInputError, match="more than half"):
        SegmentClusterer(min_cluster_size=200, n_jobs=1).fit(X)
    with pytest.raises(ClusterInputError, match="2-D"):
        SegmentClusterer(n_jobs=1).fit(X[0])
    sc = fitted[0]
    with pytest.raises(ClusterInputError, match="32 dimensions.*64-dimensional"):
        sc.predict(np.zeros((3, 32), dtype=np.float32))
    with pytest.raises(ClusterInputError, match="NaN"):
        sc.predict(np.full((2, 64), np.nan, dtype=np.float32))
    with pytest.raises(RuntimeError, match="not fitted"):
        SegmentClusterer().predict(X)
    empty = sc.predict(np.zeros((0, 64), dtype=np.float32))
    assert len(empty.labels) == 0 and len(empty.to_frame()) == 0


# ---- outputs and the script ----------------------------------------------------------------


def test_outputs_are_atomic(fitted, tmp_path, monkeypatch):
    sc = fitted[0]
    paths = write_cluster_outputs(sc, tmp_path)
    for p in paths.values():
        assert Path(p).exists() and Path(p + ".json").exists() or p.endswith(".json")
    df = pd.read_parquet(paths["clusters"])
    assert list(df.columns) == COLUMNS and len(df) == len(sc.labels_)
    side = json.loads(Path(paths["clusters"] + ".json").read_text())
    assert side["n_clusters"] == sc.n_clusters_ and side["n_subsegments"] == sc.n_subsegments_
    before = Path(paths["clusters"]).read_bytes()

    def broken(self, path, *a, **k):
        Path(path).write_bytes(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", broken)
    with pytest.raises(OSError, match="disk full"):
        write_cluster_outputs(sc, tmp_path)
    assert Path(paths["clusters"]).read_bytes() == before  # the old complete file, untouched
    fresh = tmp_path / "fresh"
    with pytest.raises(OSError):
        write_cluster_outputs(sc, fresh)
    assert not (fresh / "clusters.parquet").exists()
    assert not [p.name for p in list(tmp_path.iterdir()) + list(fresh.iterdir()) if ".tmp-" in p.name]


def test_cluster_from_config(tmp_path):
    X, y, _ = blobs(n=1200, seed=6)
    ids = np.arange(len(X)) * 3
    write_embeddings_parquet(tmp_path / "embeddings.parquet", ids, X)
    res = cluster_from_config({"embeddings": str(tmp_path / "embeddings.parquet"),
                               "cluster": {"stability": {"n_resamples": 1}, "n_jobs": 1, "n_segments": [4, 6]}})
    assert res["n_clusters"] == 5 and Path(res["clusters"]).parent == tmp_path  # default out_dir
    assert res["broad_space"] == "representation" and res["n_subsegments"] >= 5
    df = pd.read_parquet(res["clusters"])
    assert df["customer_id"].tolist() == ids.tolist() and adjusted_rand_score(y, df["cluster"]) > 0.9
    side = json.loads(Path(res["clusters"] + ".json").read_text())
    assert side["rows"] == 1200 and side["clusterer_sha256"] and side["embeddings"].endswith("embeddings.parquet")
    # a bad setting fails before the embeddings are clustered
    with pytest.raises(ClusterConfigError, match="outlier_share"):
        cluster_from_config({"embeddings": str(tmp_path / "embeddings.parquet"), "out_dir": str(tmp_path / "x"),
                             "cluster": {"outlier_share": 0.9}})
    assert not (tmp_path / "x").exists()


def test_cluster_from_config_with_outcomes(tmp_path):
    centers = np.random.default_rng(100).normal(0, 4, (5, 16))
    X = blobs(n=1000, dim=16, seed=2, centers=centers)[0]
    tier, out, _ = outcome_tiers(len(X), seed=5)
    ids = np.arange(len(X)) + 40
    write_embeddings_parquet(tmp_path / "embeddings.parquet", ids, X)
    scores = out.assign(customer_id=ids).iloc[::-1]  # another order: matched by id
    scores.to_parquet(tmp_path / "scores.parquet", index=False)
    cfg = {"embeddings": str(tmp_path / "embeddings.parquet"), "outcomes": str(tmp_path / "scores.parquet"),
           "cluster": {"stability": {"n_resamples": 1}, "n_jobs": 1, "n_segments": 4}}
    res = cluster_from_config(cfg)
    assert res["broad_space"] == "outcomes" and res["n_clusters"] == 4
    df = pd.read_parquet(res["clusters"])
    keep = df["cluster"] >= 0
    assert adjusted_rand_score(tier[keep], df["cluster"][keep]) > 0.9
    scores.iloc[5:].to_parquet(tmp_path / "scores.parquet", index=False)
    with pytest.raises(ClusterInputError, match="5 clustered customer"):
        cluster_from_config(cfg)


@pytest.mark.slow
def test_script_writes_all_outputs(tmp_path):
    X, y, _ = blobs(n=1200, seed=8)
    emb = tmp_path / "emb" / "embeddings.parquet"
    emb.parent.mkdir()
    write_embeddings_parquet(emb, np.arange(len(X)), X)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "cluster.py"), f"embeddings={emb}", f"out_dir={out}",
         "cluster.stability.n_resamples=1", "cluster.fit_sample_size=800", "cluster.n_jobs=1"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert result["n_clusters"] == 5
    for name in ("clusters.parquet", "clusterer.npz", "cluster_metrics.json", "cluster_sweep.csv"):
        assert (out / name).exists(), name
    for name in ("clusters.parquet", "clusterer.npz", "cluster_sweep.csv"):
        assert json.loads((out / f"{name}.json").read_text())["eventseg_version"] == __version__
    metrics = json.loads((out / "cluster_metrics.json").read_text())
    assert metrics["n_customers"] == 1200 and metrics["n_fit_sample"] == 800
    assert len(pd.read_csv(out / "cluster_sweep.csv")) == len(metrics["dense"]["sweep"])
    again = SegmentClusterer.load(out / "clusterer.npz").predict(X)
    saved = pd.read_parquet(out / "clusters.parquet")
    assert adjusted_rand_score(saved["cluster"], again.labels) > 0.95
    assert adjusted_rand_score(saved["subsegment"], again.subsegments) > 0.95


def test_load_refuses_non_clusterers(tmp_path):
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"not a pickle")
    with pytest.raises(ClustererFileError, match="not a saved eventseg clusterer"):
        SegmentClusterer.load(junk)
    with pytest.raises(FileNotFoundError):
        SegmentClusterer.load(tmp_path / "missing.pkl")


def test_save_load_round_trip(fitted, tmp_path):
    sc, X, _, centers, _ = fitted
    path = sc.save(tmp_path / "clusterer.npz")
    assert (tmp_path / "clusterer.npz.json").exists()
    loaded = SegmentClusterer.load(path)
    Xn = np.vstack([blobs(n=300, seed=9, centers=centers)[0], far_points(3, X.shape[1])])
    a, b = sc.predict(Xn), loaded.predict(Xn)
    for name in ("labels", "subsegments", "membership_strength", "is_core", "outlier_score"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert loaded.n_clusters_ == sc.n_clusters_ and loaded.saved_metrics_["n_clusters"] == sc.n_clusters_
    assert loaded.n_subsegments_ == sc.n_subsegments_ and loaded.outlier_threshold_ == sc.outlier_threshold_
    with pytest.raises(RuntimeError, match="no fitted customers"):
        loaded.assignments()
