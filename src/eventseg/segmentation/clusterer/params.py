"""SegmentClusterer settings: the checks that name a bad value before any work, and the
arguments read from the `cluster` config group.

Why not scikit-learn's `_parameter_constraints`: its validation lives in the private module
`sklearn.utils._param_validation` (no stability promise for estimators outside scikit-learn),
and its messages name the type, not the config key and the fix that a user of the command needs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eventseg.run.config import check_known_settings, plain
from eventseg.segmentation.clusterer.inputs import ClusterConfigError, parse_segment_range
from eventseg.segmentation.clusterer.selection import SELECTION_METHODS


def check_params(params: Mapping[str, Any]) -> None:
    """ClusterConfigError naming a bad setting among a SegmentClusterer's settings (its
    get_params()); called by fit and by from_config, so a pipeline fails on a bad cluster
    setting before it trains anything."""
    for name in ("min_segment_share", "min_segment_size", "max_noise_share", "max_segment_share", "min_ari",
                 "outlier_share", "outlier_threshold", "min_cluster_size", "min_samples", "fit_sample_size",
                 "n_resamples", "dense_resamples", "resample_share", "unstable_jaccard", "silhouette_sample_size", "chunk_size",
                 "n_jobs", "seed", "n_components"):
        v = params[name]
        try:
            v is None or float(v)
        except (TypeError, ValueError):
            raise ClusterConfigError(f"{name} must be a number, got {v!r}") from None
    for name, lo in (("n_resamples", 0), ("dense_resamples", 0), ("chunk_size", 1), ("silhouette_sample_size", 2), ("seed", 0)):
        if int(params[name]) < lo:
            raise ClusterConfigError(f"{name} must be an int >= {lo}, got {params[name]}")
    if not 0 <= float(params["unstable_jaccard"]) <= 1:
        raise ClusterConfigError(f"unstable_jaccard must be in [0, 1], got {params['unstable_jaccard']}")
    for name, given in (("sweep_min_samples", "min_samples"), ("sweep_min_cluster_size_shares", "min_cluster_size")):
        if params[given] is None and not list(params[name] or ()):
            raise ClusterConfigError(f"{name} is empty: give at least one value to sweep (or set "
                                     f"{name.replace('sweep_', '').replace('_shares', '')})")
    if params["cluster_selection_method"] not in SELECTION_METHODS:
        raise ClusterConfigError(f"cluster_selection_method must be one of {SELECTION_METHODS}, "
                                 f"got {params['cluster_selection_method']!r}")
    for name, lo, hi, closed in (("min_segment_share", 0, 0.5, False), ("max_noise_share", 0, 1, True),
                                 ("resample_share", 0, 1, False), ("max_segment_share", 0, 1, True),
                                 ("min_ari", 0, 1, True), ("outlier_share", 0, 0.5, True)):
        v = float(params[name])
        if not (lo < v <= hi if closed else lo < v < hi) and not (name == "outlier_share" and v == 0):
            raise ClusterConfigError(f"{name} must be in ({lo}, {hi}{']' if closed else ')'}, got {v}")
    if params["outlier_threshold"] is not None and not 0 <= float(params["outlier_threshold"]) <= 1:
        raise ClusterConfigError(f"outlier_threshold must be in [0, 1] or null, got {params['outlier_threshold']}")
    if params["min_samples"] is not None and int(params["min_samples"]) < 1:
        raise ClusterConfigError(f"min_samples must be >= 1, got {params['min_samples']}")
    mcs = params["min_cluster_size"]
    if mcs is not None and not (0 < float(mcs) < 1 or int(mcs) >= 2):
        raise ClusterConfigError(f"min_cluster_size must be an int >= 2 or a share in (0, 1), got {mcs}")
    if params["fit_sample_size"] is not None and int(params["fit_sample_size"]) < 100:
        raise ClusterConfigError(f"fit_sample_size must be >= 100 (or null for all customers), got {params['fit_sample_size']}")
    parse_segment_range(params["n_segments"])


def config_kwargs(cfg) -> dict:
    """SegmentClusterer arguments from a `cluster` config group (configs/cluster/default.yaml);
    unknown keys are errors, null means the default except where null is meaningful."""
    c = dict(plain(cfg) or {})
    sweep = c.get("sweep") or {}
    stab = c.get("stability") or {}
    flat = {"reducer", "n_components", "scaler", "min_cluster_size", "min_samples", "cluster_selection_method",
            "min_segment_share", "min_segment_size", "max_noise_share", "n_segments", "max_segment_share",
            "outlier_share", "outlier_threshold", "fit_sample_size", "silhouette_sample_size", "chunk_size",
            "n_jobs", "seed"}
    known = flat | {"umap", "sweep", "stability"}
    check_known_settings(c, known, "cluster", ClusterConfigError)
    for group, keys in (("sweep", {"min_cluster_size_shares", "min_samples"}),
                        ("stability", {"n_resamples", "dense_resamples", "sample_share", "unstable_jaccard",
                                       "min_ari"})):
        check_known_settings(c.get(group) or {}, keys, f"cluster.{group}", ClusterConfigError)
    nullable = {"min_cluster_size", "min_samples", "fit_sample_size", "outlier_threshold"}  # null is meaningful
    kw = {k: c[k] for k in flat if k in c and (c[k] is not None or k in nullable)}
    for key, arg in (("min_cluster_size_shares", "sweep_min_cluster_size_shares"), ("min_samples", "sweep_min_samples")):
        if sweep.get(key):
            kw[arg] = tuple(sweep[key])
    for key, arg in (("n_resamples", "n_resamples"), ("dense_resamples", "dense_resamples"),
                     ("sample_share", "resample_share"),
                     ("unstable_jaccard", "unstable_jaccard"), ("min_ari", "min_ari")):
        if stab.get(key) is not None:
            kw[arg] = stab[key]
    if isinstance(kw.get("n_segments"), list):
        kw["n_segments"] = tuple(kw["n_segments"])
    if c.get("umap"):
        kw["umap_kwargs"] = c["umap"]
    return kw
