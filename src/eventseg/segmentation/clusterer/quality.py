"""Quality of a fit: silhouette on a sample, stability under resampling (adjusted Rand index,
customers that change segment, per-segment best Jaccard overlap) and the metrics summary."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from eventseg import __version__
from eventseg.segmentation.clusterer.placement import NOISE, ClusterPrediction, DenseGroupPlacer

if TYPE_CHECKING:
    from eventseg.segmentation.clusterer.broad import BroadLevel, OutcomeSpace
    from eventseg.segmentation.clusterer.hierarchy import MicroLevel


def _r(x, digits: int = 6):
    x = float(x)
    return None if not np.isfinite(x) else round(x, digits)


def dense_silhouette(Z: np.ndarray, raw_labels: np.ndarray, *, sample_size: int, seed: int) -> float | None:
    """Silhouette of the dense groups (noise left out; None below two groups) on a seeded sample of at
    most `sample_size` points."""
    import sklearn
    from sklearn.metrics import silhouette_score

    keep = np.flatnonzero(raw_labels >= 0)
    if len(np.unique(raw_labels[keep])) < 2:
        return None
    if len(keep) > sample_size:
        keep = np.sort(np.random.default_rng(seed + 1).choice(keep, sample_size, replace=False))
    with sklearn.config_context(working_memory=64):  # MB per distance chunk (default 1 GB)
        return float(silhouette_score(Z[keep], raw_labels[keep]))


def dense_stability(Z: np.ndarray, main: np.ndarray, mcs: int, ms: int, method: str, *, n_resamples: int,
                    resample_share: float, unstable_jaccard: float, seed: int, n_jobs: int,
                    label_order: np.ndarray, relabel: np.ndarray) -> dict:
    """Dense groups refitted on `n_resamples` seeded subsamples of the fit sample, compared with
    the main fit (hdbscan labels `main`; `label_order` / `relabel` translate them to dense group
    ids). A diagnostic of the micro level; the broad level's own stability decides its count, broad.py."""
    import hdbscan
    from sklearn.metrics import adjusted_rand_score

    k = int(main.max()) + 1 if len(main) else 0
    if n_resamples < 1 or k < 1:
        return {"n_resamples": 0, "skipped": "disabled" if n_resamples < 1 else "no segments"}
    n_fit = len(Z)
    m = int(round(float(resample_share) * n_fit))
    mcs_r = max(2, int(round(mcs * float(resample_share))))
    aris, changed, changed_nn, counts = [], [], [], []
    jaccard = np.zeros((n_resamples, k))
    for r in range(n_resamples):
        rng = np.random.default_rng([seed, 7919, r])
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
            lab[out] = DenseGroupPlacer(h, n_jobs).place(Z[out])[0]
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
    survived = (jaccard >= float(unstable_jaccard)).sum(axis=0)
    unstable_raw = np.flatnonzero(survived <= n_resamples / 2)  # fails in most resamples
    seg_jac = {int(s): round(float(jaccard[:, label_order[s]].mean()), 4) for s in range(k)}
    return {
        "n_resamples": n_resamples, "sample_share": float(resample_share),
        "evaluated_on": int(n_fit),
        "ari_mean": _r(np.nanmean(aris)), "ari_min": _r(np.nanmin(aris)), "ari": [_r(a) for a in aris],
        "changed_share_mean": _r(np.mean(changed)), "changed_share_max": _r(np.max(changed)),
        "changed_share_non_noise_mean": _r(np.nanmean(changed_nn)),
        "n_clusters_per_resample": counts,
        "group_jaccard_mean": seg_jac,
        "unstable_groups": sorted(int(relabel[c + 1]) for c in unstable_raw),
        "unstable_jaccard_threshold": float(unstable_jaccard),
    }


def _shares(labels: np.ndarray, k: int) -> tuple[dict, dict]:
    sizes = np.bincount(labels[labels >= 0], minlength=k)
    return {str(i): int(v) for i, v in enumerate(sizes)}, {str(i): _r(v / max(len(labels), 1)) for i, v in enumerate(sizes)}


