"""Stage 4, cluster: customer embeddings in, HDBSCAN segments out, and a saved clusterer that
places new customers into the same segments without refitting.

Pipeline (one estimator-like object, BERTopic style, each step swappable by duck typing):

    standardise (StandardScaler)  →  reduce (PCA default | UMAP | any object with fit/transform)
      →  hdbscan.HDBSCAN(prediction_data=True)  on a seeded fit sample
      →  every other customer placed with approximate prediction (chunked, vectorised)

- min_cluster_size / min_samples are chosen automatically unless set: a small sweep scored by
  relative validity (hdbscan's cheap DBCV approximation, which already counts noise against
  a setting), with a noise ceiling, a minimum segment size and an optional requested range of
  segment counts (`n_segments=[4, 8]`). The sweep table is kept (`sweep_`).
- Stability: refit on seeded subsamples of the fit sample, place the held-out points, compare
  with the main fit (adjusted Rand index, share of customers that change segment, per-segment
  best Jaccard overlap; segments that do not survive most resamples are flagged).
- Segment ids are ordered by size in the fit sample: 0 is the largest; -1 is noise.
- Placement of new points reproduces `hdbscan.approximate_predict` and
  `hdbscan.approximate_predict_scores` exactly, but vectorised over points (the library loops
  in Python and scans the condensed tree per point, ~200 µs a point), so millions of
  customers are placed in seconds plus one nearest-neighbour query each.

Outputs of `write_cluster_outputs` (each atomic, each with a `<name>.json` sidecar):
clusters.parquet, clusterer.npz, cluster_metrics.json, cluster_sweep.csv.
"""

from __future__ import annotations

import logging
import math
import io
import json
import os
import shutil
import tempfile
import time
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from eventseg import __version__
from eventseg.artifacts import atomic_path, file_hash, sidecar_path, write_json, write_sidecar
from eventseg.errors import UserError

log = logging.getLogger(__name__)

FORMAT = "eventseg.cluster.SegmentClusterer"
FORMAT_VERSION = 2  # 1: pickle (no longer loaded); 2: NPZ arrays + JSON + skops
REDUCERS = ("pca", "umap", "none")
SELECTION_METHODS = ("eom", "leaf")
DEFAULT_SWEEP_SHARES = (0.005, 0.01, 0.02, 0.04)
DEFAULT_SWEEP_MIN_SAMPLES = (10, 25)
CLUSTERS_FILE = "clusters.parquet"
CLUSTERER_FILE = "clusterer.npz"
LEGACY_CLUSTERER_FILE = "clusterer.pkl"  # the old pickle format: recognised, never loaded
METRICS_FILE = "cluster_metrics.json"
SWEEP_FILE = "cluster_sweep.csv"
NOISE = -1


class ClusterInputError(UserError):
    """The embeddings cannot be clustered as given (NaN, duplicate ids, too few customers, wrong dim)."""


class ClusterConfigError(UserError):
    """A clustering setting is invalid or needs an optional dependency."""


class ClustererFileError(UserError):
    """A saved clusterer is missing, corrupt, or was written by another format/eventseg version."""


# ---- input checks -------------------------------------------------------------------------


def _example(values) -> str:
    v = values[0]
    return repr(v.item() if hasattr(v, "item") else v)


def check_embeddings(matrix, ids=None, *, expected_dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ids, float32 C-contiguous [n, dim]) or ClusterInputError naming the problem, count and an example."""
    matrix = np.asarray(matrix)
    if matrix.ndim != 2:
        raise ClusterInputError(f"embeddings must be a 2-D array [customers, dim], got shape {matrix.shape}")
    if not (np.issubdtype(matrix.dtype, np.floating) or np.issubdtype(matrix.dtype, np.integer)):
        raise ClusterInputError(f"embeddings must be numeric, got dtype {matrix.dtype}")
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    n, dim = matrix.shape
    if expected_dim is not None and dim != expected_dim:
        raise ClusterInputError(
            f"embeddings have {dim} dimensions but the clusterer was fitted on {expected_dim}-dimensional "
            "embeddings: use embeddings from the same model (or re-run cluster on the new ones)")
    ids = np.arange(n) if ids is None else np.asarray(ids)
    if ids.ndim != 1 or len(ids) != n:
        raise ClusterInputError(f"{len(ids)} customer ids for {n} embedding rows")
    bad = np.zeros(n, dtype=bool)
    for start in range(0, n, 200_000):  # chunked: no n x dim boolean temporary
        bad[start:start + 200_000] = ~np.isfinite(matrix[start:start + 200_000]).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        kind = "NaN" if np.isnan(matrix[rows[0]]).any() else "infinite"
        raise ClusterInputError(
            f"{len(rows)} customer(s) have NaN or infinite embedding values, e.g. customer {_example(ids[rows])} "
            f"(row {rows[0]}, {kind}); re-run embed or drop them")
    if n:
        dup = pd.Series(ids).duplicated(keep=False).to_numpy()
        if dup.any():
            dup_ids = pd.unique(ids[dup])
            raise ClusterInputError(
                f"{len(dup_ids)} customer id(s) appear more than once ({int(dup.sum())} rows), e.g. "
                f"{_example(dup_ids)} appears {int((ids == dup_ids[0]).sum())} times; each customer needs one embedding")
    return ids, matrix


def _parse_range(n_segments) -> tuple[int, int] | None:
    if n_segments is None:
        return None
    if isinstance(n_segments, (int, np.integer)):
        lo = hi = int(n_segments)
    else:
        vals = list(n_segments)
        if len(vals) != 2:
            raise ClusterConfigError(f"n_segments must be an int or a [min, max] pair, got {n_segments!r}")
        lo, hi = int(vals[0]), int(vals[1])
    if lo < 2 or hi < lo:
        raise ClusterConfigError(f"n_segments must satisfy 2 <= min <= max, got [{lo}, {hi}]")
    return lo, hi


# ---- vectorised approximate prediction ------------------------------------------------------


class _Placer:
    """Arrays derived once from a fitted HDBSCAN's condensed tree and prediction data, so that
    labels, membership strengths and GLOSH outlier scores of new points are computed for a
    whole chunk at once. Matches hdbscan.approximate_predict / approximate_predict_scores."""

    def __init__(self, hdb, n_jobs: int = 1):
        pdata = hdb.prediction_data_
        raw = hdb.condensed_tree_._raw_tree
        self.tree = pdata.tree
        self.core = np.asarray(pdata.core_distances, dtype=np.float64)
        self.min_samples = int(hdb.min_samples or hdb.min_cluster_size)
        self.n_fit = n = pdata.raw_data.shape[0]
        self.dim = pdata.raw_data.shape[1]
        self.n_jobs = max(1, int(n_jobs))
        self.has_clusters = pdata.cluster_tree.shape[0] > 0
        parent = raw["parent"].astype(np.int64)
        child = raw["child"].astype(np.int64)
        lam = raw["lambda_val"].astype(np.float64)
        self.root = int(parent.min()) if len(raw) else n
        n_nodes = int(max(parent.max(), child.max())) - self.root + 1 if len(raw) else 1
        pts = child < n
        self.point_parent = np.full(n, self.root, dtype=np.int64)
        self.point_lambda = np.zeros(n, dtype=np.float64)
        # get_tree_row_with_child takes the first row naming the point: keep first occurrences
        rows = np.flatnonzero(pts)[::-1]
        self.point_parent[child[rows]] = parent[rows]
        self.point_lambda[child[rows]] = lam[rows]
        # cluster tree (rows whose child is a cluster): child -> (parent, lambda)
        ct = pdata.cluster_tree
        self.node_parent = np.full(n_nodes, -1, dtype=np.int64)
        self.node_lambda = np.full(n_nodes, -np.inf, dtype=np.float64)
        c_child = ct["child"].astype(np.int64)
        self.node_parent[c_child - self.root] = ct["parent"].astype(np.int64)
        self.node_lambda[c_child - self.root] = ct["lambda_val"].astype(np.float64)
        self.node_label = np.full(n_nodes, NOISE, dtype=np.int64)
        self.node_max_lambda = np.zeros(n_nodes, dtype=np.float64)
        for node, label in pdata.cluster_map.items():
            self.node_label[int(node) - self.root] = label
            self.node_max_lambda[int(node) - self.root] = pdata.max_lambdas[node]
        # outlier scores: max lambda below each node (as approximate_predict_scores builds it)
        group_max = np.full(n_nodes, -np.inf)
        np.maximum.at(group_max, parent - self.root, lam)
        for r in range(len(raw) - 1, -1, -1):
            c = child[r]
            if c >= n and group_max[c - self.root] > group_max[parent[r] - self.root]:
                group_max[parent[r] - self.root] = group_max[c - self.root]
        self.score_max_lambda = group_max

    def _query(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = min(2 * self.min_samples, self.n_fit)
        if self.n_jobs == 1 or len(Z) < 4096:
            return self.tree.query(Z, k=k)
        parts = np.array_split(np.arange(len(Z)), self.n_jobs * 4)
        with ThreadPoolExecutor(self.n_jobs) as pool:  # KDTree.query releases the GIL
            res = list(pool.map(lambda p: self.tree.query(Z[p], k=k), parts))
        return np.vstack([r[0] for r in res]), np.vstack([r[1] for r in res])

    def place(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(hdbscan labels, membership strengths, raw GLOSH outlier scores) for reduced points Z."""
        m = len(Z)
        if m == 0:
            return np.empty(0, np.int64), np.empty(0), np.empty(0)
        Z = np.ascontiguousarray(Z, dtype=np.float64)
        if not self.has_clusters:
            return np.full(m, NOISE, np.int64), np.zeros(m), np.ones(m)
        dist, idx = self._query(Z)
        ms = min(self.min_samples, dist.shape[1] - 1)
        mr = np.maximum(np.maximum(self.core[idx], dist[:, ms:ms + 1]), dist)
        j = mr.argmin(axis=1)
        rows = np.arange(m)
        nn = idx[rows, j]
        mr_min = mr[rows, j]
        with np.errstate(divide="ignore"):
            lam = np.where(mr_min > 0, 1.0 / np.where(mr_min > 0, mr_min, 1.0), np.finfo(np.float64).max)
        leaf = self.point_parent[nn]
        # labels: walk up from the neighbour's cluster while the new point joins above its birth
        pc = leaf.copy()
        active = np.flatnonzero(self.point_lambda[nn] > lam)
        while active.size:
            cur = pc[active]
            keep = cur > self.root
            active, cur = active[keep], cur[keep]
            move = self.node_lambda[cur - self.root] >= lam[active]
            active, cur = active[move], cur[move]
            pc[active] = self.node_parent[cur - self.root]
        labels = self.node_label[pc - self.root]
        ml = self.node_max_lambda[pc - self.root]
        safe_ml = np.where(ml > 0, ml, 1.0)
        prob = np.where(labels >= 0, np.where(ml > 0, np.minimum(ml, lam) / safe_ml, 1.0), 0.0)
        # outlier scores (GLOSH), against the neighbour's own cluster
        lam_s = np.where(dist[:, 0] == 0, self.point_lambda[nn], lam)
        sml = self.score_max_lambda[leaf - self.root]
        with np.errstate(invalid="ignore", over="ignore"):
            scores = np.where(sml > 0, (sml - lam_s) / np.where(sml > 0, sml, 1.0), 0.0)
        return labels, prob, scores


