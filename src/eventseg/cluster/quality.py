"""Quality of a fit: silhouette on a sample, stability under resampling (adjusted Rand index,
customers that change segment, per-segment best Jaccard overlap) and the metrics summary."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

from eventseg import __version__
from eventseg.cluster.placement import NOISE, _Placer

if TYPE_CHECKING:
    from eventseg.cluster.estimator import SegmentClusterer


def _r(x, digits: int = 6):
    x = float(x)
    return None if not np.isfinite(x) else round(x, digits)


def _silhouette(sc: SegmentClusterer, Z: np.ndarray, raw_labels: np.ndarray) -> float | None:
    import sklearn
    from sklearn.metrics import silhouette_score

    keep = np.flatnonzero(raw_labels >= 0)
    if len(np.unique(raw_labels[keep])) < 2:
        return None
    if len(keep) > sc.silhouette_sample_size:
        keep = np.sort(np.random.default_rng(sc.seed + 1).choice(keep, sc.silhouette_sample_size, replace=False))
    with sklearn.config_context(working_memory=64):  # MB per distance chunk (default 1 GB)
        return float(silhouette_score(Z[keep], raw_labels[keep]))


def _stability(sc: SegmentClusterer, Z: np.ndarray, main: np.ndarray, mcs: int, ms: int, method: str) -> dict:
    """Dense groups refitted on seeded subsamples of the fit sample, compared with the main fit (a
    diagnostic of the micro level; the broad level's own stability decides its count, broad.py)."""
    import hdbscan
    from sklearn.metrics import adjusted_rand_score

    k = int(main.max()) + 1 if len(main) else 0
    n_resamples = min(int(sc.dense_resamples), int(sc.n_resamples))  # n_resamples=0 turns all stability off
    if n_resamples < 1 or k < 1:
        return {"n_resamples": 0, "skipped": "disabled" if n_resamples < 1 else "no segments"}
    n_fit = len(Z)
    m = int(round(float(sc.resample_share) * n_fit))
    mcs_r = max(2, int(round(mcs * float(sc.resample_share))))
    aris, changed, changed_nn, counts = [], [], [], []
    jaccard = np.zeros((n_resamples, k))
    for r in range(n_resamples):
        rng = np.random.default_rng([sc.seed, 7919, r])
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
            lab[out] = _Placer(h, sc._n_jobs).place(Z[out])[0]
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
    survived = (jaccard >= float(sc.unstable_jaccard)).sum(axis=0)
    unstable_raw = np.flatnonzero(survived <= n_resamples / 2)  # fails in most resamples
    seg_jac = {int(s): round(float(jaccard[:, sc.label_order_[s]].mean()), 4) for s in range(k)}
    return {
        "n_resamples": n_resamples, "sample_share": float(sc.resample_share),
        "evaluated_on": int(n_fit),
        "ari_mean": _r(np.nanmean(aris)), "ari_min": _r(np.nanmin(aris)), "ari": [_r(a) for a in aris],
        "changed_share_mean": _r(np.mean(changed)), "changed_share_max": _r(np.max(changed)),
        "changed_share_non_noise_mean": _r(np.nanmean(changed_nn)),
        "n_clusters_per_resample": counts,
        "group_jaccard_mean": seg_jac,
        "unstable_groups": sorted(int(sc._relabel[c + 1]) for c in unstable_raw),
        "unstable_jaccard_threshold": float(sc.unstable_jaccard),
    }


def _shares(labels: np.ndarray, k: int) -> tuple[dict, dict]:
    sizes = np.bincount(labels[labels >= 0], minlength=k)
    return {str(i): int(v) for i, v in enumerate(sizes)}, {str(i): _r(v / max(len(labels), 1)) for i, v in enumerate(sizes)}


def _metrics(sc: SegmentClusterer, n, n_fit, hdb, raw_labels, silhouette, stability, selection, dup_share,
             timings) -> dict:
    """cluster_metrics.json: coverage, the broad level (sizes, how its count was chosen, its
    stability), the micro level, and the dense groups (HDBSCAN's settings, sweep and stability)."""
    k = sc.n_clusters_
    sizes, shares = _shares(sc.labels_, k)
    micro_sizes, micro_shares = _shares(sc.subsegments_, sc.n_subsegments_)
    try:
        rv = float(hdb.relative_validity_)
    except Exception:  # pragma: no cover - no tree / no clusters
        rv = None
    explained = getattr(sc.reducer_, "explained_variance_ratio_", None)
    broad = sc.broad_
    outlier_share = float(sc.is_outlier_.mean())
    largest = max(shares.values()) if shares else None
    if largest is not None and largest > float(sc.max_segment_share):
        warnings.warn(f"the largest broad segment holds {largest:.0%} of customers (more than max_segment_share="
                      f"{sc.max_segment_share}): the representation may not separate customers well", stacklevel=3)
    return {
        "n_customers": int(n), "n_fit_sample": int(n_fit), "embedding_dim": int(sc.embedding_dim),
        "n_clusters": k, "n_subsegments": sc.n_subsegments_,
        "coverage": _r(1 - outlier_share), "outlier_share": _r(outlier_share),
        "core_share": _r(float(sc.is_core_.mean())),
        "outlier_threshold": _r(sc.outlier_threshold_),
        "cluster_sizes": sizes, "cluster_shares": shares, "largest_share": largest,
        "subsegment_sizes": micro_sizes, "subsegment_shares": micro_shares,
        "subsegment_parent": {str(m): int(b) for m, b in enumerate(sc.micro_.parent_)},
        "mean_membership_strength": _r(float(sc.membership_strength_[~sc.is_outlier_].mean())),
        "broad": {
            "space": "outcomes" if sc.outcome_space_ is not None else "representation",
            "outcome_columns": None if sc.outcome_space_ is None else list(sc.outcome_space_.columns),
            "requested": list(broad.n_segments), "status": broad.status_,
            "stability": broad.stability_, "merged_unstable": broad.merged_,
            "selection": _records(broad.selection_),
        },
        "dense": {
            "n_groups": sc.n_dense_,
            "outside_cores_fit_sample": _r(float((raw_labels == NOISE).mean())),
            "relative_validity": None if rv is None or not np.isfinite(rv) else _r(rv),
            "silhouette": None if silhouette is None else _r(silhouette),
            "chosen": {"min_cluster_size": sc.min_cluster_size_, "min_samples": sc.min_samples_,
                       "cluster_selection_method": sc.cluster_selection_method_,
                       "auto": sc.min_cluster_size is None or sc.min_samples is None},
            "selection": selection, "stability": stability or {}, "sweep": _records(sc.sweep_),
        },
        "duplicate_share_fit_sample": _r(dup_share),
        "reducer": sc.reducer if isinstance(sc.reducer, str) else type(sc.reducer).__name__,
        "n_components": int(getattr(sc.reducer_, "n_components_", getattr(sc.reducer_, "n_components", sc.embedding_dim))
                            if sc.reducer != "none" else sc.embedding_dim),
        "explained_variance": None if explained is None else _r(float(np.sum(explained))),
        "params": _json_params(sc),
        "seconds": {k2: round(v, 3) for k2, v in timings.items()},
        "eventseg_version": __version__,
    }


def _records(table) -> list[dict]:
    """Rows of a table as strict JSON (no NaN)."""
    return [{k: (None if isinstance(v, float) and not np.isfinite(v) else (v.item() if isinstance(v, np.generic) else v))
             for k, v in r.items()} for r in table.to_dict(orient="records")]


def _json_params(sc: SegmentClusterer) -> dict:
    return {k: (v if v is None or isinstance(v, (str, int, float, bool, dict)) else
                list(v) if isinstance(v, (tuple, list)) else type(v).__name__)
            for k, v in sc.get_params().items()}