def cluster_metrics(placed: ClusterPrediction, *, params: dict[str, Any], n_fit: int, embedding_dim: int,
                    reducer, broad: BroadLevel, micro: MicroLevel, outcome_space: OutcomeSpace | None,
                    outlier_threshold: float, hdb, raw_labels: np.ndarray, n_dense: int, chosen: tuple[int, int, str],
                    sweep: pd.DataFrame, selection: dict, silhouette: float | None, stability: dict,
                    dup_share: float, timings: dict[str, float]) -> dict:
    """cluster_metrics.json: coverage, the broad level (sizes, how its count was chosen, its
    stability), the micro level, and the dense groups (HDBSCAN's settings, sweep and stability).

    `placed`: every customer's place; `params`: the clusterer's settings (get_params()); `reducer`:
    the fitted reducer; `chosen`: HDBSCAN's (min_cluster_size, min_samples, selection method)."""
    k = int(broad.n_segments_)
    sizes, shares = _shares(placed.labels, k)
    micro_sizes, micro_shares = _shares(placed.subsegments, micro.n_micro_)
    try:
        rv = float(hdb.relative_validity_)
    except Exception:  # pragma: no cover - no tree / no clusters
        rv = None
    explained = getattr(reducer, "explained_variance_ratio_", None)
    outlier_share = float(placed.is_outlier.mean())
    largest = max(shares.values()) if shares else None
    if largest is not None and largest > float(params["max_segment_share"]):
        warnings.warn(f"the largest broad segment holds {largest:.0%} of customers (more than max_segment_share="
                      f"{params['max_segment_share']}): the representation may not separate customers well",
                      stacklevel=3)
    mcs, ms, method = chosen
    return {
        "n_customers": len(placed.labels), "n_fit_sample": int(n_fit), "embedding_dim": int(embedding_dim),
        "n_clusters": k, "n_subsegments": micro.n_micro_,
        "coverage": _r(1 - outlier_share), "outlier_share": _r(outlier_share),
        "core_share": _r(float(placed.is_core.mean())),
        "outlier_threshold": _r(outlier_threshold),
        "cluster_sizes": sizes, "cluster_shares": shares, "largest_share": largest,
        "subsegment_sizes": micro_sizes, "subsegment_shares": micro_shares,
        "subsegment_parent": {str(m): int(b) for m, b in enumerate(micro.parent_)},
        "mean_membership_strength": _r(float(placed.membership_strength[~placed.is_outlier].mean())),
        "broad": {
            "space": "outcomes" if outcome_space is not None else "representation",
            "outcome_columns": None if outcome_space is None else list(outcome_space.columns),
            "requested": list(broad.n_segments), "status": broad.status_,
            "stability": broad.stability_, "merged_unstable": broad.merged_,
            "selection": _records(broad.selection_),
        },
        "dense": {
            "n_groups": n_dense,
            "outside_cores_fit_sample": _r(float((raw_labels == NOISE).mean())),
            "relative_validity": None if rv is None or not np.isfinite(rv) else _r(rv),
            "silhouette": None if silhouette is None else _r(silhouette),
            "chosen": {"min_cluster_size": mcs, "min_samples": ms, "cluster_selection_method": method,
                       "auto": params["min_cluster_size"] is None or params["min_samples"] is None},
            "selection": selection, "stability": stability or {}, "sweep": _records(sweep),
        },
        "duplicate_share_fit_sample": _r(dup_share),
        "reducer": params["reducer"] if isinstance(params["reducer"], str) else type(params["reducer"]).__name__,
        "n_components": int(getattr(reducer, "n_components_", getattr(reducer, "n_components", embedding_dim))
                            if params["reducer"] != "none" else embedding_dim),
        "explained_variance": None if explained is None else _r(float(np.sum(explained))),
        "params": _json_params(params),
        "seconds": {k2: round(v, 3) for k2, v in timings.items()},
        "eventseg_version": __version__,
    }


def _records(table) -> list[dict]:
    """Rows of a table as strict JSON (no NaN)."""
    return [{k: (None if isinstance(v, float) and not np.isfinite(v) else (v.item() if isinstance(v, np.generic) else v))
             for k, v in r.items()} for r in table.to_dict(orient="records")]


def _json_params(params: dict[str, Any]) -> dict:
    return {k: (v if v is None or isinstance(v, (str, int, float, bool, dict)) else
                list(v) if isinstance(v, (tuple, list)) else type(v).__name__)
            for k, v in params.items()}