# ---- results ------------------------------------------------------------------------------


@dataclass
class ClusterPrediction:
    """Segments for a set of customers. `membership` (optional): soft membership [n, n_segments]."""

    labels: np.ndarray
    membership_strength: np.ndarray
    outlier_score: np.ndarray
    membership: np.ndarray | None = None

    @property
    def is_noise(self) -> np.ndarray:
        return self.labels == NOISE

    def to_frame(self, ids=None, id_col: str = "customer_id") -> pd.DataFrame:
        n = len(self.labels)
        df = pd.DataFrame({
            id_col: np.arange(n) if ids is None else np.asarray(ids),
            "cluster": self.labels.astype(np.int32),
            "membership_strength": self.membership_strength.astype(np.float32),
            "outlier_score": self.outlier_score.astype(np.float32),
            "is_noise": self.is_noise,
        })
        if self.membership is not None:
            for j in range(self.membership.shape[1]):
                df[f"membership_{j}"] = self.membership[:, j].astype(np.float32)
        return df


class _Identity:
    """The 'none' reducer."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return X


def make_reducer(reducer: Any = "pca", n_components: int = 10, seed: int = 0, dim: int | None = None,
                 n_fit: int | None = None, umap_kwargs: dict | None = None):
    """A fresh reducer: 'pca' | 'umap' | 'none', or any object with fit/transform (used as is)."""
    if not isinstance(reducer, str):
        if not (hasattr(reducer, "fit") and hasattr(reducer, "transform")):
            raise ClusterConfigError(f"reducer must be one of {REDUCERS} or an object with fit/transform, got {reducer!r}")
        return reducer
    if reducer not in REDUCERS:
        raise ClusterConfigError(f"unknown reducer {reducer!r}; choose one of {REDUCERS}")
    if reducer == "none":
        return _Identity()
    k = int(n_components)
    if k < 1:
        raise ClusterConfigError(f"n_components must be >= 1, got {n_components}")
    if reducer == "pca":
        from sklearn.decomposition import PCA

        k = min(k, dim or k, n_fit or k)
        return PCA(n_components=k, svd_solver="full", random_state=seed)
    try:
        import umap  # type: ignore
    except ImportError:
        raise ClusterConfigError(
            "reducer='umap' needs the optional umap-learn package: pip install eventseg[umap] "
            "(or use reducer=pca)") from None
    kw = {"n_neighbors": 30, "min_dist": 0.0, "metric": "euclidean", **(umap_kwargs or {})}
    return umap.UMAP(n_components=k, random_state=seed, **kw)


def _make_scaler(scaler: Any):
    if scaler is None or scaler == "standard":
        from sklearn.preprocessing import StandardScaler

        return StandardScaler()
    if scaler == "none":
        return _Identity()
    if hasattr(scaler, "fit") and hasattr(scaler, "transform"):
        return scaler
    raise ClusterConfigError(f"scaler must be 'standard', 'none' or an object with fit/transform, got {scaler!r}")


# ---- the clusterer ------------------------------------------------------------------------


class SegmentClusterer:
    """standardise → reduce → HDBSCAN, fitted on a seeded sample; every customer gets a segment.

    >>> sc = SegmentClusterer(n_segments=[4, 8]).fit(matrix, ids)
    >>> sc.assignments()                      # customer_id, cluster, membership_strength, outlier_score, is_noise
    >>> sc.metrics_["n_clusters"], sc.sweep_  # chosen setting and the sweep table
    >>> sc.save("clusterer.npz"); SegmentClusterer.load("clusterer.npz").predict(new_matrix)

    After fit: labels_, membership_strength_, outlier_score_, is_noise_ (one per input row),
    ids_, fit_index_ (rows used to fit), min_cluster_size_, min_samples_, sweep_, metrics_.
    """

    def __init__(
        self,
        *,
        reducer: Any = "pca",
        n_components: int = 10,
        scaler: Any = "standard",
        min_cluster_size: int | float | None = None,
        min_samples: int | None = None,
        cluster_selection_method: str = "eom",
        min_segment_share: float = 0.01,
        min_segment_size: int = 10,
        max_noise_share: float = 0.5,
        n_segments: int | Sequence[int] | None = None,
        fit_sample_size: int | None = 50_000,
        sweep_min_cluster_size_shares: Sequence[float] = DEFAULT_SWEEP_SHARES,
        sweep_min_samples: Sequence[int] = DEFAULT_SWEEP_MIN_SAMPLES,
        n_resamples: int = 5,
        resample_share: float = 0.8,
        unstable_jaccard: float = 0.5,
        silhouette_sample_size: int = 20_000,
        chunk_size: int = 100_000,
        n_jobs: int = -1,
        seed: int = 0,
        umap_kwargs: dict | None = None,
    ):
        if cluster_selection_method not in SELECTION_METHODS:
            raise ClusterConfigError(f"cluster_selection_method must be one of {SELECTION_METHODS}, got {cluster_selection_method!r}")
        if not 0 < float(min_segment_share) < 0.5:
            raise ClusterConfigError(f"min_segment_share must be in (0, 0.5), got {min_segment_share}")
        if not 0 < float(max_noise_share) <= 1:
            raise ClusterConfigError(f"max_noise_share must be in (0, 1], got {max_noise_share}")
        if not 0 < float(resample_share) < 1:
            raise ClusterConfigError(f"resample_share must be in (0, 1), got {resample_share}")
        if min_samples is not None and int(min_samples) < 1:
            raise ClusterConfigError(f"min_samples must be >= 1, got {min_samples}")
        if min_cluster_size is not None and not (0 < float(min_cluster_size) < 1 or int(min_cluster_size) >= 2):
            raise ClusterConfigError(f"min_cluster_size must be an int >= 2 or a share in (0, 1), got {min_cluster_size}")
        if fit_sample_size is not None and int(fit_sample_size) < 100:
            raise ClusterConfigError(f"fit_sample_size must be >= 100 (or null for all customers), got {fit_sample_size}")
        self.reducer = reducer
        self.n_components = n_components
        self.scaler = scaler
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.cluster_selection_method = cluster_selection_method
        self.min_segment_share = float(min_segment_share)
        self.min_segment_size = int(min_segment_size)
        self.max_noise_share = float(max_noise_share)
        self.n_segments = _parse_range(n_segments)
        self.fit_sample_size = None if fit_sample_size is None else int(fit_sample_size)
        self.sweep_min_cluster_size_shares = tuple(float(s) for s in sweep_min_cluster_size_shares)
        self.sweep_min_samples = tuple(int(s) for s in sweep_min_samples)
        self.n_resamples = int(n_resamples)
        self.resample_share = float(resample_share)
        self.unstable_jaccard = float(unstable_jaccard)
        self.silhouette_sample_size = int(silhouette_sample_size)
        self.chunk_size = int(chunk_size)
        self.n_jobs = (os.cpu_count() or 1) if int(n_jobs) < 1 else int(n_jobs)
        self.seed = int(seed)
        self.umap_kwargs = dict(umap_kwargs or {})
        self._placer: _Placer | None = None

    # ---- construction from config -----------------------------------------------------

    @classmethod
    def from_config(cls, cfg) -> "SegmentClusterer":
        """From a `cluster` config group (configs/cluster/default.yaml)."""
        c = _plain(cfg)
        sweep = c.get("sweep") or {}
        stab = c.get("stability") or {}
        known = {
            "reducer", "n_components", "scaler", "min_cluster_size", "min_samples", "cluster_selection_method",
            "min_segment_share", "min_segment_size", "max_noise_share", "n_segments", "fit_sample_size",
            "silhouette_sample_size", "chunk_size", "n_jobs", "seed", "umap", "sweep", "stability",
        }
        unknown = sorted(set(c) - known)
        if unknown:
            raise ClusterConfigError(f"unknown cluster setting(s) {unknown}; known: {sorted(known)}")
        for group, keys in (("sweep", {"min_cluster_size_shares", "min_samples"}),
                            ("stability", {"n_resamples", "sample_share", "unstable_jaccard"})):
            extra = sorted(set(c.get(group) or {}) - keys)
            if extra:
                raise ClusterConfigError(f"unknown cluster.{group} setting(s) {extra}; known: {sorted(keys)}")
        kw = {k: c[k] for k in known - {"umap", "sweep", "stability"} if k in c}
        for k in ("reducer", "n_components", "scaler", "cluster_selection_method", "min_segment_share",
                  "min_segment_size", "max_noise_share", "silhouette_sample_size", "chunk_size", "n_jobs", "seed"):
            if kw.get(k, 0) is None:  # null means "the default" for these; for the others null is meaningful
                del kw[k]
        if sweep.get("min_cluster_size_shares"):
            kw["sweep_min_cluster_size_shares"] = sweep["min_cluster_size_shares"]
        if sweep.get("min_samples"):
            kw["sweep_min_samples"] = sweep["min_samples"]
        if "n_resamples" in stab:
            kw["n_resamples"] = stab["n_resamples"]
        if "sample_share" in stab:
            kw["resample_share"] = stab["sample_share"]
        if "unstable_jaccard" in stab:
            kw["unstable_jaccard"] = stab["unstable_jaccard"]
        if c.get("umap"):
            kw["umap_kwargs"] = c["umap"]
        return cls(**kw)

    def get_params(self) -> dict:
        return {
            "reducer": self.reducer if isinstance(self.reducer, str) else type(self.reducer).__name__,
            "n_components": self.n_components,
            "scaler": self.scaler if isinstance(self.scaler, str) or self.scaler is None else type(self.scaler).__name__,
            "min_cluster_size": self.min_cluster_size, "min_samples": self.min_samples,
            "cluster_selection_method": self.cluster_selection_method,
            "min_segment_share": self.min_segment_share, "min_segment_size": self.min_segment_size,
            "max_noise_share": self.max_noise_share,
            "n_segments": list(self.n_segments) if self.n_segments else None,
            "fit_sample_size": self.fit_sample_size,
            "sweep": {"min_cluster_size_shares": list(self.sweep_min_cluster_size_shares),
                      "min_samples": list(self.sweep_min_samples)},
            "stability": {"n_resamples": self.n_resamples, "sample_share": self.resample_share,
                          "unstable_jaccard": self.unstable_jaccard},
            "silhouette_sample_size": self.silhouette_sample_size, "seed": self.seed,
        }

    # ---- fitted facts -----------------------------------------------------------------

    @property
    def n_clusters_(self) -> int:
        return int(len(self.label_order_))

    @property
    def is_noise_(self) -> np.ndarray:
        return self.labels_ == NOISE

    @property
    def embedding_dim_(self) -> int:
        return int(self.embedding_dim)

    def _check_fitted(self):
        if not hasattr(self, "hdbscan_"):
            raise RuntimeError("this SegmentClusterer is not fitted yet: call fit() or SegmentClusterer.load()")

    # ---- fit --------------------------------------------------------------------------

    def min_segment_customers(self, n: int) -> int:
        return max(self.min_segment_size, math.ceil(self.min_segment_share * n))

    def fit(self, embeddings, ids=None) -> "SegmentClusterer":
        """Fit on `embeddings` [n, dim] (customer `ids` optional) and assign every row a segment."""
        import hdbscan

        t_start = time.perf_counter()
        timings: dict[str, float] = {}
        ids, X = check_embeddings(embeddings, ids)
        n, dim = X.shape
        floor_all = self.min_segment_customers(n)
        if n < 2 * floor_all:
            raise ClusterInputError(
                f"too few customers to cluster: {n}; two segments of the minimum segment size "
                f"({floor_all} customers: min_segment_share={self.min_segment_share}, min_segment_size="
                f"{self.min_segment_size}) need at least {2 * floor_all}")
        self.embedding_dim = dim
        rng = np.random.default_rng(self.seed)
        if self.fit_sample_size and n > self.fit_sample_size:
            fit_index = np.sort(rng.choice(n, self.fit_sample_size, replace=False))
        else:
            fit_index = np.arange(n)
        n_fit = len(fit_index)

        log.info("clustering %d customers x %d dims; fitting on %d", n, dim, len(fit_index))
        t = time.perf_counter()
        X_fit = X[fit_index]
        self.scaler_ = _make_scaler(self.scaler)
        self.scaler_.fit(X_fit)
        self.reducer_ = make_reducer(self.reducer, self.n_components, self.seed, dim=dim, n_fit=n_fit,
                                     umap_kwargs=self.umap_kwargs)
        self.reducer_.fit(np.asarray(self.scaler_.transform(X_fit)))
        Z_fit = self.transform(X_fit)
        del X_fit
        Z_fit, dup_share = _resolution_floor(Z_fit, self.seed)
        timings["reduce"] = time.perf_counter() - t

        from joblib import Memory

        cache = tempfile.mkdtemp(prefix="eventseg-hdbscan-")
        try:
            # the expensive part of HDBSCAN (core distances, spanning tree) depends on min_samples only:
            # cached, it is built once per min_samples value for the whole sweep and the final fit
            memory = Memory(cache, verbose=0)
            t = time.perf_counter()
            mcs, ms, method, sweep, selection = self._choose_params(Z_fit, memory)
            timings["sweep"] = time.perf_counter() - t
            t = time.perf_counter()
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=RuntimeWarning, module="hdbscan")
                hdb = hdbscan.HDBSCAN(
                    min_cluster_size=mcs, min_samples=ms, cluster_selection_method=method,
                    gen_min_span_tree=True, prediction_data=True, core_dist_n_jobs=1, memory=memory,
                ).fit(Z_fit)
            hdb.memory = None  # the cache is about to go; a saved model must not point at it
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        raw_labels = hdb.labels_.astype(np.int64)
        k = int(raw_labels.max()) + 1 if len(raw_labels) else 0
        sizes = np.bincount(raw_labels[raw_labels >= 0], minlength=k)
        order = np.lexsort((np.arange(k), -sizes))  # largest first, ties by hdbscan label
        self.label_order_ = order  # segment s is hdbscan cluster order[s]
        self._relabel = np.full(k + 1, NOISE, dtype=np.int64)
        self._relabel[order + 1] = np.arange(k)
        self.hdbscan_ = hdb
        self.min_cluster_size_, self.min_samples_, self.cluster_selection_method_ = mcs, ms, method
        self._placer = _Placer(hdb, self.n_jobs)
        timings["fit"] = time.perf_counter() - t

        # every customer: fitted values for the fit sample, placement for the rest
        log.info("min_cluster_size=%d min_samples=%d (%s): %d segments; placing %d more customers",
                 mcs, ms, method, k, n - n_fit)
        t = time.perf_counter()
        labels = np.empty(n, dtype=np.int32)
        strength = np.empty(n, dtype=np.float32)
        outlier = np.empty(n, dtype=np.float32)
        labels[fit_index] = self._relabel[raw_labels + 1]
        strength[fit_index] = np.nan_to_num(hdb.probabilities_, nan=1.0)
        outlier[fit_index] = np.clip(np.nan_to_num(hdb.outlier_scores_, nan=0.0), 0.0, 1.0)
        rest = np.ones(n, dtype=bool)
        rest[fit_index] = False
        rest_index = np.flatnonzero(rest)
        for start in range(0, len(rest_index), self.chunk_size):
            rows = rest_index[start:start + self.chunk_size]
            pred = self._predict_reduced(self.transform(X[rows]))
            labels[rows], strength[rows], outlier[rows] = pred.labels, pred.membership_strength, pred.outlier_score
        timings["place"] = time.perf_counter() - t
        self.ids_, self.fit_index_ = ids, fit_index
        self.labels_, self.membership_strength_, self.outlier_score_ = labels, strength, outlier

        t = time.perf_counter()
        stability = self._stability(Z_fit, raw_labels, mcs, ms, method)
        timings["stability"] = time.perf_counter() - t
        t = time.perf_counter()
        silhouette = self._silhouette(Z_fit, raw_labels)
        timings["silhouette"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t_start
        self.sweep_ = sweep
        self.metrics_ = self._metrics(n, n_fit, hdb, raw_labels, silhouette, stability, selection, dup_share, timings)
        return self

    def fit_predict(self, embeddings, ids=None) -> np.ndarray:
        return self.fit(embeddings, ids).labels_

    def assignments(self, id_col: str = "customer_id") -> pd.DataFrame:
        """One row per fitted customer: id, cluster, membership_strength, outlier_score, is_noise."""
        self._check_fitted()
        if not hasattr(self, "labels_"):
            raise RuntimeError("a loaded clusterer has no fitted customers: use predict(embeddings)")
        return ClusterPrediction(self.labels_, self.membership_strength_, self.outlier_score_).to_frame(self.ids_, id_col)

    # ---- parameter choice ---------------------------------------------------------------

    def _grid(self, n_fit: int) -> tuple[list[int], list[int]]:
        floor = self.min_segment_customers(n_fit)
        if self.min_cluster_size is not None:
            v = float(self.min_cluster_size)
            mcs_grid = [max(2, math.ceil(v * n_fit)) if v < 1 else int(v)]
            if mcs_grid[0] > n_fit // 2:
                raise ClusterInputError(
                    f"min_cluster_size={self.min_cluster_size} ({mcs_grid[0]} customers) is more than half of the "
                    f"{n_fit} customers in the fit sample: at most one segment could be found")
        else:
            mcs_grid = sorted({max(floor, math.ceil(s * n_fit)) for s in self.sweep_min_cluster_size_shares})
            mcs_grid = [m for m in mcs_grid if m <= n_fit // 2] or [floor]
        ms_grid = [int(self.min_samples)] if self.min_samples is not None else sorted(set(self.sweep_min_samples))
        ms_grid = sorted({max(1, min(m, n_fit - 1)) for m in ms_grid})
        return mcs_grid, ms_grid

    def _choose_params(self, Z: np.ndarray, memory):
        import hdbscan

        n_fit = len(Z)
        mcs_grid, ms_grid = self._grid(n_fit)
        floor = self.min_segment_customers(n_fit)
        rows = []

        def run(methods, mcs_values):
            for ms in ms_grid:
                for method in methods:
                    for mcs in mcs_values:
                        t = time.perf_counter()
                        with warnings.catch_warnings():
                            warnings.filterwarnings("ignore", category=RuntimeWarning, module="hdbscan")
                            h = hdbscan.HDBSCAN(min_cluster_size=mcs, min_samples=ms, cluster_selection_method=method,
                                                gen_min_span_tree=True, core_dist_n_jobs=1, memory=memory).fit(Z)
                        lab = h.labels_
                        sizes = np.bincount(lab[lab >= 0]) if (lab >= 0).any() else np.zeros(0, int)
                        k = int(len(sizes))
                        rv = float(h.relative_validity_) if k >= 1 else float("nan")
                        rows.append({
                            "min_cluster_size": mcs, "min_samples": ms, "cluster_selection_method": method,
                            "n_clusters": k, "noise_share": float((lab == NOISE).mean()),
                            "smallest_size": int(sizes.min()) if k else 0,
                            "smallest_share": float(sizes.min() / n_fit) if k else 0.0,
                            "largest_share": float(sizes.max() / n_fit) if k else 0.0,
                            "relative_validity": rv, "seconds": round(time.perf_counter() - t, 3),
                        })

        def unmet() -> bool:
            table = pd.DataFrame(rows)
            return not (self._in_range(table) & self._acceptable(table, floor)).any()

        method = self.cluster_selection_method
        run([method], mcs_grid)
        if self.n_segments and self.min_cluster_size is None and unmet():
            # fewer, larger segments wanted: larger min_cluster_size (the trees are cached, so this is cheap)
            lo = self.n_segments[0]
            bigger, m = [], max(mcs_grid) * 2
            while m <= n_fit // max(lo, 2):
                bigger.append(m)
                m *= 2
            if bigger:
                log.info("no swept setting gives %s segments: trying min_cluster_size %s", self.n_segments, bigger)
                run([method], bigger)
        if self.n_segments and unmet():
            # more, finer segments wanted: the other selection method over the same grid
            other = [m for m in SELECTION_METHODS if m != method]
            log.info("no %s setting gives %s segments: also trying %s selection", method, self.n_segments, other)
            run(other, mcs_grid)
        table = pd.DataFrame(rows)
        table["in_range"] = self._in_range(table)
        table["acceptable"] = self._acceptable(table, floor) & table["in_range"]
        ok = table[table["acceptable"]]
        selection = {"status": "ok", "message": None, "n_segments": list(self.n_segments) if self.n_segments else None}
        if len(table) == 1 and self.min_cluster_size is not None and self.min_samples is not None:
            best = table.index[0]
            selection["status"] = "given"
        elif len(ok):
            # best relative validity (to 1e-3: the MST approximation ties often); then coverage (less
            # noise); then larger min_cluster_size and min_samples (the more robust setting)
            ranked = ok.assign(rv=ok["relative_validity"].round(3))
            best = ranked.sort_values(["rv", "noise_share", "min_cluster_size", "min_samples"],
                                      ascending=[False, True, False, False], kind="stable").index[0]
        else:
            t = table.copy()
            lo, hi = self.n_segments or (2, 10**9)
            t["distance"] = np.maximum(lo - t["n_clusters"], 0) + np.maximum(t["n_clusters"] - hi, 0)
            t["excess_noise"] = np.maximum(t["noise_share"] - self.max_noise_share, 0)
            t["rv"] = t["relative_validity"].fillna(-np.inf)
            best = t.sort_values(["distance", "excess_noise", "rv", "min_cluster_size"],
                                 ascending=[True, True, False, False], kind="stable").index[0]
            row = table.loc[best]
            wanted = f"{lo} to {hi} segments" if self.n_segments else "at least 2 segments"
            msg = (f"no swept setting gives {wanted} with at most {self.max_noise_share:.0%} noise and segments of at "
                   f"least {floor} customers; using the closest: min_cluster_size={int(row.min_cluster_size)}, "
                   f"min_samples={int(row.min_samples)} ({int(row.n_clusters)} segments, {row.noise_share:.1%} noise). "
                   f"See {SWEEP_FILE}.")
            warnings.warn(msg, stacklevel=3)
            selection.update(status="fallback", message=msg)
        table["chosen"] = table.index == best
        row = table.loc[best]
        return int(row.min_cluster_size), int(row.min_samples), str(row.cluster_selection_method), table, selection

    def _in_range(self, table: pd.DataFrame) -> pd.Series:
        if not self.n_segments:
            return pd.Series(True, index=table.index)
        lo, hi = self.n_segments
        return table["n_clusters"].between(lo, hi)

    def _acceptable(self, table: pd.DataFrame, floor: int) -> pd.Series:
        """At least 2 segments, noise within the ceiling, every segment at least `floor` customers."""
        return (table["n_clusters"] >= 2) & (table["noise_share"] <= self.max_noise_share) & (table["smallest_size"] >= floor)

    # ---- placement --------------------------------------------------------------------

    def transform(self, embeddings) -> np.ndarray:
        """Standardised, reduced coordinates (float64 [n, n_components]) of embeddings."""
        X = np.asarray(embeddings, dtype=np.float32)
        Z = self.reducer_.transform(np.asarray(self.scaler_.transform(X), dtype=np.float32))
        return np.ascontiguousarray(Z, dtype=np.float64)

    def _predict_reduced(self, Z: np.ndarray) -> ClusterPrediction:
        if self._placer is None:
            self._placer = _Placer(self.hdbscan_, self.n_jobs)
        raw, prob, score = self._placer.place(Z)
        return ClusterPrediction(
            self._relabel[raw + 1].astype(np.int32), np.nan_to_num(prob, nan=1.0).astype(np.float32),
            np.clip(np.nan_to_num(score, nan=0.0), 0.0, 1.0).astype(np.float32))

    def predict(self, embeddings, *, soft: bool = False) -> ClusterPrediction:
        """Place new customers into the fitted segments without refitting.

        Returns labels (-1 = noise), membership strength in [0, 1] (hdbscan approximate_predict
        probability), GLOSH outlier score in [0, 1] (approximate_predict_scores, clipped) and,
        with soft=True, soft membership over all segments ([n, n_clusters], hdbscan.membership_vector).
        """
        self._check_fitted()
        _, X = check_embeddings(embeddings, expected_dim=self.embedding_dim)
        parts = [self._predict_reduced(self.transform(X[s:s + self.chunk_size])) for s in range(0, len(X), self.chunk_size)]
        pred = ClusterPrediction(
            np.concatenate([p.labels for p in parts]) if parts else np.empty(0, np.int32),
            np.concatenate([p.membership_strength for p in parts]) if parts else np.empty(0, np.float32),
            np.concatenate([p.outlier_score for p in parts]) if parts else np.empty(0, np.float32),
        )
        if soft:
            pred.membership = self.membership(X)
        return pred

    def membership(self, embeddings) -> np.ndarray:
        """Soft membership of new points in every segment, [n, n_clusters] (columns = segment ids)."""
        import hdbscan

        self._check_fitted()
        _, X = check_embeddings(embeddings, expected_dim=self.embedding_dim)
        if self.n_clusters_ == 0:
            return np.zeros((len(X), 0), dtype=np.float32)
        out = []
        for s in range(0, len(X), self.chunk_size):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=RuntimeWarning)
                mv = hdbscan.membership_vector(self.hdbscan_, self.transform(X[s:s + self.chunk_size]))
            out.append(np.asarray(mv, dtype=np.float64).reshape(-1, self.n_clusters_)[:, self.label_order_])
        return np.nan_to_num(np.vstack(out)).astype(np.float32)

    def training_membership(self) -> np.ndarray:
        """Soft membership of the fit-sample customers (rows in fit_index_ order), [n_fit, n_clusters]."""
        import hdbscan

        self._check_fitted()
        if self.n_clusters_ == 0:
            return np.zeros((len(self.hdbscan_.labels_), 0), dtype=np.float32)
        mv = hdbscan.all_points_membership_vectors(self.hdbscan_)
        return np.nan_to_num(np.asarray(mv).reshape(-1, self.n_clusters_)[:, self.label_order_]).astype(np.float32)

    # ---- quality ----------------------------------------------------------------------

    def _silhouette(self, Z: np.ndarray, raw_labels: np.ndarray) -> float | None:
        import sklearn
        from sklearn.metrics import silhouette_score

        keep = np.flatnonzero(raw_labels >= 0)
        if len(np.unique(raw_labels[keep])) < 2:
            return None
        if len(keep) > self.silhouette_sample_size:
            keep = np.sort(np.random.default_rng(self.seed + 1).choice(keep, self.silhouette_sample_size, replace=False))
        with sklearn.config_context(working_memory=64):  # MB per distance chunk (default 1 GB)
            return float(silhouette_score(Z[keep], raw_labels[keep]))

    def _stability(self, Z: np.ndarray, main: np.ndarray, mcs: int, ms: int, method: str) -> dict:
        """Refit on seeded subsamples of the fit sample; compare with the main fit on the fit sample."""
        import hdbscan
        from sklearn.metrics import adjusted_rand_score

        k = int(main.max()) + 1 if len(main) else 0
        if self.n_resamples < 1 or k < 1:
            return {"n_resamples": 0, "skipped": "disabled" if self.n_resamples < 1 else "no segments"}
        n_fit = len(Z)
        m = int(round(self.resample_share * n_fit))
        mcs_r = max(2, int(round(mcs * self.resample_share)))
        aris, changed, changed_nn, counts = [], [], [], []
        jaccard = np.zeros((self.n_resamples, k))
        for r in range(self.n_resamples):
            rng = np.random.default_rng([self.seed, 7919, r])
            sub = np.sort(rng.choice(n_fit, m, replace=False))
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=RuntimeWarning, module="hdbscan")
                h = hdbscan.HDBSCAN(min_cluster_size=mcs_r, min_samples=min(ms, m - 1), cluster_selection_method=method,
                                    prediction_data=True, core_dist_n_jobs=1).fit(Z[sub])
            lab = np.full(n_fit, NOISE, dtype=np.int64)
            lab[sub] = h.labels_
            out = np.ones(n_fit, dtype=bool)
            out[sub] = False
            if out.any():
                lab[out] = _Placer(h, self.n_jobs).place(Z[out])[0]
            kr = int(lab.max()) + 1
            counts.append(kr)
            # contingency: main clusters (+noise) x resample clusters (+noise)
            cont = np.zeros((k + 1, kr + 1), dtype=np.int64)
            np.add.at(cont, (main + 1, lab + 1), 1)
            inter = cont[1:, 1:]
            union = cont[1:, :].sum(1)[:, None] + cont[:, 1:].sum(0)[None, :] - inter
            jac = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
            jaccard[r] = jac.max(axis=1) if kr else 0.0
            mapping = np.full(kr + 1, NOISE, dtype=np.int64)
            if kr:
                mapping[1:] = jac.argmax(axis=0)  # each resample cluster → best-overlapping main cluster
            mapped = mapping[lab + 1]
            both = (main >= 0) & (lab >= 0)
            aris.append(float(adjusted_rand_score(main[both], lab[both])) if both.sum() > 1 else float("nan"))
            changed.append(float((mapped != main).mean()))
            changed_nn.append(float((mapped[both] != main[both]).mean()) if both.any() else float("nan"))
        survived = (jaccard >= self.unstable_jaccard).sum(axis=0)
        unstable_raw = np.flatnonzero(survived <= self.n_resamples / 2)  # fails in most resamples
        seg_jac = {int(s): round(float(jaccard[:, self.label_order_[s]].mean()), 4) for s in range(k)}
        return {
            "n_resamples": self.n_resamples, "sample_share": self.resample_share,
            "evaluated_on": int(n_fit),
            "ari_mean": _r(np.nanmean(aris)), "ari_min": _r(np.nanmin(aris)), "ari": [_r(a) for a in aris],
            "changed_share_mean": _r(np.mean(changed)), "changed_share_max": _r(np.max(changed)),
            "changed_share_non_noise_mean": _r(np.nanmean(changed_nn)),
            "n_clusters_per_resample": counts,
            "segment_jaccard_mean": seg_jac,
            "unstable_segments": sorted(int(self._relabel[c + 1]) for c in unstable_raw),
            "unstable_jaccard_threshold": self.unstable_jaccard,
        }

    def _metrics(self, n, n_fit, hdb, raw_labels, silhouette, stability, selection, dup_share, timings) -> dict:
        k = self.n_clusters_
        sizes = np.bincount(self.labels_[self.labels_ >= 0], minlength=k)
        floor = self.min_segment_customers(n)
        small = [int(s) for s in np.flatnonzero(sizes < floor)]
        if small:
            warnings.warn(f"segment(s) {small} hold fewer than the minimum segment size of {floor} customers "
                          f"(min_segment_share={self.min_segment_share}); consider a larger min_cluster_size", stacklevel=3)
        if k == 0:
            warnings.warn("HDBSCAN found no segments: every customer is noise. Try a smaller min_cluster_size or "
                          "min_samples, or another reducer", stacklevel=3)
        try:
            rv = float(hdb.relative_validity_)
        except Exception:  # pragma: no cover - no tree / no clusters
            rv = None
        explained = getattr(self.reducer_, "explained_variance_ratio_", None)
        stab = stability or {}
        if stab.get("unstable_segments"):
            warnings.warn(f"segment(s) {stab['unstable_segments']} do not survive resampling (best Jaccard overlap < "
                          f"{self.unstable_jaccard} in most of {self.n_resamples} resamples)", stacklevel=3)
        return {
            "n_customers": int(n), "n_fit_sample": int(n_fit), "embedding_dim": int(self.embedding_dim),
            "n_clusters": k,
            "noise_share": _r(float((self.labels_ == NOISE).mean())),
            "noise_share_fit_sample": _r(float((raw_labels == NOISE).mean())),
            "cluster_sizes": {str(s): int(v) for s, v in enumerate(sizes)},
            "cluster_shares": {str(s): _r(v / n) for s, v in enumerate(sizes)},
            "min_segment_customers": int(floor),
            "small_segments": small,
            "relative_validity": None if rv is None or not np.isfinite(rv) else _r(rv),
            "silhouette": None if silhouette is None else _r(silhouette),
            "silhouette_sample_size": self.silhouette_sample_size,
            "mean_membership_strength": _r(float(self.membership_strength_[self.labels_ >= 0].mean())) if k else None,
            "duplicate_share_fit_sample": _r(dup_share),
            "reducer": self.get_params()["reducer"],
            "n_components": int(getattr(self.reducer_, "n_components_", getattr(self.reducer_, "n_components", self.embedding_dim))
                                if self.reducer != "none" else self.embedding_dim),
            "explained_variance": None if explained is None else _r(float(np.sum(explained))),
            "chosen": {"min_cluster_size": self.min_cluster_size_, "min_samples": self.min_samples_,
                       "cluster_selection_method": self.cluster_selection_method_,
                       "auto": self.min_cluster_size is None or self.min_samples is None},
            "selection": selection,
            "stability": stab,
            "params": self.get_params(),
            "sweep": [{k2: (None if isinstance(v, float) and not np.isfinite(v) else v) for k2, v in r.items()}
                      for r in self.sweep_.to_dict(orient="records")],  # strict JSON: no NaN
            "seconds": {k2: round(v, 3) for k2, v in timings.items()},
            "eventseg_version": __version__,
        }

    # ---- persistence ------------------------------------------------------------------
    #
    # One NPZ file (a zip of .npy arrays), read back with np.load(allow_pickle=False): nothing in
    # it can run code when loaded. Members: "__header__" and "meta" (UTF-8 JSON as uint8 arrays),
    # "scaler"/"reducer" (skops bytes, loaded against SKOPS_TRUSTED_TYPES only), the fitted HDBSCAN
    # as plain arrays ("hdbscan.*") rebuilt into an hdbscan.HDBSCAN on load, "label_order", "relabel".

    def _payload(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON metadata, named arrays) describing the fitted clusterer: no Python objects.
        ClusterConfigError if a part cannot be stored in the safe format (UMAP, custom objects)."""
        scaler_meta, scaler_bytes = _transform_state(self.scaler_, "scaler", self.scaler)
        reducer_meta, reducer_bytes = _transform_state(self.reducer_, "reducer", self.reducer)
        hdb_meta, hdb_arrays = _hdbscan_state(self.hdbscan_)
        params = {}
        for k in _INIT_ARGS:
            v = getattr(self, k)
            if k in ("reducer", "scaler") and not (v is None or isinstance(v, str)):
                v = {"object": type(v).__name__}  # restored on load from the fitted (saved) object
            params[k] = list(v) if isinstance(v, tuple) else v
        meta = {
            "params": params,
            "scaler": scaler_meta, "reducer": reducer_meta, "hdbscan": hdb_meta,
            "embedding_dim": int(self.embedding_dim),
            "min_cluster_size": int(self.min_cluster_size_), "min_samples": int(self.min_samples_),
            "cluster_selection_method": str(self.cluster_selection_method_),
            "metrics": {k: v for k, v in getattr(self, "metrics_", {}).items() if k not in ("sweep",)},
        }
        arrays = {"label_order": np.asarray(self.label_order_, dtype=np.int64),
                  "relabel": np.asarray(self._relabel, dtype=np.int64), **hdb_arrays}
        if scaler_bytes is not None:
            arrays["scaler"] = np.frombuffer(scaler_bytes, dtype=np.uint8)
        if reducer_bytes is not None:
            arrays["reducer"] = np.frombuffer(reducer_bytes, dtype=np.uint8)
        try:
            _json_bytes(params, strict=True)
        except (TypeError, ValueError) as err:
            raise ClusterConfigError(f"the clusterer settings cannot be saved as JSON ({err}); use plain values "
                                     "(numbers, strings, lists) for umap_kwargs and the other settings") from None
        return meta, arrays

    def save(self, path: str | os.PathLike, **sidecar_fields: Any) -> Path:
        """Write scaler + reducer + HDBSCAN (with everything prediction needs) to one file,
        atomically, plus a `<name>.json` sidecar.

        The file is an NPZ archive of plain arrays and JSON (see `load`): no pickle, so loading
        a file can never run code. It starts with a small header (format, format version,
        eventseg/hdbscan/sklearn/numpy versions) that load() checks before reading anything else.
        """
        self._check_fitted()
        path = Path(path)
        meta, arrays = self._payload()  # before writing anything: an unsaveable clusterer leaves no file
        members = {HEADER_KEY: _json_bytes(_header()), "meta": _json_bytes(meta), **arrays}
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a name
                np.savez(f, **members)
            stale = sidecar_path(path)
            if stale.exists():
                stale.unlink()
        facts = {"format": FORMAT, "format_version": FORMAT_VERSION, "n_clusters": self.n_clusters_,
                 "embedding_dim": int(self.embedding_dim), "min_cluster_size": self.min_cluster_size_,
                 "min_samples": self.min_samples_, "cluster_selection_method": self.cluster_selection_method_}
        write_sidecar(path, **{**sidecar_fields, **facts})  # facts about the file win over caller fields
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SegmentClusterer":
        """Load a clusterer written by save(); refuse one from another format or eventseg version.

        Never runs code from the file: arrays are read with np.load(allow_pickle=False), the scaler
        and PCA with skops against an explicit list of types (SKOPS_TRUSTED_TYPES), checked with
        skops.io.get_untrusted_types first. Anything else is refused with ClustererFileError.
        """
        path = Path(path)
        if not path.exists():
            legacy = path.with_name(LEGACY_CLUSTERER_FILE)
            hint = (f"; {legacy} is an old pickle clusterer, which this eventseg no longer loads (unpickling can "
                    "run code): re-run cluster (python scripts/cluster.py embeddings=...) to write the new format"
                    if path.name == CLUSTERER_FILE and legacy.exists() else " (run scripts/cluster.py to create it)")
            raise FileNotFoundError(f"clusterer not found: {path}{hint}")
        if path.is_dir():
            raise ClustererFileError(f"{path} is a directory, not a saved eventseg clusterer")
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic[:1] == b"\x80":
            raise ClustererFileError(
                f"{path} is a pickle (an eventseg clusterer from before format {FORMAT_VERSION}, or something else): "
                "it is not loaded, because unpickling a file can run arbitrary code. Re-run cluster "
                "(python scripts/cluster.py embeddings=...) to write the safe format.")
        if magic != b"PK\x03\x04":
            raise ClustererFileError(f"{path} is not a saved eventseg clusterer (not an NPZ archive)")
        try:
            npz = np.load(path, allow_pickle=False)
        except Exception as err:
            raise ClustererFileError(f"{path} is not a saved eventseg clusterer, or is truncated "
                                     f"({type(err).__name__}: {err}); re-run cluster") from None
        with npz:
            try:
                header = _read_json(npz, HEADER_KEY)
            except Exception:
                header = None
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise ClustererFileError(f"{path} is not a saved eventseg clusterer (no {FORMAT} header)")
            fv, ev = header.get("format_version"), header.get("eventseg_version")
            if fv != FORMAT_VERSION or ev != __version__:
                raise ClustererFileError(
                    f"{path} was saved by eventseg {ev} (clusterer format {fv}); this is eventseg {__version__} "
                    f"(format {FORMAT_VERSION}). Re-run cluster (python scripts/cluster.py embeddings=...) to refit it.")
            for lib, now in _lib_versions().items():
                if header.get(lib) and header[lib] != now:
                    warnings.warn(f"{path} was saved with {lib} {header[lib]}, this environment has {now}; "
                                  "if loading or predictions fail, re-run cluster", stacklevel=2)
            try:
                meta = _read_json(npz, "meta")
                arrays = {k: npz[k] for k in npz.files if k not in (HEADER_KEY, "meta")}
            except Exception as err:  # a bad member: zip CRC, short read, an object (pickled) array
                raise ClustererFileError(f"{path} is truncated or corrupt ({type(err).__name__}: {err}); "
                                         "re-run cluster") from None
        try:
            return cls._from_payload(meta, arrays, path)
        except ClustererFileError:
            raise
        except Exception as err:
            raise ClustererFileError(f"{path} is corrupt: its contents do not describe a fitted clusterer "
                                     f"({type(err).__name__}: {err}); re-run cluster") from None

    @classmethod
    def _from_payload(cls, meta: dict, arrays: dict[str, np.ndarray], path: Path) -> "SegmentClusterer":
        if not isinstance(meta, dict) or not isinstance(meta.get("params"), dict):
            raise ClustererFileError(f"{path} is corrupt: no clusterer settings")
        params = dict(meta["params"])
        objects = {k: params.pop(k) for k in ("reducer", "scaler") if isinstance(params.get(k), dict)}
        self = cls.__new__(cls)
        cls.__init__(self, **{k: v for k, v in params.items() if k in _INIT_ARGS})
        what = str(path)
        self.scaler_ = _load_transform(meta.get("scaler"), arrays.get("scaler"), "scaler", what)
        self.reducer_ = _load_transform(meta.get("reducer"), arrays.get("reducer"), "reducer", what)
        for k in objects:  # a custom (allowlisted) object was passed: an unfitted copy of the saved one
            from sklearn.base import clone

            setattr(self, k, clone(getattr(self, k + "_")))
        self.hdbscan_ = _rebuild_hdbscan(meta["hdbscan"], arrays, what)
        n_fit = len(self.hdbscan_.labels_)
        k = int(self.hdbscan_.labels_.max()) + 1 if n_fit else 0
        order = _int_array(arrays, "label_order", what, shape=(k,))
        if not np.array_equal(np.sort(order), np.arange(k)):
            raise ClustererFileError(f"{what} is corrupt: label_order is not a permutation of the {k} clusters")
        relabel = np.full(k + 1, NOISE, dtype=np.int64)
        relabel[order + 1] = np.arange(k)
        if not np.array_equal(_int_array(arrays, "relabel", what, shape=(k + 1,)), relabel):
            raise ClustererFileError(f"{what} is corrupt: relabel does not match label_order")
        self.label_order_, self._relabel = order, relabel
        self.embedding_dim = int(meta["embedding_dim"])
        if self.embedding_dim < 1:
            raise ClustererFileError(f"{what} is corrupt: embedding_dim={self.embedding_dim}")
        self.min_cluster_size_, self.min_samples_ = int(meta["min_cluster_size"]), int(meta["min_samples"])
        self.cluster_selection_method_ = str(meta["cluster_selection_method"])
        self.saved_metrics_ = meta.get("metrics") or {}
        # built now, so a file whose trees do not fit together is refused here, not at the first predict
        self._placer = _Placer(self.hdbscan_, self.n_jobs)
        probe = self.transform(np.zeros((1, self.embedding_dim), dtype=np.float32))
        if probe.shape != (1, self.hdbscan_._raw_data.shape[1]):
            raise ClustererFileError(f"{what} is corrupt: the reducer gives {probe.shape[1]} dimensions, the "
                                     f"HDBSCAN model was fitted on {self.hdbscan_._raw_data.shape[1]}")
        return self


