"""HDBSCAN segmentation: recovery, determinism, placement of new customers, the sweep,
stability metrics, save/load, input errors, the script and atomic outputs."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import adjusted_rand_score

from eventseg import __version__
from eventseg.cluster import (
    ClusterConfigError,
    ClustererFileError,
    ClusterInputError,
    SegmentClusterer,
    _Placer,
    cluster_from_config,
    write_cluster_outputs,
)

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(n_resamples=2, n_jobs=1, silhouette_sample_size=2000)


def blobs(n=2500, k=5, dim=64, seed=0, spread=1.0, centers=None):
    rng = np.random.default_rng(seed)
    if centers is None:
        centers = np.random.default_rng(100).normal(0, 2.5, (k, dim))
    y = rng.integers(0, len(centers), n)
    X = centers[y] + rng.normal(0, spread, (n, dim))
    return X.astype(np.float32), y, centers


def nested_blobs(n=3000, dim=32, seed=0):
    """3 well-separated groups, each made of 2 sub-blobs: 2-3 coarse or 6 fine segments."""
    rng = np.random.default_rng(seed)
    groups = np.random.default_rng(200).normal(0, 12, (3, dim))
    offsets = np.random.default_rng(300).normal(0, 2.2, (6, dim))
    centers = groups[np.arange(6) // 2] + offsets
    y = rng.integers(0, 6, n)
    return (centers[y] + rng.normal(0, 0.5, (n, dim))).astype(np.float32), y


def write_embeddings_parquet(path, ids, X):
    vec = pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1), type=pa.float32()), X.shape[1])
    pq.write_table(pa.table({"customer_id": pa.array(ids, type=pa.int64()), "embedding": vec}), path)


@pytest.fixture(scope="module")
def fitted():
    X, y, centers = blobs()
    ids = np.arange(len(X)) + 5000
    return SegmentClusterer(seed=0, **FAST).fit(X, ids), X, y, centers, ids


# ---- recovery, determinism, placement ------------------------------------------------------


def test_recovers_planted_clusters(fitted):
    sc, X, y, _, ids = fitted
    assert sc.n_clusters_ == 5
    assert adjusted_rand_score(y, sc.labels_) > 0.9
    df = sc.assignments()
    assert list(df.columns) == ["customer_id", "cluster", "membership_strength", "outlier_score", "is_noise"]
    assert df["customer_id"].tolist() == ids.tolist()
    assert df["cluster"].dtype == np.int32 and df["is_noise"].dtype == bool
    assert df["membership_strength"].between(0, 1).all() and df["outlier_score"].between(0, 1).all()
    assert (df["is_noise"] == (df["cluster"] == -1)).all()
    sizes = df[df.cluster >= 0].cluster.value_counts().sort_index().to_numpy()
    assert (np.diff(sizes) <= 0).all(), "segment 0 is the largest"
    m = sc.metrics_
    for key in ("n_clusters", "noise_share", "cluster_sizes", "relative_validity", "silhouette", "stability",
                "chosen", "sweep", "selection"):
        assert key in m
    assert m["silhouette"] > 0.5 and m["stability"]["ari_mean"] > 0.9 and m["stability"]["unstable_segments"] == []
    assert m["chosen"]["auto"] and len(sc.sweep_) >= 2 and sc.sweep_["chosen"].sum() == 1
    json.dumps(m)  # JSON-friendly


def test_same_seed_same_result(fitted):
    sc, X, _, _, ids = fitted
    again = SegmentClusterer(seed=0, **FAST).fit(X, ids)
    np.testing.assert_array_equal(again.labels_, sc.labels_)
    np.testing.assert_array_equal(again.membership_strength_, sc.membership_strength_)
    np.testing.assert_array_equal(again.outlier_score_, sc.outlier_score_)
    assert again.metrics_["stability"] == sc.metrics_["stability"]
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
    # a far-away point is noise with a high outlier score
    far = sc.predict(np.full((1, X.shape[1]), 40.0, dtype=np.float32))
    assert far.labels[0] == -1 and far.is_noise[0] and far.outlier_score[0] > 0.5
    soft = sc.predict(Xn[:50], soft=True).membership
    assert soft.shape == (50, sc.n_clusters_)
    assert (soft.argmax(axis=1) == pred.labels[:50])[pred.labels[:50] >= 0].mean() > 0.9
    assert sc.training_membership().shape == (len(X), sc.n_clusters_)


def test_vectorised_placement_matches_hdbscan(fitted):
    import hdbscan

    sc, X, _, centers, _ = fitted
    Xn, _, _ = blobs(n=300, seed=11, centers=centers, spread=1.6)
    Z = np.vstack([sc.transform(Xn), sc.hdbscan_.prediction_data_.raw_data[:20]])
    labels, prob, scores = _Placer(sc.hdbscan_).place(Z)
    ref_labels, ref_prob = hdbscan.approximate_predict(sc.hdbscan_, Z)
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_allclose(prob, ref_prob, atol=1e-12)
    np.testing.assert_allclose(scores, hdbscan.approximate_predict_scores(sc.hdbscan_, Z), atol=1e-12)


def test_fit_on_sample_places_the_rest():
    X, y, _ = blobs(n=4000, seed=3)
    sc = SegmentClusterer(fit_sample_size=1000, n_resamples=0, n_jobs=1).fit(X)
    assert len(sc.fit_index_) == 1000 and len(sc.labels_) == 4000
    assert adjusted_rand_score(y, sc.labels_) > 0.9
    assert sc.metrics_["n_fit_sample"] == 1000 and sc.metrics_["stability"]["n_resamples"] == 0


def test_identical_customers_form_a_clean_segment():
    """One-event customers collapse to one embedding: finite numbers, their own dense segment."""
    X, y, _ = blobs(n=2000, k=3, seed=5)
    X[:500] = X[0] + 0.0
    X[500:600] = X[0] + np.random.default_rng(1).normal(0, 1e-5, (100, X.shape[1]))
    sc = SegmentClusterer(n_resamples=0, n_jobs=1).fit(X)
    assert np.isfinite(sc.membership_strength_).all() and np.isfinite(sc.outlier_score_).all()
    clump = sc.labels_[:600]
    assert clump[0] >= 0 and (clump == clump[0]).all() and (sc.labels_[600:] != clump[0]).all()
    # exact copies and copies a hair away are alike: neither looks like outliers of the clump
    exact, near = sc.outlier_score_[:500], sc.outlier_score_[500:600]
    assert np.median(exact) < 0.3 and np.median(near) < 0.3 and abs(exact.mean() - near.mean()) < 0.1
    assert sc.metrics_["duplicate_share_fit_sample"] >= 0.25
    pred = sc.predict(X[:3])
    assert (pred.labels == clump[0]).all() and np.isfinite(pred.outlier_score).all()


def test_custom_reducer_by_duck_typing_and_no_reducer():
    from sklearn.decomposition import TruncatedSVD

    X, y, _ = blobs(n=1500, k=4, dim=16, seed=2)
    sc = SegmentClusterer(reducer=TruncatedSVD(5, random_state=0), n_resamples=0, n_jobs=1).fit(X)
    assert adjusted_rand_score(y, sc.labels_) > 0.9 and sc.transform(X[:2]).shape == (2, 5)
    sc = SegmentClusterer(reducer="none", n_resamples=0, n_jobs=1).fit(X)
    assert adjusted_rand_score(y, sc.labels_) > 0.9 and sc.transform(X[:2]).shape == (2, 16)


# ---- the sweep ------------------------------------------------------------------------------


def test_requested_segment_range_is_respected():
    X, _ = nested_blobs()
    fine = SegmentClusterer(n_segments=[5, 8], n_resamples=0, n_jobs=1).fit(X)
    assert 5 <= fine.n_clusters_ <= 8
    assert fine.sweep_.loc[fine.sweep_.chosen, "in_range"].item() and fine.metrics_["selection"]["status"] == "ok"
    coarse = SegmentClusterer(n_segments=[2, 3], n_resamples=0, n_jobs=1).fit(X)
    assert 2 <= coarse.n_clusters_ <= 3
    with pytest.warns(UserWarning, match="closest"):
        far = SegmentClusterer(n_segments=[20, 30], n_resamples=0, n_jobs=1).fit(X)
    assert far.metrics_["selection"]["status"] == "fallback" and far.n_clusters_ >= 2


def test_given_parameters_skip_the_sweep():
    X, y, _ = blobs(n=1500, seed=4)
    sc = SegmentClusterer(min_cluster_size=40, min_samples=5, n_resamples=0, n_jobs=1).fit(X)
    assert len(sc.sweep_) == 1 and sc.metrics_["selection"]["status"] == "given"
    assert (sc.min_cluster_size_, sc.min_samples_) == (40, 5) and not sc.metrics_["chosen"]["auto"]
    share = SegmentClusterer(min_cluster_size=0.05, min_samples=5, n_resamples=0, n_jobs=1).fit(X)
    assert share.min_cluster_size_ == 75


# ---- save / load -----------------------------------------------------------------------------


def test_save_load_round_trip(fitted, tmp_path):
    sc, X, _, centers, _ = fitted
    path = sc.save(tmp_path / "clusterer.npz")
    assert (tmp_path / "clusterer.npz.json").exists()
    loaded = SegmentClusterer.load(path)
    Xn, _, _ = blobs(n=300, seed=9, centers=centers)
    a, b = sc.predict(Xn), loaded.predict(Xn)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.membership_strength, b.membership_strength)
    np.testing.assert_array_equal(a.outlier_score, b.outlier_score)
    assert loaded.n_clusters_ == sc.n_clusters_ and loaded.saved_metrics_["n_clusters"] == sc.n_clusters_


def test_load_refuses_non_clusterers(fitted, tmp_path):
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"not a pickle")
    with pytest.raises(ClustererFileError, match="not a saved eventseg clusterer"):
        SegmentClusterer.load(junk)
    with pytest.raises(FileNotFoundError):
        SegmentClusterer.load(tmp_path / "missing.pkl")


# ---- input errors ---------------------------------------------------------------------------


def test_bad_embeddings_are_named(fitted):
    X, _, _ = blobs(n=300)
    ids = np.arange(300) + 100
    bad = X.copy()
    bad[[5, 9]] = np.nan
    with pytest.raises(ClusterInputError, match=r"2 customer\(s\).*NaN.*customer 105"):
        SegmentClusterer(n_jobs=1).fit(bad, ids)
    bad = X.copy()
    bad[7, 3] = np.inf
    with pytest.raises(ClusterInputError, match=r"1 customer\(s\).*customer 107.*infinite"):
        SegmentClusterer(n_jobs=1).fit(bad, ids)
    dup = ids.copy()
    dup[[10, 11, 12]] = 100
    with pytest.raises(ClusterInputError, match=r"1 customer id\(s\) appear more than once \(4 rows\).*100 appears 4"):
        SegmentClusterer(n_jobs=1).fit(X, dup)
    with pytest.raises(ClusterInputError, match="too few customers to cluster: 15"):
        SegmentClusterer(n_jobs=1).fit(X[:15])
    with pytest.raises(ClusterInputError, match="300 customer ids for 299 embedding rows"):
        SegmentClusterer(n_jobs=1).fit(X[:299], ids)
    with pytest.raises(ClusterInputError, match="more than half"):
        SegmentClusterer(min_cluster_size=200, n_jobs=1).fit(X)
    sc = fitted[0]
    with pytest.raises(ClusterInputError, match="32 dimensions.*64-dimensional"):
        sc.predict(np.zeros((3, 32), dtype=np.float32))
    with pytest.raises(ClusterInputError, match="NaN"):
        sc.predict(np.full((2, 64), np.nan, dtype=np.float32))


def test_bad_settings_are_named():
    with pytest.raises(ClusterConfigError, match="n_segments"):
        SegmentClusterer(n_segments=[8, 4])
    with pytest.raises(ClusterConfigError, match="unknown reducer 'tsne'"):
        SegmentClusterer(reducer="tsne").fit(blobs(n=300)[0])
    with pytest.raises(ClusterConfigError, match="unknown cluster setting"):
        SegmentClusterer.from_config({"min_cluster_sise": 5})
    try:
        import umap  # noqa: F401
    except ImportError:
        with pytest.raises(ClusterConfigError, match=r"pip install eventseg\[umap\]"):
            SegmentClusterer(reducer="umap").fit(blobs(n=300)[0])


# ---- outputs and the script ----------------------------------------------------------------


def test_outputs_are_atomic(fitted, tmp_path, monkeypatch):
    sc = fitted[0]
    paths = write_cluster_outputs(sc, tmp_path)
    for p in paths.values():
        assert Path(p).exists() and Path(p + ".json").exists() or p.endswith(".json")
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
    df = pd.read_parquet(res["clusters"])
    assert df["customer_id"].tolist() == ids.tolist() and adjusted_rand_score(y, df["cluster"]) > 0.9
    side = json.loads(Path(res["clusters"] + ".json").read_text())
    assert side["rows"] == 1200 and side["clusterer_sha256"] and side["embeddings"].endswith("embeddings.parquet")


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
    assert len(pd.read_csv(out / "cluster_sweep.csv")) == len(metrics["sweep"])
    again = SegmentClusterer.load(out / "clusterer.npz").predict(X)
    assert adjusted_rand_score(pd.read_parquet(out / "clusters.parquet")["cluster"], again.labels) > 0.95
