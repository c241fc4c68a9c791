"""Saved clusterers and propensity heads: nothing in a run directory can run code when loaded
(poisoned files are refused before any of their code could run), round trips are exact, and
truncated or garbage files give a clear error, not a numpy / zip / skops trace."""

import io
import json
import pickle
import zipfile
from contextlib import contextmanager
from pathlib import Path

import hdbscan
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

from eventseg import __version__
from eventseg.run.artifacts import file_hash
from eventseg.run.layout import RunLayout
from eventseg.run.safe_skops import skops_type_names
from eventseg.segmentation.clusterer import (
    ClusterConfigError,
    ClustererFileError,
    ClusterInputError,
    DenseGroupPlacer,
    SegmentClusterer,
    write_cluster_outputs,
)
from eventseg.segmentation.clusterer.persistence import SKOPS_TRUSTED_TYPES
from eventseg.propensity.heads import PropensityHeads
from eventseg.propensity.persistence import (
    ESTIMATOR_SKOPS_TYPES,
    ESTIMATORS_FILE,
    LEGACY_ESTIMATORS_FILE,
    HeadsFileError,
)

# ---- payloads that run code if (and only if) a loader constructs them ------------------------


def _write_marker(path):
    Path(path).write_text("code ran")


class PickleBomb:
    """Unpickling it calls _write_marker: the marker file proves code from the file ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (_write_marker, (self.marker,))


class SkopsBomb:
    """skops constructs an object and calls its __setstate__: loading it writes the marker."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __setstate__(self, state):
        _write_marker(state["marker"])
        self.__dict__.update(state)


@contextmanager
def refused_unrun(marker: Path, error: type[Exception], match: str):
    """The block must raise `error` (message matching `match`) and the marker must not exist:
    checked even when the block raises something else, so a guard that let code run says so."""
    try:
        with pytest.raises(error, match=match):
            yield
    finally:
        assert not marker.exists(), "code from the poisoned file ran during load"


def test_the_payloads_do_run_code_when_loaded_unsafely(tmp_path):
    """The bombs are live: the refusals below are what keeps the marker from being written."""
    marker = tmp_path / "marker"
    pickle.loads(pickle.dumps(PickleBomb(marker)))
    assert marker.exists()
    marker.unlink()
    data = sio.dumps(SkopsBomb(marker))
    assert not marker.exists()
    sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    assert marker.exists()


# ---- data -------------------------------------------------------------------------------------


def nested_with_outliers(n=2400, dim=24, seed=0, far=40):
    """2-level structure: 3 well-separated groups of 2 sub-blobs each, plus far-away points,
    so the condensed tree has depth (sub-clusters below clusters) and noise."""
    rng = np.random.default_rng(seed)
    groups = np.random.default_rng(200).normal(0, 12, (3, dim))
    offsets = np.random.default_rng(300).normal(0, 2.5, (6, dim))
    centers = groups[np.arange(6) // 2] + offsets
    y = rng.integers(0, 6, n)
    X = centers[y] + rng.normal(0, 0.6, (n, dim))
    outliers = rng.normal(0, 30, (far, dim))
    return np.vstack([X, outliers]).astype(np.float32)


@pytest.fixture(scope="module")
def clusterer():
    X = nested_with_outliers()
    sc = SegmentClusterer(min_cluster_size=40, min_samples=8, cluster_selection_method="leaf", n_components=6,
                          fit_sample_size=1800, n_resamples=0, n_jobs=1, silhouette_sample_size=1000, seed=0)
    sc.fit(X, np.arange(len(X)) + 10_000)
    return sc, X


@pytest.fixture
def saved(clusterer, tmp_path):
    sc, _ = clusterer
    return sc.save(tmp_path / RunLayout.clusterer)


def outcome_scores(n, seed=0):
    """Propensity scores driven by a hidden tier, independent of the representation."""
    rng = np.random.default_rng(seed)
    tier = rng.integers(0, 3, n)
    p = np.array([0.05, 0.3, 0.8])[tier] * np.exp(rng.normal(0, 0.05, n))
    return pd.DataFrame({"p_buy": np.clip(p, 0, 1), "pred_spend": np.array([3, 30, 300.0])[tier] * np.exp(rng.normal(0, 0.1, n))})


@pytest.fixture(scope="module")
def outcome_clusterer():
    X = nested_with_outliers(n=1500, dim=12, far=20)
    out = outcome_scores(len(X))
    sc = SegmentClusterer(min_cluster_size=40, min_samples=8, n_components=6, n_segments=3, n_resamples=0, n_jobs=1,
                          silhouette_sample_size=1000, seed=0).fit(X, outcomes=out)
    return sc, X, out


def _members(path) -> dict:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _rewrite(path, **replace):
    members = {**_members(path), **replace}
    with open(path, "wb") as f:
        np.savez(f, **members)


def _json_member(obj) -> np.ndarray:
    return np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8)