_INIT_ARGS = (
    "reducer", "n_components", "scaler", "min_cluster_size", "min_samples", "cluster_selection_method",
    "min_segment_share", "min_segment_size", "max_noise_share", "n_segments", "fit_sample_size",
    "sweep_min_cluster_size_shares", "sweep_min_samples", "n_resamples", "resample_share", "unstable_jaccard",
    "silhouette_sample_size", "chunk_size", "n_jobs", "seed", "umap_kwargs",
)


def _lib_versions() -> dict:
    import hdbscan
    import sklearn

    return {"hdbscan_version": _hdbscan_version(hdbscan), "sklearn_version": sklearn.__version__,
            "numpy_version": np.__version__}


def _hdbscan_version(hdbscan) -> str | None:
    version = getattr(hdbscan, "__version__", None)
    if version is None:
        try:
            from importlib.metadata import version as dist_version

            version = dist_version("hdbscan")
        except Exception:  # pragma: no cover - not installed as a distribution
            version = None
    return version


def _header() -> dict:
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "eventseg_version": __version__, **_lib_versions()}


# ---- safe persistence helpers: nothing saved by eventseg may run code when loaded -------------

HEADER_KEY = "__header__"

# builtin containers/values and numpy data types: data only, nothing callable
SKOPS_DATA_TYPES = (
    "builtins.dict", "builtins.list", "builtins.tuple", "builtins.str", "builtins.int", "builtins.float",
    "builtins.bool", "builtins.NoneType",
    "numpy.ndarray", "numpy.dtype", "numpy.bool", "numpy.bool_",
    "numpy.int8", "numpy.int16", "numpy.int32", "numpy.int64",
    "numpy.uint8", "numpy.uint16", "numpy.uint32", "numpy.uint64",
    "numpy.float16", "numpy.float32", "numpy.float64",
)
# the clusterer's fitted scaler and reducer: exactly these types (and the data types above)
SCALER_REDUCER_TYPES = (
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.decomposition._pca.PCA",
)
SKOPS_TRUSTED_TYPES = SKOPS_DATA_TYPES + SCALER_REDUCER_TYPES


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (tuple, set)):
        return list(o)
    return str(o)


