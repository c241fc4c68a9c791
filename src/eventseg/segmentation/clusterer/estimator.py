"""SegmentClusterer: standardise → reduce → HDBSCAN dense groups on a seeded fit sample →
broad segments (k-means in the outcome space, or the reduced space without labels) → micro
segments (broad × dense group); every customer placed, only real outliers left out."""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClusterMixin

from eventseg.data.schema import OUTPUT_ID
from eventseg.run.columns import score_names
from eventseg.segmentation.clusterer.broad import BroadLevel, OutcomeSpace, check_stickiness
from eventseg.segmentation.clusterer.hierarchy import MicroLevel
from eventseg.segmentation.clusterer.inputs import ClusterInputError, check_embeddings, parse_segment_range
from eventseg.segmentation.clusterer.params import check_params, config_kwargs
from eventseg.segmentation.clusterer.persistence import load_clusterer, save_clusterer
from eventseg.segmentation.clusterer.placement import NOISE, ClusterPrediction, DenseGroupPlacer, resolution_floor
from eventseg.segmentation.clusterer.quality import cluster_metrics, dense_silhouette, dense_stability
from eventseg.segmentation.clusterer.reducers import make_reducer, make_scaler
from eventseg.segmentation.clusterer.selection import DEFAULT_SWEEP_MIN_SAMPLES, DEFAULT_SWEEP_SHARES, choose_params

log = logging.getLogger(__name__)