PLACEMENT = ("labels", "subsegments", "membership_strength", "is_core", "outlier_score")


def _assert_same_placement(a, b):
    for name in PLACEMENT:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


# ---- clusterer: poisoned files ------------------------------------------------------------------


def test_pickle_in_place_of_the_clusterer_is_refused_unrun(saved, tmp_path):
    marker = tmp_path / "marker"
    saved.write_bytes(pickle.dumps(PickleBomb(marker)))
    with refused_unrun(marker, ClustererFileError, "is a pickle.*not loaded.*can run arbitrary code"):
        SegmentClusterer.load(saved)


def test_pickled_array_inside_the_npz_is_refused_unrun(saved, tmp_path):
    marker = tmp_path / "marker"
    _rewrite(saved, **{"hdbscan.labels": np.array([PickleBomb(marker)], dtype=object)})  # np.savez pickles it
    with refused_unrun(marker, ClustererFileError, "truncated or corrupt.*allow_pickle"):
        SegmentClusterer.load(saved)


def test_skops_member_naming_an_untrusted_type_is_refused_unrun(saved, tmp_path):
    marker = tmp_path / "marker"
    _rewrite(saved, scaler=np.frombuffer(sio.dumps(SkopsBomb(marker)), dtype=np.uint8))
    with refused_unrun(marker, ClustererFileError, r"\(scaler\) names types that eventseg never loads.*SkopsBomb"):
        SegmentClusterer.load(saved)


def test_types_skops_trusts_by_default_are_still_refused_outside_the_allowlist(saved):
    """skops trusts every scikit-learn estimator by default; the clusterer loads only its own."""
    X = np.random.default_rng(0).normal(size=(50, 3))
    data = sio.dumps(LogisticRegression().fit(X, X[:, 0] > 0))
    assert sio.get_untrusted_types(data=data) == []
    _rewrite(saved, reducer=np.frombuffer(data, dtype=np.uint8))
    with pytest.raises(ClustererFileError, match="never loads.*LogisticRegression"):
        SegmentClusterer.load(saved)


def test_saved_clusterer_names_only_allowlisted_types(saved):
    members = _members(saved)
    for key in ("scaler", "reducer"):
        names = skops_type_names(members[key].tobytes())
        assert names <= set(SKOPS_TRUSTED_TYPES), names
    assert not any(a.dtype == object for a in members.values())


# ---- clusterer: exact round trip ------------------------------------------------------------------