def _json_bytes(obj, strict: bool = False) -> np.ndarray:
    """obj as UTF-8 JSON in a uint8 array (an NPZ member). strict: TypeError on non-JSON values."""
    text = json.dumps(obj, sort_keys=True) if strict else json.dumps(obj, sort_keys=True, default=_json_default)
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


def _read_json(npz, key: str):
    a = npz[key]
    if a.dtype != np.uint8 or a.ndim != 1:
        raise ValueError(f"member {key!r} is not JSON bytes")
    return json.loads(a.tobytes().decode("utf-8"))


def skops_type_names(data: bytes) -> set[str]:
    """Every type a skops dump names ("module.Class"), read from its schema.json without
    importing or constructing anything. Stricter than skops.io.get_untrusted_types, which
    does not report the types skops trusts by default (every scikit-learn estimator, ...)."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        schema = json.loads(z.read("schema.json"))
    names: set[str] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "__class__" in node or "__module__" in node:
                names.add(f"{node.get('__module__')}.{node.get('__class__')}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return names


def skops_disallowed_types(data: bytes, allowed: Sequence[str]) -> list[str]:
    """Types named in a skops dump that are not in `allowed`: those skops itself does not trust
    (skops.io.get_untrusted_types) and any other type the file names."""
    import skops.io as sio

    untrusted = set(sio.get_untrusted_types(data=data))
    return sorted((untrusted | skops_type_names(data)) - set(allowed))


def skops_dumps_checked(obj, allowed: Sequence[str], what: str, error: type[Exception], remedy: str) -> bytes:
    """skops bytes for obj, or `error` if load would refuse them (a type outside `allowed`)."""
    import skops.io as sio

    try:
        data = sio.dumps(obj)
    except Exception as err:
        raise error(f"{what} ({type(obj).__name__}) cannot be saved in the safe skops format "
                    f"({type(err).__name__}: {err}). {remedy}") from None
    bad = skops_disallowed_types(data, allowed)
    if bad:
        raise error(f"{what} ({type(obj).__name__}) holds types that eventseg does not load: {bad}. Saved models "
                    f"are never pickled (loading a pickle can run code). {remedy}")
    return data


def skops_loads_checked(data: bytes, allowed: Sequence[str], what: str, error: type[Exception], remedy: str):
    """Load skops bytes only if every type they name is in `allowed` (checked before anything
    is imported or constructed); `error` with a clear message otherwise. Never trusted=True."""
    import skops.io as sio

    try:
        bad = skops_disallowed_types(data, allowed)
    except Exception as err:
        raise error(f"{what} is truncated or corrupt: not a skops archive ({type(err).__name__}: {err}). "
                    f"{remedy}") from None
    if bad:
        raise error(f"{what} names types that eventseg never loads: {bad} (allowed: scikit-learn models it saves "
                    f"itself and plain data). Loading it could run code, so it was not loaded. If you did not "
                    f"write this file, do not use it. {remedy}")
    try:
        obj = sio.loads(data, trusted=list(allowed))
    except Exception as err:
        raise error(f"{what} is truncated or corrupt ({type(err).__name__}: {err}). {remedy}") from None
    _check_hgb_predictors(obj, what, error, remedy)
    return obj


def _check_hgb_predictors(obj, what: str, error: type[Exception], remedy: str) -> None:
    """Histogram gradient boosting trees are walked by compiled code without bounds checks (the
    reason skops does not trust TreePredictor by default): check that every node points inside
    its tree, to a later node (so a walk ends), and at a real feature; no categorical splits."""
    items = list(obj.values()) if isinstance(obj, dict) else list(obj) if isinstance(obj, (list, tuple)) else [obj]
    for est in items:
        predictors = getattr(est, "_predictors", None)
        if predictors is None:
            continue
        from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE
        from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

        def bad(msg):
            return error(f"{what} is corrupt or crafted: a {type(est).__name__} {msg}. {remedy}")

        n_features = getattr(est, "n_features_in_", None)
        if not isinstance(n_features, (int, np.integer)) or n_features < 1:
            raise bad("has no valid n_features_in_")
        if getattr(est, "_in_fit", False):
            raise bad("is marked as being fitted")
        categorical = getattr(est, "is_categorical_", None)
        if (categorical is not None and np.any(categorical)) or getattr(est, "_preprocessor", None) is not None:
            raise bad("uses categorical features (not used by eventseg)")
        mapper = getattr(est, "_bin_mapper", None)
        if mapper is None or np.any(np.asarray(mapper.is_categorical_)) or np.size(mapper.is_categorical_) != n_features:
            raise bad("has an invalid bin mapper")
        if not isinstance(predictors, list) or not all(isinstance(it, list) for it in predictors):
            raise bad("has an invalid list of trees")
        for it in predictors:
            if len(it) != getattr(est, "n_trees_per_iteration_", -1):
                raise bad("has the wrong number of trees per iteration")
            for p in it:
                if type(p) is not TreePredictor:
                    raise bad("has a tree of the wrong type")
                nodes = p.nodes
                if (not isinstance(nodes, np.ndarray) or nodes.dtype != PREDICTOR_RECORD_DTYPE or nodes.ndim != 1
                        or len(nodes) == 0 or not nodes.flags.c_contiguous):
                    raise bad("has a tree whose nodes are not a node table")
                n = len(nodes)
                inner = nodes["is_leaf"] == 0
                idx = np.arange(n)[inner]
                left, right = nodes["left"][inner].astype(np.int64), nodes["right"][inner].astype(np.int64)
                feat = nodes["feature_idx"][inner].astype(np.int64)
                if (np.any(nodes["is_categorical"] != 0) or np.any(left <= idx) or np.any(left >= n)
                        or np.any(right <= idx) or np.any(right >= n) or np.any(feat < 0) or np.any(feat >= n_features)):
                    raise bad("has a tree with out-of-range node links or features")


_UMAP_MESSAGE = (
    "a clusterer with reducer='umap' cannot be saved: a fitted UMAP model can only be stored with pickle "
    "(numba functions, a pynndescent index), and eventseg never writes or loads pickle because loading one can "
    "run arbitrary code. Use reducer='pca' (the default) or reducer='none' for a clusterer you want to save and "
    "reuse with SegmentClusterer.load().")


def _transform_state(obj, name: str, setting) -> tuple[dict, bytes | None]:
    """(JSON description, skops bytes or None) of a fitted scaler/reducer, or ClusterConfigError."""
    if isinstance(obj, _Identity):
        return {"kind": "identity"}, None
    if setting == "umap" or type(obj).__module__.split(".")[0] == "umap":
        raise ClusterConfigError(_UMAP_MESSAGE)
    type_name = f"{type(obj).__module__}.{type(obj).__name__}"
    remedy = (f"Only StandardScaler, PCA and 'none' are saved (scaler='standard'|'none', reducer='pca'|'none'); "
              f"a custom {name} object can be fitted and used in memory, but not saved.")
    if type_name not in SCALER_REDUCER_TYPES:
        raise ClusterConfigError(f"the fitted {name} ({type_name}) cannot be saved safely. {remedy}")
    data = skops_dumps_checked(obj, SKOPS_TRUSTED_TYPES, f"the fitted {name}", ClusterConfigError, remedy)
    return {"kind": "skops", "type": type_name}, data


def _load_transform(meta, data: np.ndarray | None, name: str, what: str):
    remedy = "Re-run cluster (python scripts/cluster.py embeddings=...) to write a new clusterer."
    if not isinstance(meta, dict):
        raise ClustererFileError(f"{what} is corrupt: no {name} description")
    if meta.get("kind") == "identity":
        return _Identity()
    if meta.get("kind") != "skops" or data is None or data.dtype != np.uint8 or data.ndim != 1:
        raise ClustererFileError(f"{what} is corrupt: the {name} is missing or of an unknown kind")
    obj = skops_loads_checked(data.tobytes(), SKOPS_TRUSTED_TYPES, f"{what} ({name})", ClustererFileError, remedy)
    type_name = f"{type(obj).__module__}.{type(obj).__name__}"
    if type_name not in SCALER_REDUCER_TYPES:
        raise ClustererFileError(f"{what} is corrupt: the {name} is a {type_name}, not one of {SCALER_REDUCER_TYPES}")
    return obj


# the fitted HDBSCAN as arrays: (attribute, member name, required)
_HDBSCAN_ARRAYS = (
    ("_condensed_tree", "hdbscan.condensed_tree", True),
    ("_single_linkage_tree", "hdbscan.single_linkage_tree", True),
    ("_min_spanning_tree", "hdbscan.min_spanning_tree", False),
    ("_raw_data", "hdbscan.raw_data", True),
    ("labels_", "hdbscan.labels", True),
    ("probabilities_", "hdbscan.probabilities", True),
    ("cluster_persistence_", "hdbscan.cluster_persistence", True),
    ("_outlier_scores", "hdbscan.outlier_scores", False),
    ("_prediction_data.core_distances", "hdbscan.core_distances", True),
)
_CONDENSED_FIELDS = ("parent", "child", "lambda_val", "child_size")


def _hdbscan_state(hdb) -> tuple[dict, dict[str, np.ndarray]]:
    """JSON parameters and plain arrays of a fitted hdbscan.HDBSCAN (its prediction data is
    derived from these on load, exactly as fit derives it)."""
    params = {k: v for k, v in hdb.get_params().items() if k != "memory"}
    meta = {"params": params, "metric_kwargs": dict(hdb._metric_kwargs), "all_finite": bool(hdb._all_finite),
            "relative_validity": None if hdb._relative_validity is None else float(hdb._relative_validity)}
    try:
        _json_bytes(meta, strict=True)
    except (TypeError, ValueError) as err:
        raise ClusterConfigError(f"the HDBSCAN settings cannot be saved as JSON ({err})") from None
    if not meta["all_finite"]:  # pragma: no cover - check_embeddings refuses non-finite embeddings
        raise ClusterConfigError("an HDBSCAN model fitted on non-finite data cannot be saved")
    if hdb._outlier_scores is None:
        hdb.outlier_scores_  # noqa: B018 - computes and caches them from the condensed tree
    arrays = {}
    for attr, key, required in _HDBSCAN_ARRAYS:
        value = hdb
        for part in attr.split("."):
            value = getattr(value, part, None)
        if value is None:
            if required:
                raise ClusterConfigError(f"the HDBSCAN model has no {attr}: is it fitted?")
            continue
        arrays[key] = np.asarray(value)
    return meta, arrays


def _int_array(arrays, key: str, what: str, shape: tuple) -> np.ndarray:
    a = arrays.get(key)
    if a is None or a.dtype.kind not in "iu" or a.shape != shape:
        raise ClustererFileError(f"{what} is corrupt: {key} is missing or malformed (expected integers of shape {shape})")
    return a.astype(np.int64)


def _float_array(arrays, key: str, what: str, shape: tuple) -> np.ndarray:
    a = arrays.get(key)
    if a is None or a.dtype.kind != "f" or a.shape != shape:
        raise ClustererFileError(f"{what} is corrupt: {key} is missing or malformed (expected floats of shape {shape})")
    return a


def _rebuild_hdbscan(meta: dict, arrays: dict[str, np.ndarray], what: str):
    """An hdbscan.HDBSCAN in the state fit leaves it in (private attributes set from the saved
    arrays, prediction data regenerated), after checking the arrays fit together."""
    import hdbscan

    if not isinstance(meta, dict) or not isinstance(meta.get("params"), dict):
        raise ClustererFileError(f"{what} is corrupt: no HDBSCAN settings")
    params = dict(meta["params"])
    known = set(hdbscan.HDBSCAN().get_params()) - {"memory"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ClustererFileError(f"{what} has HDBSCAN settings {unknown} that this hdbscan does not know; re-run cluster")
    metric_kwargs = meta.get("metric_kwargs") or {}
    if not isinstance(metric_kwargs, dict) or not all(
            isinstance(v, (int, float, str, bool, type(None))) for v in metric_kwargs.values()):
        raise ClustererFileError(f"{what} is corrupt: invalid HDBSCAN metric arguments")
    if params.get("metric") != "euclidean":
        raise ClustererFileError(f"{what}: HDBSCAN metric {params.get('metric')!r} is not one eventseg fits")

    raw = arrays.get("hdbscan.raw_data")
    if (raw is None or raw.dtype != np.float64 or raw.ndim != 2 or raw.shape[0] < 2 or raw.shape[1] < 1
            or not np.isfinite(raw).all()):
        raise ClustererFileError(f"{what} is corrupt: hdbscan.raw_data is not a finite [points, dims] matrix")
    n = raw.shape[0]
    labels = _int_array(arrays, "hdbscan.labels", what, (n,))
    k = int(labels.max()) + 1
    if labels.min() < NOISE:
        raise ClustererFileError(f"{what} is corrupt: hdbscan.labels below -1")
    ct = arrays.get("hdbscan.condensed_tree")
    if ct is None or ct.ndim != 1 or ct.dtype.names != _CONDENSED_FIELDS or len(ct) == 0:
        raise ClustererFileError(f"{what} is corrupt: hdbscan.condensed_tree is missing or malformed")
    if any(ct.dtype[f].kind not in "iu" for f in ("parent", "child", "child_size")) or ct.dtype["lambda_val"].kind != "f":
        raise ClustererFileError(f"{what} is corrupt: hdbscan.condensed_tree has the wrong field types")
    # a real tree over the n points: hdbscan's compiled prediction code indexes with these ids
    # unchecked (boundscheck=False) and walks parent links until the root
    parent, child = ct["parent"].astype(np.int64), ct["child"].astype(np.int64)
    top = n + len(ct)  # no node id can reach this
    is_point = child < n
    cluster_child = child[~is_point]
    if (parent.min() != n or parent.max() >= top or child.min() < 0 or child.max() >= top
            or not np.array_equal(ct["child_size"] == 1, is_point) or np.any(ct["child_size"] < 1)
            or np.any(np.isnan(ct["lambda_val"]))
            or not np.array_equal(np.bincount(child[is_point], minlength=n), np.ones(n, dtype=np.int64))
            or np.any(cluster_child <= parent[~is_point]) or len(np.unique(cluster_child)) != len(cluster_child)
            or not np.isin(np.unique(parent[parent != n]), cluster_child).all()):
        raise ClustererFileError(f"{what} is corrupt: hdbscan.condensed_tree is not a tree over {n} points")
    slt = _float_array(arrays, "hdbscan.single_linkage_tree", what, (n - 1, 4))
    probabilities = _float_array(arrays, "hdbscan.probabilities", what, (n,))
    persistence = _float_array(arrays, "hdbscan.cluster_persistence", what, (k,))
    mst = arrays.get("hdbscan.min_spanning_tree")
    if mst is not None:
        mst = _float_array(arrays, "hdbscan.min_spanning_tree", what, (n - 1, 3))
    scores = arrays.get("hdbscan.outlier_scores")
    if scores is not None:
        scores = _float_array(arrays, "hdbscan.outlier_scores", what, (n,))
    core = _float_array(arrays, "hdbscan.core_distances", what, (n,))
    if not (np.isfinite(core).all() and (core >= 0).all()):
        raise ClustererFileError(f"{what} is corrupt: hdbscan.core_distances are not finite distances")
    rv = meta.get("relative_validity")

    hdb = hdbscan.HDBSCAN(**params, **metric_kwargs)
    hdb.memory = None  # as fit leaves it: the fit-time cache is gone
    hdb._condensed_tree, hdb._single_linkage_tree, hdb._min_spanning_tree = ct, slt, mst
    hdb._raw_data, hdb._all_finite = raw, True
    hdb.labels_, hdb.probabilities_, hdb.cluster_persistence_ = labels, probabilities, persistence
    hdb._outlier_scores = scores
    hdb._relative_validity = None if rv is None else float(rv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        _prediction_data(hdb, core)
    if hdb._prediction_data is None:
        raise ClustererFileError(f"{what}: the HDBSCAN prediction data could not be rebuilt")
    return hdb


class _SavedCoreDistances:
    """Stands in for the KD-tree while hdbscan's PredictionData is built: its one query (the
    core distance of every fit point, the slow part: seconds for 50k points) is answered with
    the saved values, which are that query's result at fit time."""

    def __init__(self, core: np.ndarray):
        self.core = core

    def query(self, X, k):
        d = np.empty((len(X), k))
        d[:, -1] = self.core
        return d, None