class SegmentClusterer(ClusterMixin, BaseEstimator):
    """Broad segments with micro-segments below; every customer placed with a strength.

    >>> sc = SegmentClusterer(n_segments=[4, 8]).fit(matrix, ids=ids, outcomes=scores)  # scores: p_*/pred_* columns
    >>> sc.assignments()   # customer_id, cluster, subsegment, membership_strength, is_core, outlier_score, is_outlier
    >>> sc.save("clusterer.npz"); SegmentClusterer.load("clusterer.npz").predict(new_matrix, outcomes=new_scores)

    Dense groups: HDBSCAN (min_cluster_size / min_samples swept unless given) on a seeded fit
    sample of the reduced representation; a customer outside every dense core joins the group of
    its nearest core point. Outliers: outside every core and an outlier score above the threshold
    (by default the one that leaves `outlier_share` of the fit sample out). Broad segments: see
    broad.py; micro-segments: hierarchy.py.

    After fit: labels_ (broad), subsegments_, membership_strength_, is_core_, outlier_score_ (one
    per input row), ids_, fit_index_, n_clusters_, n_subsegments_, min_cluster_size_, min_samples_,
    outlier_threshold_, sweep_, metrics_; for placement, label_order_ and relabel_ (HDBSCAN's labels
    to dense groups, largest first) and placer_ (placement.DenseGroupPlacer).
    """

    def __init__(
        self,
        *,
        reducer: Any = "pca",
        n_components: int = 10,
        scaler: Any = "standard",
        min_cluster_size: int | float | None = None,
        min_samples: int | None = None,
        cluster_selection_method: str = "leaf",
        min_segment_share: float = 0.01,
        min_segment_size: int = 10,
        max_noise_share: float = 0.8,
        n_segments: Any = (4, 8),
        max_segment_share: float = 0.5,
        min_ari: float = 0.85,
        outlier_share: float = 0.05,
        outlier_threshold: float | None = None,
        fit_sample_size: int | None = 50_000,
        sweep_min_cluster_size_shares: Any = DEFAULT_SWEEP_SHARES,
        sweep_min_samples: Any = DEFAULT_SWEEP_MIN_SAMPLES,
        n_resamples: int = 5,
        dense_resamples: int = 3,
        resample_share: float = 0.8,
        unstable_jaccard: float = 0.5,
        silhouette_sample_size: int = 20_000,
        chunk_size: int = 100_000,
        n_jobs: int = -1,
        seed: int = 0,
        umap_kwargs: dict | None = None,
    ):
        self.reducer = reducer
        self.n_components = n_components
        self.scaler = scaler
        self.min_cluster_size = min_cluster_size
        self.min_samples = min_samples
        self.cluster_selection_method = cluster_selection_method
        self.min_segment_share = min_segment_share
        self.min_segment_size = min_segment_size
        self.max_noise_share = max_noise_share
        self.n_segments = n_segments
        self.max_segment_share = max_segment_share
        self.min_ari = min_ari
        self.outlier_share = outlier_share
        self.outlier_threshold = outlier_threshold
        self.fit_sample_size = fit_sample_size
        self.sweep_min_cluster_size_shares = sweep_min_cluster_size_shares
        self.sweep_min_samples = sweep_min_samples
        self.n_resamples = n_resamples
        self.dense_resamples = dense_resamples
        self.resample_share = resample_share
        self.unstable_jaccard = unstable_jaccard
        self.silhouette_sample_size = silhouette_sample_size
        self.chunk_size = chunk_size
        self.n_jobs = n_jobs
        self.seed = seed
        self.umap_kwargs = umap_kwargs

    def check_params(self) -> "SegmentClusterer":
        """ClusterConfigError naming a bad setting; called by fit and by from_config, so a pipeline
        fails on a bad cluster setting before it trains anything (cluster/params.py)."""
        check_params(self.get_params(deep=False))
        return self

    # ---- construction from config -----------------------------------------------------

    @classmethod
    def from_config(cls, cfg) -> "SegmentClusterer":
        """From a `cluster` config group (configs/cluster/default.yaml), checked."""
        return cls(**config_kwargs(cfg)).check_params()

    # ---- fitted facts -----------------------------------------------------------------

    @property
    def n_clusters_(self) -> int:
        return int(self.broad_.n_segments_)

    @property
    def n_subsegments_(self) -> int:
        return self.micro_.n_micro_

    @property
    def n_dense_(self) -> int:
        return int(len(self.label_order_))

    @property
    def is_outlier_(self) -> np.ndarray:
        return self.labels_ == NOISE

    @property
    def embedding_dim_(self) -> int:
        return int(self.embedding_dim)

    def _check_fitted(self):
        if not hasattr(self, "hdbscan_"):
            raise RuntimeError("this SegmentClusterer is not fitted yet: call fit() or SegmentClusterer.load()")

    # ---- fit --------------------------------------------------------------------------

    def min_segment_customers(self, n: int) -> int:
        return max(int(self.min_segment_size), math.ceil(float(self.min_segment_share) * n))

    def _outcome_frame(self, outcomes, n: int) -> pd.DataFrame | None:
        if outcomes is None:
            return None
        if not isinstance(outcomes, pd.DataFrame):
            raise ClusterInputError("outcomes must be a DataFrame of propensity scores (columns p_<label> / "
                                    "pred_<label>), one row per embedding row")
        if len(outcomes) != n:
            raise ClusterInputError(f"{len(outcomes)} rows of outcome scores for {n} embedding rows")
        return outcomes.reset_index(drop=True)

    def fit(self, X, y=None, *, ids=None, outcomes: pd.DataFrame | None = None) -> "SegmentClusterer":
        """Fit on embeddings X [n, dim]; `outcomes` (propensity scores, one row per row of X) make
        the broad level outcome-aware. y is ignored (scikit-learn convention)."""
        import hdbscan

        self.check_params()
        t_start = time.perf_counter()
        timings: dict[str, float] = {}
        ids, X = check_embeddings(X, ids)
        n, dim = X.shape
        outcomes = self._outcome_frame(outcomes, n)
        floor_all = self.min_segment_customers(n)
        if n < 2 * floor_all:
            raise ClusterInputError(
                f"too few customers to cluster: {n}; two segments of the minimum segment size "
                f"({floor_all} customers: min_segment_share={self.min_segment_share}, min_segment_size="
                f"{self.min_segment_size}) need at least {2 * floor_all}")
        self.embedding_dim = dim
        rng = np.random.default_rng(self.seed)
        if self.fit_sample_size and n > int(self.fit_sample_size):
            fit_index = np.sort(rng.choice(n, int(self.fit_sample_size), replace=False))
        else:
            fit_index = np.arange(n)
        n_fit = len(fit_index)

        log.info("clustering %d customers x %d dims; fitting on %d", n, dim, n_fit)
        t = time.perf_counter()
        X_fit = X[fit_index]
        self.scaler_ = make_scaler(self.scaler)
        self.scaler_.fit(X_fit)
        self.reducer_ = make_reducer(self.reducer, self.n_components, self.seed, dim=dim, n_fit=n_fit,
                                     umap_kwargs=self.umap_kwargs)
        self.reducer_.fit(np.asarray(self.scaler_.transform(X_fit)))
        Z_fit = self.transform(X_fit)
        del X_fit
        Z_fit, dup_share = resolution_floor(Z_fit, self.seed)
        timings["reduce"] = time.perf_counter() - t

        from joblib import Memory

        cache = tempfile.mkdtemp(prefix="eventseg-hdbscan-")
        try:
            # the expensive part of HDBSCAN (core distances, spanning tree) depends on min_samples only:
            # cached, it is built once per min_samples value for the whole sweep and the final fit
            memory = Memory(cache, verbose=0)
            t = time.perf_counter()
            mcs, ms, method, sweep, selection = choose_params(
                Z_fit, memory, floor=self.min_segment_customers(n_fit), min_cluster_size=self.min_cluster_size,
                min_samples=self.min_samples, sweep_shares=self.sweep_min_cluster_size_shares,
                sweep_min_samples=self.sweep_min_samples, selection_method=self.cluster_selection_method,
                max_noise_share=self.max_noise_share)
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
        if k == 0:
            warnings.warn("HDBSCAN found no dense group in the representation (too few customers, or no density "
                          "structure): micro-segments equal the broad segments and no customer is left as an outlier. "
                          "Try a smaller cluster.min_cluster_size or cluster.min_samples", stacklevel=2)
        sizes = np.bincount(raw_labels[raw_labels >= 0], minlength=k)
        order = np.lexsort((np.arange(k), -sizes))  # largest first, ties by hdbscan label
        self.label_order_ = order  # dense group g is hdbscan cluster order[g]
        self.relabel_ = np.full(k + 1, NOISE, dtype=np.int64)  # hdbscan label + 1 → dense group
        self.relabel_[order + 1] = np.arange(k)
        self.hdbscan_ = hdb
        self.min_cluster_size_, self.min_samples_, self.cluster_selection_method_ = mcs, ms, method
        self.placer_ = DenseGroupPlacer(hdb, self.n_jobs)
        timings["fit"] = time.perf_counter() - t

        # dense groups, strengths and outliers of the fit sample, then the broad and micro levels on it
        t = time.perf_counter()
        fit_scores = np.clip(np.nan_to_num(hdb.outlier_scores_, nan=0.0), 0.0, 1.0)
        if k == 0:
            self.outlier_threshold_ = 1.0  # scores are clipped to [0, 1]: nobody is above it
        elif self.outlier_threshold is not None:
            self.outlier_threshold_ = float(self.outlier_threshold)
        elif float(self.outlier_share) > 0:
            self.outlier_threshold_ = float(np.quantile(fit_scores, 1 - float(self.outlier_share)))
        else:
            self.outlier_threshold_ = 1.0
        dense_fit, strength_fit, core_fit, outlier_fit = self._dense(
            Z_fit, raw_labels, np.nan_to_num(hdb.probabilities_, nan=1.0), fit_scores)
        self.outcome_space_ = None
        if outcomes is not None:
            columns = score_names(outcomes.columns)
            self.outcome_space_ = OutcomeSpace(columns).fit(outcomes.iloc[fit_index[~outlier_fit]])
        S_fit = self._broad_space(Z_fit, None if outcomes is None else outcomes.iloc[fit_index])
        self.broad_ = BroadLevel(
            parse_segment_range(self.n_segments), n_resamples=int(self.n_resamples), resample_share=float(self.resample_share),
            min_ari=float(self.min_ari), unstable_jaccard=float(self.unstable_jaccard),
            max_share=float(self.max_segment_share), seed=int(self.seed)).fit(S_fit[~outlier_fit])
        broad_fit = np.where(outlier_fit, NOISE, self.broad_.predict(S_fit))
        self.micro_ = MicroLevel().fit(broad_fit, dense_fit, self.n_clusters_, k, self.min_segment_customers(n_fit))
        timings["hierarchy"] = time.perf_counter() - t

        # every customer: fitted values for the fit sample, placement for the rest
        log.info("%d dense groups (min_cluster_size=%d min_samples=%d, %s), %d broad segments, %d micro-segments; "
                 "placing %d more customers", k, mcs, ms, method, self.n_clusters_, self.n_subsegments_, n - n_fit)
        t = time.perf_counter()
        fitted = ClusterPrediction(broad_fit, self.micro_.predict(broad_fit, dense_fit), strength_fit, core_fit,
                                   fit_scores)
        result = ClusterPrediction(np.empty(n, np.int32), np.empty(n, np.int32), np.empty(n, np.float32),
                                   np.empty(n, bool), np.empty(n, np.float32))
        for field in ("labels", "subsegments", "membership_strength", "is_core", "outlier_score"):
            getattr(result, field)[fit_index] = getattr(fitted, field)
        rest_index = np.setdiff1d(np.arange(n), fit_index, assume_unique=True)
        for start in range(0, len(rest_index), int(self.chunk_size)):
            rows = rest_index[start:start + int(self.chunk_size)]
            part = self._place(X[rows], None if outcomes is None else outcomes.iloc[rows])
            for field in ("labels", "subsegments", "membership_strength", "is_core", "outlier_score"):
                getattr(result, field)[rows] = getattr(part, field)
        timings["place"] = time.perf_counter() - t
        self.ids_, self.fit_index_ = ids, fit_index
        self.labels_, self.subsegments_ = result.labels, result.subsegments
        self.membership_strength_, self.is_core_, self.outlier_score_ = (
            result.membership_strength, result.is_core, result.outlier_score)

        t = time.perf_counter()
        dense_resamples = min(int(self.dense_resamples), int(self.n_resamples))  # n_resamples=0 turns all stability off
        stability = dense_stability(
            Z_fit, raw_labels, mcs, ms, method, n_resamples=dense_resamples, resample_share=self.resample_share,
            unstable_jaccard=self.unstable_jaccard, seed=self.seed, n_jobs=self.n_jobs,
            label_order=self.label_order_, relabel=self.relabel_)
        timings["stability"] = time.perf_counter() - t
        t = time.perf_counter()
        silhouette = dense_silhouette(Z_fit, raw_labels, sample_size=self.silhouette_sample_size, seed=self.seed)
        timings["silhouette"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t_start
        self.sweep_ = sweep
        self.metrics_ = cluster_metrics(
            result, params=self.get_params(), n_fit=n_fit, embedding_dim=dim, reducer=self.reducer_,
            broad=self.broad_, micro=self.micro_, outcome_space=self.outcome_space_,
            outlier_threshold=self.outlier_threshold_, hdb=hdb, raw_labels=raw_labels, n_dense=k,
            chosen=(mcs, ms, method), sweep=sweep, selection=selection, silhouette=silhouette,
            stability=stability, dup_share=dup_share, timings=timings)
        return self

    def fit_predict(self, X, y=None, *, ids=None, outcomes: pd.DataFrame | None = None) -> np.ndarray:
        return self.fit(X, ids=ids, outcomes=outcomes).labels_

    def assignments(self, id_col: str = OUTPUT_ID) -> pd.DataFrame:
        """One row per fitted customer: id, cluster (broad), subsegment, membership_strength,
        is_core, outlier_score, is_outlier."""
        self._check_fitted()
        if not hasattr(self, "labels_"):
            raise RuntimeError("a loaded clusterer has no fitted customers: use predict(embeddings)")
        return ClusterPrediction(self.labels_, self.subsegments_, self.membership_strength_, self.is_core_,
                                 self.outlier_score_).to_frame(self.ids_, id_col)

    # ---- placement --------------------------------------------------------------------

    def transform(self, X) -> np.ndarray:
        """Standardised, reduced coordinates (float64 [n, n_components]) of embeddings."""
        X = np.asarray(X, dtype=np.float32)
        Z = self.reducer_.transform(np.asarray(self.scaler_.transform(X), dtype=np.float32))
        return np.ascontiguousarray(Z, dtype=np.float64)

    def _dense(self, Z, raw, prob, score):
        """(dense group, strength, is_core, is_outlier): HDBSCAN's group for core points, the
        nearest core point's group for the rest; outliers are non-core above the threshold."""
        dense = self.relabel_[raw + 1]
        core = dense >= 0
        strength = np.where(core, prob, 0.0)
        if self.n_dense_ == 0:  # no dense structure: one group, nobody in a core
            dense[:] = 0
        elif (~core).any():
            nearest, reach = self.placer_.nearest_core(Z[~core])
            dense[~core] = self.relabel_[nearest + 1]
            strength[~core] = reach
        outlier = ~core & (score > self.outlier_threshold_)
        return dense, strength.astype(np.float32), core, outlier

    def _broad_space(self, Z, outcomes: pd.DataFrame | None) -> np.ndarray:
        if self.outcome_space_ is None:
            return Z
        if outcomes is None:
            raise ClusterInputError(
                "this clusterer forms broad segments from propensity scores "
                f"({', '.join(self.outcome_space_.columns)}): pass outcomes= with those columns for these customers")
        return self.outcome_space_.transform(outcomes)

    def _place(self, X, outcomes, previous=None, stickiness: float = 0.0) -> ClusterPrediction:
        Z = self.transform(X)
        raw, prob, score = self.placer_.place(Z)
        score = np.clip(np.nan_to_num(score, nan=0.0), 0.0, 1.0)
        dense, strength, core, outlier = self._dense(Z, raw, np.nan_to_num(prob, nan=1.0), score)
        if previous is not None and stickiness > 0:  # a segment member becomes an outlier only beyond the margin
            t = self.outlier_threshold_
            outlier &= ~(previous >= 0) | (score > t + stickiness * (1 - t))
        broad = np.where(outlier, NOISE, self.broad_.predict(self._broad_space(Z, outcomes), previous, stickiness))
        return ClusterPrediction(broad.astype(np.int32), self.micro_.predict(broad, dense).astype(np.int32),
                                 strength, core, score.astype(np.float32))

    def predict(self, X, *, outcomes: pd.DataFrame | None = None, soft: bool = False,
                previous=None, stickiness: float = 0.0) -> ClusterPrediction:
        """Place new customers without refitting: broad segment, micro-segment, strength, core flag,
        outlier score; with soft=True also soft membership in the dense groups
        ([n, n_dense], hdbscan.membership_vector). `outcomes`: their propensity scores, required
        when the clusterer was fitted with outcomes. `previous` (each row's earlier broad segment,
        −1 outlier, below −1 none) with `stickiness` > 0: keep it unless another segment is closer
        by more than that margin (and move in or out of the outliers only beyond it too)."""
        self._check_fitted()
        _, X = check_embeddings(X, expected_dim=self.embedding_dim)
        outcomes = self._outcome_frame(outcomes, len(X))
        if self.outcome_space_ is not None and outcomes is None:
            self._broad_space(None, None)  # raises the explanation
        stickiness = check_stickiness(stickiness)
        if previous is not None:
            previous = np.asarray(previous, dtype=np.int64)
            if previous.shape != (len(X),):
                raise ClusterInputError(f"previous must hold one segment per customer ({len(X)}), got shape {previous.shape}")
        step = int(self.chunk_size)
        pred = ClusterPrediction.concat([
            self._place(X[s:s + step], None if outcomes is None else outcomes.iloc[s:s + step],
                        None if previous is None else previous[s:s + step], stickiness)
            for s in range(0, len(X), step)])
        if soft:
            pred.membership = self.membership(X)
        return pred

    def membership(self, X) -> np.ndarray:
        """Soft membership of new points in every dense group, [n, n_dense] (columns = group ids)."""
        import hdbscan

        self._check_fitted()
        _, X = check_embeddings(X, expected_dim=self.embedding_dim)
        out = []
        for s in range(0, len(X), int(self.chunk_size)):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=RuntimeWarning)
                mv = hdbscan.membership_vector(self.hdbscan_, self.transform(X[s:s + int(self.chunk_size)]))
            out.append(np.asarray(mv, dtype=np.float64).reshape(-1, self.n_dense_)[:, self.label_order_])
        return np.nan_to_num(np.vstack(out)).astype(np.float32)

    # ---- persistence ------------------------------------------------------------------

    def save(self, path: str | os.PathLike, **sidecar_fields: Any) -> Path:
        """Write scaler + reducer + HDBSCAN (with everything prediction needs) to one file,
        atomically, plus a `<name>.json` sidecar.

        The file is an NPZ archive of plain arrays and JSON (see `load`): no pickle, so loading
        a file can never run code. It starts with a small header (format, format version,
        eventseg/hdbscan/sklearn/numpy versions) that load() checks before reading anything else.
        """
        self._check_fitted()
        return save_clusterer(self, path, **sidecar_fields)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SegmentClusterer":
        """Load a clusterer written by save(); refuse one from another format or eventseg version.

        Never runs code from the file: arrays are read with np.load(allow_pickle=False), the scaler
        and PCA with skops against an explicit list of types (SKOPS_TRUSTED_TYPES), checked with
        skops.io.get_untrusted_types first. Anything else is refused with ClustererFileError.
        """
        return load_clusterer(path, cls)
