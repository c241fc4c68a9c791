"""The two-level hierarchy: broad segments (k-means, count chosen by stability, unstable segments
merged) over micro-segments (broad × dense group, nested, small cells folded into the parent's
largest micro-segment)."""

import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score, homogeneity_score

import eventseg.segmentation.clusterer.broad as broad_module
from eventseg.segmentation.clusterer import SegmentClusterer
from eventseg.segmentation.clusterer.broad import BroadLevel
from eventseg.segmentation.clusterer.hierarchy import MicroLevel

FAST = dict(n_resamples=2, n_jobs=1, silhouette_sample_size=2000)


def nested(n=2400, dim=16, seed=0, sub=(2, 3, 2, 3)):
    """4 well-separated groups, each made of 2-3 tight sub-blobs:
    (X, group of each customer, sub-blob of each customer, sub-blob centres)."""
    grng = np.random.default_rng(200)
    groups = grng.normal(0, 14, (len(sub), dim))
    centers, parent = [], []
    for g, s in enumerate(sub):
        for _ in range(s):
            centers.append(groups[g] + grng.normal(0, 3.0, dim))
            parent.append(g)
    centers, parent = np.array(centers), np.array(parent)
    rng = np.random.default_rng(seed)
    blob = rng.integers(0, len(centers), n)
    X = centers[blob] + rng.normal(0, 0.5, (n, dim))
    return X.astype(np.float32), parent[blob], blob, centers


@pytest.fixture(scope="module")
def nested_data():
    return nested()


@pytest.fixture(scope="module")
def four(nested_data):
    X = nested_data[0]
    return SegmentClusterer(n_segments=4, seed=0, **FAST).fit(X)


def _check_nested(micro: MicroLevel, labels, subsegments):
    """Every micro-segment has exactly one parent: the broad segment of all its customers."""
    placed = labels >= 0
    assert ((subsegments >= 0) == placed).all()
    parents = pd.Series(labels[placed]).groupby(subsegments[placed]).unique()
    assert all(len(p) == 1 for p in parents), "a micro-segment spans broad segments"
    for m, p in parents.items():
        assert micro.parent_[m] == p[0]


# ---- broad level over micro level, on nested planted clusters -------------------------------------


def test_broad_level_recovers_the_groups_and_micro_segments_nest_below(four, nested_data):
    X, group, blob, centers = nested_data
    sc = four
    assert sc.n_clusters_ == 4 and sc.metrics_["broad"]["status"] == "ok" and sc.broad_.merged_ == []
    assert adjusted_rand_score(group, sc.labels_) > 0.9
    _check_nested(sc.micro_, sc.labels_, sc.subsegments_)
    assert sc.n_subsegments_ > sc.n_clusters_
    # micro-segments are purer than broad ones with respect to the sub-blobs, and recover them
    placed = sc.labels_ >= 0
    assert homogeneity_score(blob[placed], sc.subsegments_[placed]) > 0.95
    assert homogeneity_score(blob[placed], sc.subsegments_[placed]) > homogeneity_score(blob[placed], sc.labels_[placed]) + 0.2
    assert adjusted_rand_score(blob, sc.subsegments_) > 0.9
    # the parent map, the table and the metrics agree
    micro = sc.micro_
    assert len(micro.parent_) == sc.n_subsegments_ and micro.table_.shape == (sc.n_clusters_, sc.n_dense_)
    for b in range(sc.n_clusters_):
        assert (micro.parent_[micro.table_[b]] == b).all()
    assert sc.metrics_["subsegment_parent"] == {str(m): int(b) for m, b in enumerate(micro.parent_)}
    # micro ids are ordered by parent, then size
    assert (np.diff(micro.parent_) >= 0).all()
    for b in range(sc.n_clusters_):
        sizes = micro.fit_sizes_[micro.parent_ == b]
        assert (np.diff(sizes) <= 0).all()
    # new customers are placed in the same nested hierarchy
    rng = np.random.default_rng(5)
    nb = rng.integers(0, len(centers), 300)
    Xn = (centers[nb] + rng.normal(0, 0.5, (300, X.shape[1]))).astype(np.float32)
    p = sc.predict(Xn)
    _check_nested(sc.micro_, p.labels, p.subsegments)
    ok = p.labels >= 0
    assert ok.mean() > 0.95 and adjusted_rand_score(nb[ok], p.subsegments[ok]) > 0.9