def _prediction_data(hdb, core: np.ndarray) -> None:
    """hdb.generate_prediction_data(), reusing the saved core distances. Everything else
    (cluster map, cluster tree, max lambdas, exemplars, the KD-tree) is derived by hdbscan
    itself; if its internals differ from what this expects, the full generation runs instead."""
    from hdbscan.prediction import PredictionData

    try:
        tree_type = PredictionData._tree_type_map["kdtree"]  # the class generate_prediction_data uses
        if hdb.metric != "euclidean":
            raise ValueError(hdb.metric)
        pdata = PredictionData.__new__(PredictionData)
        pdata._tree_type_map = {"kdtree": lambda data, metric, **kw: _SavedCoreDistances(core)}
        PredictionData.__init__(pdata, hdb._raw_data, hdb.condensed_tree_, hdb.min_samples or hdb.min_cluster_size,
                                tree_type="kdtree", metric=hdb.metric, **hdb._metric_kwargs)
        del pdata._tree_type_map
        pdata.tree = tree_type(pdata.raw_data, metric=hdb.metric, **hdb._metric_kwargs)
        if not np.array_equal(pdata.core_distances, core):
            raise ValueError("core distances")
        hdb._prediction_data = pdata
    except Exception:  # pragma: no cover - another hdbscan version
        hdb.generate_prediction_data()


