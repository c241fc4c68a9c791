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
    """Refit on seeded subsamples of the fit sample; compare with the main fit on the fit sample."""
    import hdbscan
    from sklearn.metrics import adjusted_rand_score

    k = int(main.max()) + 1 if len(main) else 0
    if sc.n_resamples < 1 or k < 1:
        return {"n_resamples": 0, "skipped": "disabled" if sc.n_resamples < 1 else "no segments"}
    n_fit = len(Z)
    m = int(round(sc.resample_share * n_fit))
    mcs_r = max(2, int(round(mcs * sc.resample_share)))
    aris, changed, changed_nn, counts = [], [], [], []
    jaccard = np.zeros((sc.n_resamples, k))
    for r in range(sc.n_resamples):
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
            lab[out] = _Placer(h, sc.n_jobs).place(Z[out])[0]
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
    survived = (jaccard >= sc.unstable_jaccard).sum(axis=0)
    unstable_raw = np.flatnonzero(survived <= sc.n_resamples / 2)  # fails in most resamples
    seg_jac = {int(s): round(float(jaccard[:, sc.label_order_[s]].mean()), 4) for s in range(k)}
    return {
        "n_resamples": sc.n_resamples, "sample_share": sc.resample_share,
        "evaluated_on": int(n_fit),
        "ari_mean": _r(np.nanmean(aris)), "ari_min": _r(np.nanmin(aris)), "ari": [_r(a) for a in aris],
        "changed_share_mean": _r(np.mean(changed)), "changed_share_max": _r(np.max(changed)),
        "changed_share_non_noise_mean": _r(np.nanmean(changed_nn)),
        "n_clusters_per_resample": counts,
        "segment_jaccard_mean": seg_jac,
        "unstable_segments": sorted(int(sc._relabel[c + 1]) for c in unstable_raw),
        "unstable_jaccard_threshold": sc.unstable_jaccard,
    }


def _metrics(sc: SegmentClusterer, n, n_fit, hdb, raw_labels, silhouette, stability, selection, dup_share,
             timings) -> dict:
    k = sc.n_clusters_
    sizes = np.bincount(sc.labels_[sc.labels_ >= 0], minlength=k)
    floor = sc.min_segment_customers(n)
    small = [int(s) for s in np.flatnonzero(sizes < floor)]
    if small:
        warnings.warn(f"segment(s) {small} hold fewer than the minimum segment size of {floor} customers "
                      f"(min_segment_share={sc.min_segment_share}); consider a larger min_cluster_size", stacklevel=3)
    if k == 0:
        warnings.warn("HDBSCAN found no segments: every customer is noise. Try a smaller min_cluster_size or "
                      "min_samples, or another reducer", stacklevel=3)
    try:
        rv = float(hdb.relative_validity_)
    except Exception:  # pragma: no cover - no tree / no clusters
        rv = None
    explained = getattr(sc.reducer_, "explained_variance_ratio_", None)
    stab = stability or {}
    if stab.get("unstable_segments"):
        warnings.warn(f"segment(s) {stab['unstable_segments']} do not survive resampling (best Jaccard overlap < "
                      f"{sc.unstable_jaccard} in most of {sc.n_resamples} resamples)", stacklevel=3)
    return {
        "n_customers": int(n), "n_fit_sample": int(n_fit), "embedding_dim": int(sc.embedding_dim),
        "n_clusters": k,
        "noise_share": _r(float((sc.labels_ == NOISE).mean())),
        "noise_share_fit_sample": _r(float((raw_labels == NOISE).mean())),
        "cluster_sizes": {str(s): int(v) for s, v in enumerate(sizes)},
        "cluster_shares": {str(s): _r(v / n) for s, v in enumerate(sizes)},
        "min_segment_customers": int(floor),
        "small_segments": small,
        "relative_validity": None if rv is None or not np.isfinite(rv) else _r(rv),
        "silhouette": None if silhouette is None else _r(silhouette),
        "silhouette_sample_size": sc.silhouette_sample_size,
        "mean_membership_strength": _r(float(sc.membership_strength_[sc.labels_ >= 0].mean())) if k else None,
        "duplicate_share_fit_sample": _r(dup_share),
        "reducer": sc.get_params()["reducer"],
        "n_components": int(getattr(sc.reducer_, "n_components_", getattr(sc.reducer_, "n_components", sc.embedding_dim))
                            if sc.reducer != "none" else sc.embedding_dim),
        "explained_variance": None if explained is None else _r(float(np.sum(explained))),
        "chosen": {"min_cluster_size": sc.min_cluster_size_, "min_samples": sc.min_samples_,
                   "cluster_selection_method": sc.cluster_selection_method_,
                   "auto": sc.min_cluster_size is None or sc.min_samples is None},
        "selection": selection,
        "stability": stab,
        "params": sc.get_params(),
        "sweep": [{k2: (None if isinstance(v, float) and not np.isfinite(v) else v) for k2, v in r.items()}
                  for r in sc.sweep_.to_dict(orient="records")],  # strict JSON: no NaN
        "seconds": {k2: round(v, 3) for k2, v in timings.items()},
        "eventseg_version": __version__,
    }