def test_an_int_gives_exactly_that_many_and_a_range_a_count_inside_it(nested_data):
    X = nested_data[0]
    six = SegmentClusterer(n_segments=6, seed=0, **FAST).fit(X)
    assert six.n_clusters_ == 6 and six.metrics_["broad"]["requested"] == [6, 6]
    _check_nested(six.micro_, six.labels_, six.subsegments_)
    for lo, hi in ((4, 8), (2, 3)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a stable count in the range: no warning
            sc = SegmentClusterer(n_segments=(lo, hi), seed=0, **FAST).fit(X)
        assert lo <= sc.n_clusters_ <= hi
        table = sc.broad_.selection_
        assert table["k"].tolist() == list(range(lo, hi + 1)) and table["chosen"].sum() == 1
        chosen = table[table.chosen].iloc[0]
        assert chosen["eligible"] and chosen["k"] == sc.n_clusters_
        eligible = table[table.eligible]
        assert round(chosen["silhouette"], 3) == round(eligible["silhouette"].max(), 3), "best silhouette wins"
        assert (eligible["largest_share"] <= sc.max_segment_share).all()
        assert (eligible[["ari_seed", "ari_resample_mean"]] >= sc.min_ari).all().all()
        _check_nested(sc.micro_, sc.labels_, sc.subsegments_)


def test_no_stable_count_falls_back_with_a_warning_and_at_least_two_segments():
    rng = np.random.default_rng(0)
    S = rng.normal(size=(800, 8))
    S /= np.linalg.norm(S, axis=1, keepdims=True)  # a sphere shell: no cluster structure at all
    with pytest.warns(UserWarning, match=r"no number of broad segments in \[3, 5\] is stable"):
        b = BroadLevel((3, 5), n_resamples=2, seed=0).fit(S)
    assert b.status_ == "fallback" and b.selection_["chosen"].sum() == 1 and not b.selection_["eligible"].any()
    assert b.n_segments_ >= 2, "merging must not leave a single broad segment"
    assert len(np.unique(b.predict(S))) == b.n_segments_


# ---- unstable segments are merged ------------------------------------------------------------------


def four_blobs(seed=0):
    """3 big 2-D blobs and a small one (id 3) close to blob 2."""
    rng = np.random.default_rng(seed)
    C = np.array([[0.0, 0.0], [30.0, 0.0], [0.0, 30.0], [0.0, 39.0]])
    y = np.repeat(np.arange(4), [400, 400, 400, 60])
    return C[y] + rng.normal(0, 1, (len(y), 2)), y


def vanishing_kmeans(base_seed):
    """Real k-means, except that a refit on a resample (seed base+2+r, see BroadLevel._evaluate)
    loses its smallest cluster: the centre moves far away and its customers join their nearest
    other centre. The smallest main segment then never survives resampling."""
    real = broad_module._kmeans

    def fit(S, k, seed):
        km = real(S, k, seed)
        if seed < base_seed + 2:
            return km
        centers = km.cluster_centers_.copy()
        centers[np.bincount(km.labels_, minlength=k).argmin()] = 1e6
        return SimpleNamespace(labels_=km.labels_, cluster_centers_=centers)

    return fit


def test_a_segment_that_does_not_survive_resampling_is_merged_into_its_nearest_stable_neighbour(monkeypatch):
    S, y = four_blobs()
    stable = BroadLevel((4, 4), n_resamples=3, seed=0).fit(S)
    assert stable.merged_ == [] and stable.n_segments_ == 4  # real k-means: every segment survives
    monkeypatch.setattr(broad_module, "_kmeans", vanishing_kmeans(0))
    with pytest.warns(UserWarning) as record:
        b = BroadLevel((4, 4), n_resamples=3, seed=0).fit(S)
    messages = [str(w.message) for w in record]
    assert any("1 broad segment(s) did not survive resampling" in m and "3 broad segments" in m for m in messages)
    assert any("outside the requested [4, 4]" in m for m in messages)
    assert len(b.merged_) == 1 and b.n_segments_ == 3
    raw = broad_module._nearest(S, b.centers_)
    assert np.bincount(raw[y == 3]).argmax() == b.merged_[0], "the small blob is the unstable segment"
    labels = b.predict(S)
    # the small blob joins its nearest stable neighbour (blob 2); the big blobs stay apart
    assert len(np.unique(labels[y == 3])) == 1 and labels[y == 3][0] == labels[y == 2][0]
    assert len({labels[y == g][0] for g in range(3)}) == 3
    for g in range(3):
        assert len(np.unique(labels[y == g])) == 1
    # final ids: 0..2, largest first
    sizes = np.bincount(labels)
    assert sorted(np.unique(labels)) == [0, 1, 2] and (np.diff(sizes) <= 0).all()
    assert labels[y == 2][0] == 0, "blob 2 with the small blob is the largest"
    assert b.merge_.shape == (4,) and sorted(set(b.merge_.tolist())) == [0, 1, 2]


def test_merges_reach_the_clusterer_metrics(monkeypatch, nested_data):
    X = nested_data[0]
    monkeypatch.setattr(broad_module, "_kmeans", vanishing_kmeans(0))
    with pytest.warns(UserWarning) as record:
        sc = SegmentClusterer(n_segments=5, seed=0, **FAST).fit(X)
    messages = " | ".join(str(w.message) for w in record)
    assert "did not survive resampling" in messages and "4 broad segments, outside the requested [5, 5]" in messages
    assert sc.n_clusters_ == 4 and len(sc.broad_.merged_) == 1
    assert sc.metrics_["broad"]["merged_unstable"] == sc.broad_.merged_ and sc.metrics_["n_clusters"] == 4
    assert sorted(np.unique(sc.labels_[sc.labels_ >= 0])) == [0, 1, 2, 3]
    _check_nested(sc.micro_, sc.labels_, sc.subsegments_)


def test_a_segment_of_scattered_far_customers_is_merged_with_real_kmeans():
    """No fake: 3 tight blobs and 16 customers scattered on a far ring. A 4th k-means segment
    lands on some of the far customers, which ones changes from resample to resample, so it is
    merged in most seeds; a merge never splits or joins the blobs."""
    merged_seeds = 0
    for seed in range(8):
        rng = np.random.default_rng(seed)
        C = np.array([[0.0, 0.0], [30.0, 0.0], [0.0, 30.0]])
        y = np.r_[np.repeat(np.arange(3), 300), np.full(16, 3)]
        angle = 2 * np.pi * np.arange(16) / 16 + rng.uniform(0, 0.1, 16)
        ring = 60 * np.column_stack([np.cos(angle), np.sin(angle)]) + 10
        S = np.vstack([C[y[:900]] + rng.normal(0, 1, (900, 2)), ring])
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            b = BroadLevel((4, 4), n_resamples=5, seed=seed).fit(S)
        labels = b.predict(S)
        assert len({labels[y == g][0] for g in range(3)}) == 3
        assert all(len(np.unique(labels[y == g])) == 1 for g in range(3))
        if b.merged_:
            merged_seeds += 1
            assert b.n_segments_ == 4 - len(b.merged_) >= 2
            assert any("did not survive resampling" in str(w.message) for w in record)
            raw = broad_module._nearest(S, b.centers_)
            assert not np.isin(raw[y < 3], b.merged_).any(), "only the far customers' segment is merged"
    assert merged_seeds >= 3


# ---- the micro level on its own ------------------------------------------------------------------


def test_micro_level_folds_small_cells_into_the_parents_largest():
    cells = [(0, 0, 80), (0, 1, 15), (0, 2, 3),   # broad 0: dense 2 is a small cell
             (1, 1, 50), (1, 0, 4), (1, 2, 30),   # broad 1: dense 0 is big elsewhere, small here
             (2, 2, 5)]                           # broad 2: every cell small, it still keeps one
    broad = np.concatenate([np.full(c, b) for b, _, c in cells] + [np.full(7, -1)])
    dense = np.concatenate([np.full(c, d) for _, d, c in cells] + [np.full(7, 1)])
    m = MicroLevel().fit(broad, dense, n_broad=3, n_dense=3, min_size=10)
    assert m.n_micro_ == 5
    np.testing.assert_array_equal(m.parent_, [0, 0, 1, 1, 2])
    np.testing.assert_array_equal(m.fit_sizes_, [80, 15, 50, 30, 5])
    np.testing.assert_array_equal(m.table_, [[0, 1, 0], [2, 2, 3], [4, 4, 4]])
    sub = m.predict(broad, dense)
    assert (sub[broad == -1] == -1).all()
    _check_nested(m, broad, sub)
    # combinations never seen in the fit, and outliers
    np.testing.assert_array_equal(m.predict(np.array([1, 2, 0, -1, 1]), np.array([0, 0, 2, 0, -1])), [2, 4, 0, -1, -1])
    again = MicroLevel.from_arrays(m.table_, m.parent_)
    np.testing.assert_array_equal(again.predict(broad, dense), sub)