def test_round_trip_places_new_points_identically(clusterer, saved):
    sc, X = clusterer
    loaded = SegmentClusterer.load(saved)
    tree = sc.hdbscan_.prediction_data_.cluster_tree
    root = int(sc.hdbscan_.condensed_tree_._raw_tree["parent"].min())
    assert (tree["parent"] > root).any(), "the test needs a condensed tree with nested clusters"
    new = np.vstack([nested_with_outliers(n=1500, seed=7, far=60), X[:200]])
    a, b = sc.predict(new, soft=True), loaded.predict(new, soft=True)
    assert (a.labels == -1).any() and a.labels.max() >= 2, "the test needs outliers and several segments"
    assert (a.labels >= 0).any() and not a.is_core.all() and a.subsegments.max() > a.labels.max()
    _assert_same_placement(a, b)
    np.testing.assert_allclose(a.membership, b.membership, rtol=0, atol=1e-12)
    # the saved hierarchy is the fitted one
    assert loaded.outlier_threshold_ == sc.outlier_threshold_ and loaded.outcome_space_ is None
    np.testing.assert_array_equal(loaded.broad_.centers_, sc.broad_.centers_)
    np.testing.assert_array_equal(loaded.broad_.merge_, sc.broad_.merge_)
    np.testing.assert_array_equal(loaded.micro_.table_, sc.micro_.table_)
    np.testing.assert_array_equal(loaded.micro_.parent_, sc.micro_.parent_)
    assert (loaded.n_clusters_, loaded.n_subsegments_, loaded.n_dense_) == (sc.n_clusters_, sc.n_subsegments_, sc.n_dense_)
    # the fitted customers, placed again by the loaded clusterer, keep their segments
    fit_rows = sc.fit_index_[:300]
    again = loaded.predict(X[fit_rows])
    assert (again.labels == sc.labels_[fit_rows]).mean() > 0.98
    assert (again.subsegments == sc.subsegments_[fit_rows]).mean() > 0.98
    # the vectorised placer sees the same arrays, and hdbscan's own prediction agrees
    Z = sc.transform(new)
    np.testing.assert_array_equal(Z, loaded.transform(new))
    p1, p2 = DenseGroupPlacer(sc.hdbscan_), DenseGroupPlacer(loaded.hdbscan_)
    for name in ("core", "point_parent", "point_lambda", "node_parent", "node_lambda", "node_label",
                 "node_max_lambda", "score_max_lambda"):
        np.testing.assert_array_equal(getattr(p1, name), getattr(p2, name), err_msg=name)
    for x, y in zip(p1.place(Z), p2.place(Z)):
        np.testing.assert_array_equal(x, y)
    ha, hb = hdbscan.approximate_predict(sc.hdbscan_, Z[:300]), hdbscan.approximate_predict(loaded.hdbscan_, Z[:300])
    np.testing.assert_array_equal(ha[0], hb[0])
    np.testing.assert_allclose(ha[1], hb[1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(hdbscan.approximate_predict_scores(sc.hdbscan_, Z[:300]),
                               hdbscan.approximate_predict_scores(loaded.hdbscan_, Z[:300]), rtol=0, atol=1e-12)
    pa, pb = sc.hdbscan_.prediction_data_, loaded.hdbscan_.prediction_data_
    assert type(pa.tree) is type(pb.tree)
    np.testing.assert_array_equal(pa.core_distances, pb.core_distances)
    np.testing.assert_array_equal(pa.raw_data, pb.raw_data)
    np.testing.assert_array_equal(pa.cluster_tree, pb.cluster_tree)
    assert pa.cluster_map == pb.cluster_map and pa.max_lambdas == pb.max_lambdas
    assert pa.leaf_max_lambdas == pb.leaf_max_lambdas
    assert len(pa.exemplars) == len(pb.exemplars) and all(np.array_equal(x, y) for x, y in zip(pa.exemplars, pb.exemplars))
    np.testing.assert_array_equal(pa.tree.query(Z[:50], k=5)[1], pb.tree.query(Z[:50], k=5)[1])
    # the saved core distances stand in for hdbscan's own (slow) generation: same predictions
    full = SegmentClusterer.load(saved)
    full.hdbscan_.generate_prediction_data()
    full.placer_ = DenseGroupPlacer(full.hdbscan_)  # built from hdbscan's own prediction data
    c = full.predict(new, soft=True)
    _assert_same_placement(b, c)
    np.testing.assert_array_equal(b.membership, c.membership)
    assert loaded.hdbscan_.get_params(deep=False)["min_samples"] == sc.hdbscan_.min_samples
    assert loaded.n_clusters_ == sc.n_clusters_ and loaded.saved_metrics_["n_clusters"] == sc.n_clusters_
    assert loaded.get_params() == sc.get_params()
    np.testing.assert_array_equal(loaded.label_order_, sc.label_order_)


def test_identity_scaler_and_reducer_round_trip(tmp_path):
    X = nested_with_outliers(n=900, dim=4, far=10)
    sc = SegmentClusterer(scaler="none", reducer="none", min_cluster_size=30, min_samples=5, n_resamples=0,
                          n_jobs=1, silhouette_sample_size=500).fit(X)
    loaded = SegmentClusterer.load(sc.save(tmp_path / RunLayout.clusterer))
    assert "scaler" not in _members(tmp_path / RunLayout.clusterer)
    new = nested_with_outliers(n=300, dim=4, seed=3, far=5)
    _assert_same_placement(sc.predict(new), loaded.predict(new))


def test_write_cluster_outputs_writes_the_safe_file(clusterer, tmp_path):
    sc, _ = clusterer
    paths = write_cluster_outputs(sc, tmp_path)
    assert Path(paths["clusterer"]).name == RunLayout.clusterer == "clusterer.npz"
    side = json.loads((tmp_path / f"{RunLayout.clusterer}.json").read_text())
    assert side["format_version"] == 3 and side["n_subsegments"] == sc.n_subsegments_
    assert json.loads((tmp_path / "clusters.parquet.json").read_text())["clusterer_sha256"] == file_hash(paths["clusterer"])
    assert not list(tmp_path.glob("*.pkl"))
    X = clusterer[1][:300]
    np.testing.assert_array_equal(SegmentClusterer.load(paths["clusterer"]).predict(X).labels, sc.predict(X).labels)


def test_outcome_aware_round_trip_places_new_points_identically(outcome_clusterer, tmp_path):
    sc, X, out = outcome_clusterer
    assert sc.metrics_["broad"]["space"] == "outcomes" and sc.n_clusters_ == 3
    path = sc.save(tmp_path / RunLayout.clusterer)
    members = _members(path)
    assert {"outcomes.mean", "outcomes.scale", "broad.centers", "broad.merge", "micro.table", "micro.parent"} <= set(members)
    assert members["broad.centers"].shape == (sc.broad_.centers_.shape[0], 2)
    loaded = SegmentClusterer.load(path)
    assert loaded.outcome_space_.columns == ["p_buy", "pred_spend"]
    np.testing.assert_array_equal(loaded.outcome_space_.mean_, sc.outcome_space_.mean_)
    np.testing.assert_array_equal(loaded.outcome_space_.scale_, sc.outcome_space_.scale_)
    new = nested_with_outliers(n=600, dim=12, seed=4, far=10)
    new_out = outcome_scores(len(new), seed=8)
    a, b = sc.predict(new, outcomes=new_out), loaded.predict(new, outcomes=new_out)
    assert (a.labels == -1).any() and len(np.unique(a.labels[a.labels >= 0])) == 3
    _assert_same_placement(a, b)
    with pytest.raises(ClusterInputError, match=r"propensity scores \(p_buy, pred_spend\).*pass outcomes="):
        loaded.predict(new)
    with pytest.raises(ClusterInputError, match=r"lack column\(s\) \['p_buy'\]"):
        loaded.predict(new, outcomes=new_out[["pred_spend"]])


def _corrupt_cases(members, outcome_aware):
    """(name, replaced members, message) for broad and micro arrays that do not describe a hierarchy."""
    table, parent = members["micro.table"], members["micro.parent"]
    merge, centers = members["broad.merge"], members["broad.centers"]
    n_micro = len(parent)
    other_parent = table.copy()  # broad 1's cells point at a micro-segment of broad 0: not nested
    other_parent[1] = table[0, 0]
    cases = [
        ("micro id out of range", {"micro.table": np.where(table == table.max(), n_micro, table)}, "micro-segment table does not fit"),
        ("negative micro id", {"micro.table": np.where(table == 0, -1, table)}, "micro-segment table does not fit"),
        ("micro under the wrong parent", {"micro.table": other_parent}, "micro-segment table does not fit"),
        ("parent out of range", {"micro.parent": np.where(parent == parent.max(), len(np.unique(merge)), parent)},
         "micro-segment table does not fit"),
        ("table of the wrong shape", {"micro.table": table[:-1]}, "micro.table is missing or malformed"),
        ("table of floats", {"micro.table": table.astype(np.float64)}, "micro.table is missing or malformed"),
        ("parent of the wrong shape", {"micro.parent": parent[:, None]}, "micro level is missing"),
        ("merge with a gap", {"broad.merge": np.where(merge == merge.max(), merge.max() + 1, merge)},
         "broad.merge does not number"),
        ("negative merge", {"broad.merge": np.where(merge == 0, -1, merge)}, "broad.merge does not number"),
        ("merge of the wrong length", {"broad.merge": merge[:-1]}, "broad.merge is missing or malformed"),
        ("centres of the wrong width", {"broad.centers": centers[:, :-1]}, "broad centres have"),
        ("centres as integers", {"broad.centers": centers.astype(np.int64)}, "broad level is missing"),
        ("non-finite centres", {"broad.centers": np.where(np.arange(centers.size).reshape(centers.shape) == 0, np.nan, centers)},
         "broad.centers.*not finite"),
    ]
    if outcome_aware:
        scale = members["outcomes.scale"]
        cases += [
            ("zero outcome scale", {"outcomes.scale": np.zeros_like(scale)}, "outcomes.scale.*not finite and positive"),
            ("non-finite outcome mean", {"outcomes.mean": np.full_like(members["outcomes.mean"], np.inf)},
             "outcomes.mean.*not finite"),
            ("outcome mean of the wrong shape", {"outcomes.mean": members["outcomes.mean"][:1]},
             "outcomes.mean is missing or malformed"),
        ]
    return cases


@pytest.mark.parametrize("outcome_aware", [False, True], ids=["representation", "outcomes"])
def test_corrupt_broad_and_micro_arrays_are_refused(outcome_aware, clusterer, outcome_clusterer, tmp_path):
    sc = outcome_clusterer[0] if outcome_aware else clusterer[0]
    good = sc.save(tmp_path / RunLayout.clusterer)
    members = _members(good)
    assert members["micro.table"].shape[0] >= 2, "the test needs several broad segments"
    bad = tmp_path / "bad.npz"
    for name, replace, message in _corrupt_cases(members, outcome_aware):
        bad.write_bytes(good.read_bytes())
        _rewrite(bad, **replace)
        with pytest.raises(ClustererFileError, match=message):
            SegmentClusterer.load(bad)
    for key in ("micro.table", "micro.parent", "broad.merge", "broad.centers") + (("outcomes.scale",) if outcome_aware else ()):
        bad.write_bytes(good.read_bytes())
        _rewrite_without(bad, key)
        with pytest.raises(ClustererFileError, match="corrupt"):
            SegmentClusterer.load(bad)
    meta = json.loads(members["meta"].tobytes())
    meta_cases = [({"outcome_columns": "p_buy"}, "outcome_columns is not a list"),
                  ({"outcome_columns": ["p_buy", "pred_spend", "p_extra"]}, "outcomes.mean is missing or malformed"),
                  ({"outlier_threshold": 7.5}, "outlier_threshold"),
                  ({"outlier_threshold": float("nan")}, "outlier_threshold")]
    if outcome_aware:  # the outcome space dropped: the centres no longer fit the representation
        meta_cases.append(({"outcome_columns": None}, "broad centres have 2 coordinates, expected 6"))
    for change, message in meta_cases:
        bad.write_bytes(good.read_bytes())
        _rewrite(bad, meta=_json_member({**meta, **change}))
        with pytest.raises(ClustererFileError, match=message):
            SegmentClusterer.load(bad)
    assert SegmentClusterer.load(good).n_subsegments_ == sc.n_subsegments_  # the good file still loads


def _rewrite_without(path, key):
    members = _members(path)
    del members[key]
    with open(path, "wb") as f:
        np.savez(f, **members)


# ---- clusterer: what cannot be saved safely -------------------------------------------------------


class HalfDims:
    """A duck-typed reducer: keeps the first half of the dimensions."""

    def fit(self, X, y=None):
        self.k = X.shape[1] // 2
        return self

    def transform(self, X):
        return np.asarray(X)[:, : self.k]


def test_custom_and_umap_reducers_are_refused_at_save_not_pickled(tmp_path):
    X = nested_with_outliers(n=900, dim=8, far=10)
    sc = SegmentClusterer(reducer=HalfDims(), min_cluster_size=30, min_samples=5, n_resamples=0, n_jobs=1,
                          silhouette_sample_size=500).fit(X)
    target = tmp_path / RunLayout.clusterer
    with pytest.raises(ClusterConfigError, match=r"reducer \(.*HalfDims\) cannot be saved safely.*reducer='pca'"):
        sc.save(target)
    sc.reducer = "umap"  # what a UMAP clusterer looks like to save()
    with pytest.raises(ClusterConfigError, match=r"reducer='umap' cannot be saved.*pickle.*reducer='pca'"):
        sc.save(target)
    assert not list(tmp_path.iterdir())  # nothing written, not even a sidecar


# ---- clusterer: versions, truncated and garbage files ------------------------------------------


def test_other_versions_are_refused_and_library_versions_warned(saved, tmp_path):
    header = json.loads(_members(saved)["__header__"].tobytes())
    old = tmp_path / "old.npz"
    old.write_bytes(saved.read_bytes())
    _rewrite(old, __header__=_json_member({**header, "eventseg_version": "0.0.1", "format_version": 0}))
    with pytest.raises(ClustererFileError, match=r"0\.0\.1.*format 0.*" + __version__.replace(".", r"\.") + r".*Re-run cluster"):
        SegmentClusterer.load(old)
    _rewrite(old, __header__=_json_member({**header, "format_version": 2}))  # no broad / micro levels
    with pytest.raises(ClustererFileError, match=r"format 2\).*format 3.*Re-run cluster"):
        SegmentClusterer.load(old)
    _rewrite(old, __header__=_json_member({**header, "hdbscan_version": "0.0.0"}))
    with pytest.warns(UserWarning, match="hdbscan_version 0.0.0"):
        SegmentClusterer.load(old)


def test_truncated_and_garbage_clusterer_files_give_a_clear_error(saved, tmp_path):
    good = saved.read_bytes()
    bad = tmp_path / "bad.npz"
    cases = {
        "half": good[: len(good) // 2],
        "tail cut": good[:-200],
        "empty": b"",
        "garbage": np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes(),
        "zip magic then garbage": b"PK\x03\x04" + b"\x00" * 300,
        "npy, not npz": b"\x93NUMPY" + b"\x00" * 100,
    }
    for name, data in cases.items():
        bad.write_bytes(data)
        with pytest.raises(ClustererFileError, match="not a saved eventseg clusterer|truncated or corrupt"):
            SegmentClusterer.load(bad)
    # a zip that is not a clusterer
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("notes.txt", "hello")
    bad.write_bytes(buf.getvalue())
    with pytest.raises(ClustererFileError, match="no eventseg.cluster.SegmentClusterer header"):
        SegmentClusterer.load(bad)
    # members that do not fit together
    bad.write_bytes(good)
    _rewrite(bad, **{"hdbscan.labels": _members(saved)["hdbscan.labels"][:-3]})
    with pytest.raises(ClustererFileError, match="corrupt.*hdbscan.labels"):
        SegmentClusterer.load(bad)
    ct = _members(saved)["hdbscan.condensed_tree"].copy()
    ct["child"][np.flatnonzero(ct["child_size"] == 1)[0]] = 10**9  # a point id far out of range
    bad.write_bytes(good)
    _rewrite(bad, **{"hdbscan.condensed_tree": ct})
    with pytest.raises(ClustererFileError, match="condensed_tree is not a tree"):
        SegmentClusterer.load(bad)
    ct = _members(saved)["hdbscan.condensed_tree"].copy()
    rows = np.flatnonzero(ct["child_size"] > 1)
    ct["parent"][rows[-1]] = ct["child"][rows[-1]]  # a cluster that is its own parent: a cycle
    bad.write_bytes(good)
    _rewrite(bad, **{"hdbscan.condensed_tree": ct})
    with pytest.raises(ClustererFileError, match="condensed_tree is not a tree"):
        SegmentClusterer.load(bad)
    bad.write_bytes(good)
    _rewrite(bad, scaler=_members(saved)["scaler"][:100])
    with pytest.raises(ClustererFileError, match=r"\(scaler\) is truncated or corrupt"):
        SegmentClusterer.load(bad)
    bad.write_bytes(good)
    _rewrite(bad, meta=_json_member({"params": {"n_components": "many"}}))
    with pytest.raises(ClustererFileError, match="corrupt"):
        SegmentClusterer.load(bad)


def test_an_old_pickle_clusterer_is_named_not_loaded(tmp_path, saved):
    marker = tmp_path / "marker"
    saved.unlink()
    (tmp_path / "clusterer.pkl").write_bytes(pickle.dumps(PickleBomb(marker)))
    with pytest.raises(FileNotFoundError, match="clusterer.pkl is an old pickle clusterer.*re-run cluster"):
        SegmentClusterer.load(tmp_path / RunLayout.clusterer)
    with refused_unrun(marker, ClustererFileError, "is a pickle"):
        SegmentClusterer.load(tmp_path / "clusterer.pkl")


# ---- propensity heads ----------------------------------------------------------------------------


def _heads_data(n=1200, d=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    p = 1 / (1 + np.exp(-(X @ rng.normal(0, 0.8, d) - 0.5)))
    y = (rng.random(n) < p).astype(float)
    Y = pd.DataFrame({"buy": y, "spend": y * np.exp(X[:, 0] + 2), "churn": (rng.random(n) < 0.3).astype(float)})
    return X, Y


@pytest.fixture(scope="module", params=["logistic", "hgb"])
def heads(request):
    X, Y = _heads_data()
    h = PropensityHeads(kind=request.param, calibrate=True, seed=0).fit(X[:900], Y[:900], X[900:], Y[900:])
    return h, X


def test_heads_round_trip_gives_identical_predictions(heads, tmp_path):
    h, X = heads
    path = h.save(tmp_path / "heads")
    assert (path / ESTIMATORS_FILE).exists() and not (path / LEGACY_ESTIMATORS_FILE).exists()
    names = skops_type_names((path / ESTIMATORS_FILE).read_bytes())
    assert names <= set(ESTIMATOR_SKOPS_TYPES), names
    loaded = PropensityHeads.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(X), h.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(X), h.predict(X))
    assert sorted(loaded.estimators_) == sorted(h.estimators_) == ["buy", "churn", "spend"]


def test_poisoned_heads_estimators_are_refused_unrun(heads, tmp_path):
    h, _ = heads
    path = h.save(tmp_path / "heads")
    marker = tmp_path / "marker"
    (path / ESTIMATORS_FILE).write_bytes(sio.dumps({"buy": SkopsBomb(marker)}))
    with refused_unrun(marker, HeadsFileError, "names types that eventseg never loads.*SkopsBomb"):
        PropensityHeads.load(path)
    # the old joblib file (a pickle) in place of the skops one: named, never unpickled
    (path / ESTIMATORS_FILE).unlink()
    (path / LEGACY_ESTIMATORS_FILE).write_bytes(pickle.dumps(PickleBomb(marker)))
    with refused_unrun(marker, HeadsFileError, "estimators.joblib, the old pickle-based format: it is not loaded"):
        PropensityHeads.load(path)


def test_heads_refuse_a_skops_file_with_types_outside_the_allowlist(heads, tmp_path):
    """A scikit-learn estimator skops trusts by default, but not one the heads ever save."""
    from sklearn.neighbors import KNeighborsClassifier

    h, X = heads
    path = h.save(tmp_path / "heads")
    estimators = dict(h.estimators_, buy=KNeighborsClassifier().fit(X[:50], X[:50, 0] > 0))
    (path / ESTIMATORS_FILE).write_bytes(sio.dumps(estimators))
    with pytest.raises(HeadsFileError, match="never loads.*KNeighborsClassifier"):
        PropensityHeads.load(path)


def test_heads_truncated_or_garbage_files_give_a_clear_error(heads, tmp_path):
    h, _ = heads
    path = h.save(tmp_path / "heads")
    good = (path / ESTIMATORS_FILE).read_bytes()
    for data in (good[: len(good) // 2], good[:-50], b"", b"garbage" * 100):
        (path / ESTIMATORS_FILE).write_bytes(data)
        with pytest.raises(HeadsFileError, match="truncated or corrupt"):
            PropensityHeads.load(path)
    (path / ESTIMATORS_FILE).unlink()
    with pytest.raises(HeadsFileError, match=r"no saved model for \['buy', 'churn', 'spend'\]"):
        PropensityHeads.load(path)
    (path / "heads.json").write_text("{not json")
    with pytest.raises(HeadsFileError, match="heads.json is not valid JSON"):
        PropensityHeads.load(path)


def test_crafted_gradient_boosting_trees_are_refused(tmp_path):
    """TreePredictor nodes are walked without bounds checks: links out of range are refused."""
    X, Y = _heads_data(n=600)
    h = PropensityHeads(kind="hgb", calibrate=False, seed=0).fit(X[:450], Y[:450], X[450:], Y[450:])
    path = h.save(tmp_path / "heads")
    est = h.estimators_["buy"]
    tree = est._predictors[0][0]
    saved_nodes = tree.nodes.copy()
    try:
        inner = np.flatnonzero(tree.nodes["is_leaf"] == 0)[0]
        tree.nodes["left"][inner] = 10**6
        (path / ESTIMATORS_FILE).write_bytes(sio.dumps(h.estimators_))
    finally:
        tree.nodes = saved_nodes
    with pytest.raises(HeadsFileError, match="out-of-range node links"):
        PropensityHeads.load(path)
