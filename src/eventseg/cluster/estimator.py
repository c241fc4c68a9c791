"""SegmentClusterer: standardise → reduce → HDBSCAN on a seeded fit sample, every other
customer placed; fit, predict, soft membership, save and load."""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from eventseg.cluster.inputs import ClusterConfigError, ClusterInputError, _parse_range, check_embeddings
from eventseg.cluster.persistence import _load, _save
from eventseg.cluster.placement import NOISE, ClusterPrediction, _Placer, _resolution_floor
from eventseg.cluster.quality import _metrics, _silhouette, _stability
from eventseg.cluster.reducers import _make_scaler, make_reducer
from eventseg.cluster.selection import (
    DEFAULT_SWEEP_MIN_SAMPLES,
    DEFAULT_SWEEP_SHARES,
    SELECTION_METHODS,
    _choose_params,
)
from eventseg.config import plain
from eventseg.data.schema import OUTPUT_ID

log = logging.getLogger(__name__)


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
        c = dict(plain(cfg) or {})
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
            mcs, ms, method, sweep, selection = _choose_params(self, Z_fit, memory)
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
        stability = _stability(self, Z_fit, raw_labels, mcs, ms, method)
        timings["stability"] = time.perf_counter() - t
        t = time.perf_counter()
        silhouette = _silhouette(self, Z_fit, raw_labels)
        timings["silhouette"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t_start
        self.sweep_ = sweep
        self.metrics_ = _metrics(self, n, n_fit, hdb, raw_labels, silhouette, stability, selection, dup_share, timings)
        return self

    def fit_predict(self, embeddings, ids=None) -> np.ndarray:
        return self.fit(embeddings, ids).labels_

    def assignments(self, id_col: str = OUTPUT_ID) -> pd.DataFrame:
        """One row per fitted customer: id, cluster, membership_strength, outlier_score, is_noise."""
        self._check_fitted()
        if not hasattr(self, "labels_"):
            raise RuntimeError("a loaded clusterer has no fitted customers: use predict(embeddings)")
        return ClusterPrediction(self.labels_, self.membership_strength_, self.outlier_score_).to_frame(self.ids_, id_col)

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

    # ---- persistence ------------------------------------------------------------------

    def save(self, path: str | os.PathLike, **sidecar_fields: Any) -> Path:
        """Write scaler + reducer + HDBSCAN (with everything prediction needs) to one file,
        atomically, plus a `<name>.json` sidecar.

        The file is an NPZ archive of plain arrays and JSON (see `load`): no pickle, so loading
        a file can never run code. It starts with a small header (format, format version,
        eventseg/hdbscan/sklearn/numpy versions) that load() checks before reading anything else.
        """
        return _save(self, path, **sidecar_fields)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SegmentClusterer":
        """Load a clusterer written by save(); refuse one from another format or eventseg version.

        Never runs code from the file: arrays are read with np.load(allow_pickle=False), the scaler
        and PCA with skops against an explicit list of types (SKOPS_TRUSTED_TYPES), checked with
        skops.io.get_untrusted_types first. Anything else is refused with ClustererFileError.
        """
        return _load(cls, path)