def _r(x, digits: int = 6):
    x = float(x)
    return None if not np.isfinite(x) else round(x, digits)


RESOLUTION = 1e-3  # relative to the data scale; distances below this carry no meaning


def _resolution_floor(Z: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
    """Cap density at a resolution of RESOLUTION x the data scale by adding a tiny seeded jitter.

    Identical or near-identical customers (one-event customers whose embeddings coincide up to
    float noise) would otherwise give HDBSCAN zero or ~1e-7 distances: infinite or enormous
    densities, NaN strengths and outlier scores, and a clump in which customers a hair away from
    the exact copies look like outliers. With the floor, such a clump is a very dense, uniform
    segment. Regular neighbour distances are ~100x larger than the jitter, so nothing else moves.
    Returns the jittered points and the share of exact duplicate rows (a diagnostic).
    """
    if len(Z) < 2:
        return Z, 0.0
    _, inverse, counts = np.unique(Z, axis=0, return_inverse=True, return_counts=True)
    share = float((counts[inverse.reshape(-1)] > 1).mean())
    scale = float(np.sqrt(np.mean(Z.var(axis=0)))) or 1.0
    rng = np.random.default_rng([seed, 104729])
    return Z + rng.normal(0.0, RESOLUTION * scale, size=Z.shape), share


def _plain(cfg) -> dict:
    if cfg is None:
        return {}
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover
        pass
    return dict(cfg)


# ---- outputs ------------------------------------------------------------------------------


def write_cluster_outputs(clusterer: SegmentClusterer, out_dir: str | os.PathLike, *, id_col: str = "customer_id",
                          **provenance: Any) -> dict[str, str]:
    """clusterer.npz, clusters.parquet, cluster_metrics.json, cluster_sweep.csv under out_dir, each
    written atomically (temporary name, then rename) with a `<name>.json` sidecar."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / v for k, v in (("clusterer", CLUSTERER_FILE), ("clusters", CLUSTERS_FILE),
                                     ("metrics", METRICS_FILE), ("sweep", SWEEP_FILE))}
    m = clusterer.metrics_
    facts = {"n_clusters": m["n_clusters"], "chosen": m["chosen"], **provenance}
    clusterer.save(paths["clusterer"], **facts)
    facts["clusterer_sha256"] = file_hash(paths["clusterer"])

    df = clusterer.assignments(id_col)
    _atomic(paths["clusters"], lambda tmp: df.to_parquet(tmp, index=False))
    write_sidecar(paths["clusters"], rows=len(df), id_col=id_col, noise_share=m["noise_share"], **facts)

    write_json(m, paths["metrics"])
    _atomic(paths["sweep"], lambda tmp: clusterer.sweep_.to_csv(tmp, index=False))
    write_sidecar(paths["sweep"], rows=len(clusterer.sweep_), **facts)
    return {k: str(v) for k, v in paths.items()}


def _atomic(path: Path, write) -> None:
    with atomic_path(path) as tmp:
        write(tmp)
        stale = sidecar_path(path)
        if stale.exists():  # an old sidecar must never describe new data
            stale.unlink()


def _embeddings_id_col(path: Path) -> str:
    """The id column named in an eventseg embeddings file (customer_id if unstated)."""
    try:
        import pyarrow.parquet as pq

        f = path
        if path.is_dir():
            parts = sorted(p for p in path.iterdir() if p.suffix == ".parquet" and not p.name.startswith((".", "_")))
            if not parts:
                return "customer_id"
            f = parts[0]
        schema = pq.read_schema(f)
        meta = schema.metadata or {}
        col = meta.get(b"eventseg.id_col", b"").decode()
        if col in schema.names:
            return col
        others = [c for c in schema.names if c != "embedding"]
        return "customer_id" if "customer_id" in others or len(others) != 1 else others[0]
    except Exception:
        return "customer_id"


def _embeddings_provenance(path: Path) -> dict:
    side = sidecar_path(path)
    info: dict[str, Any] = {"embeddings": str(path)}
    if side.exists():
        import json

        try:
            meta = json.loads(side.read_text())
            info["embeddings_sidecar"] = {k: meta.get(k) for k in ("checkpoint_sha256", "rows", "created_at",
                                                                    "eventseg_version") if k in meta}
        except ValueError:
            pass
    return info


def cluster_from_config(cfg) -> dict:
    """The cluster stage as scripts call it. Keys: embeddings (file or directory of parts), out_dir
    (default: the embeddings' folder), cluster (the cluster group). Returns paths and metrics."""
    from eventseg.embed import load_embeddings  # lazy: the stage only needs the reader

    started = time.perf_counter()
    c = _plain(cfg)
    if not c.get("embeddings"):
        raise ClusterConfigError("embeddings is not set: pass embeddings=path/to/embeddings.parquet")
    emb_path = Path(str(c["embeddings"]))
    out_dir = Path(str(c["out_dir"])) if c.get("out_dir") else emb_path.parent
    t = time.perf_counter()
    ids, matrix = load_embeddings(emb_path)
    load_seconds = time.perf_counter() - t
    clusterer = SegmentClusterer.from_config(c.get("cluster") or {})
    clusterer.fit(matrix, ids)
    del matrix
    t = time.perf_counter()
    id_col = _embeddings_id_col(emb_path)
    paths = write_cluster_outputs(clusterer, out_dir, id_col=id_col, config=c.get("cluster"),
                                  **_embeddings_provenance(emb_path))
    m = clusterer.metrics_
    stab = m.get("stability") or {}
    return {
        **paths,
        "rows": m["n_customers"], "n_clusters": m["n_clusters"], "noise_share": m["noise_share"],
        "cluster_sizes": m["cluster_sizes"], "relative_validity": m["relative_validity"],
        "silhouette": m["silhouette"], "chosen": m["chosen"], "selection": m["selection"]["status"],
        "stability_ari_mean": stab.get("ari_mean"), "unstable_segments": stab.get("unstable_segments"),
        "load_seconds": round(load_seconds, 3), "write_seconds": round(time.perf_counter() - t, 3),
        "seconds": round(time.perf_counter() - started, 3),
    }


__all__ = [
    "ClusterConfigError", "ClusterInputError", "ClusterPrediction", "ClustererFileError", "SegmentClusterer",
    "check_embeddings", "cluster_from_config", "make_reducer", "write_cluster_outputs",
]
