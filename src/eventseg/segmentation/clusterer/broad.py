"""The broad level: 4–8 segments a user acts on, formed by k-means in a space where distance
means "will behave differently next": the customers' propensity scores when the run has labels
(the outcome space), else the reduced representation.

Why not merge HDBSCAN's dense groups? A merge of groups can never explain more of an outcome
than the groups themselves, and behaviourally pure groups explain less of what customers do next
than RFM k-means (synthetic: the true archetypes η² 0.106 vs RFM k-means 0.114; oracle
probability tiers 0.196). Broad segments must be predictive, so they are cut where the
prediction is; the dense groups live on below them as micro-segments (hierarchy.py).

The number of segments is chosen inside the requested range by evidence: every k is refitted on
seeded resamples and with another seed; a k is eligible when both adjusted Rand indices reach
`min_ari` and no segment holds more than `max_share`; among the eligible, the best silhouette.
A segment that does not survive resampling is merged into its nearest stable neighbour.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd

from eventseg.data.encoders import signed_log1p
from eventseg.propensity.calibration import logit
from eventseg.run.columns import ScoreColumn
from eventseg.run.errors import ConfigError
from eventseg.segmentation.clusterer.inputs import ClusterInputError

log = logging.getLogger(__name__)

LOGIT_CLIP = 1e-4


class OutcomeSpace:
    """Propensity scores as coordinates: logit of each probability (p_*), signed log of each
    predicted amount (pred_*), standardised on the fit customers so every outcome weighs the same."""

    def __init__(self, columns: list[str]):
        bad = [c for c in columns if ScoreColumn.parse(c) is None]
        if not columns or bad:
            raise ClusterInputError(f"outcome columns must be propensity scores named p_<label> or pred_<label>, "
                                    f"got {bad or columns}")
        self.columns = list(columns)

    def _raw(self, outcomes: pd.DataFrame) -> np.ndarray:
        missing = [c for c in self.columns if c not in outcomes.columns]
        if missing:
            raise ClusterInputError(f"the outcome scores lack column(s) {missing}: the clusterer was fitted with "
                                    f"{self.columns}; score customers with the same run's heads")
        parts = []
        for c in self.columns:
            v = pd.to_numeric(outcomes[c], errors="coerce").to_numpy(dtype=np.float64)
            if not np.isfinite(v).all():
                raise ClusterInputError(f"outcome column {c} has {int((~np.isfinite(v)).sum())} missing or "
                                        "non-finite value(s): every customer needs a score")
            if ScoreColumn.parse(c).binary:
                v = logit(np.clip(v, LOGIT_CLIP, 1 - LOGIT_CLIP))
            else:
                v = signed_log1p(v)
            parts.append(v)
        return np.column_stack(parts)

    def fit(self, outcomes: pd.DataFrame) -> "OutcomeSpace":
        raw = self._raw(outcomes)
        self.mean_ = raw.mean(axis=0)
        scale = raw.std(axis=0)
        self.scale_ = np.where(scale > 0, scale, 1.0)
        return self

    def transform(self, outcomes: pd.DataFrame) -> np.ndarray:
        return (self._raw(outcomes) - self.mean_) / self.scale_


def _kmeans(S: np.ndarray, k: int, seed: int):
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=4, random_state=seed).fit(S)


def _nearest(S: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Index of each row's nearest centre (chunked by scikit-learn, so 1M rows stay small)."""
    from sklearn.metrics import pairwise_distances_argmin

    return pairwise_distances_argmin(S, centers)


def check_stickiness(stickiness) -> float:
    """The sticky-placement margin as a float in [0, 1): checked where it is set, before any work."""
    value = float(stickiness)
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"stickiness must be in [0, 1) (0: place afresh at every date), got {stickiness}")
    return value


def nearest_keeping_previous(distances: np.ndarray, previous, stickiness: float) -> np.ndarray:
    """Each row's nearest group (column of `distances`), except that a row keeps its `previous`
    group (below 0: none) unless the nearest is closer by more than `stickiness` (0.25: 25%).

    Re-scoring every month moves customers who sit near a boundary back and forth on noise;
    the margin keeps them put while a customer whose behaviour really moved still crosses."""
    nearest = distances.argmin(axis=1)
    prev = np.asarray(previous, dtype=np.int64)
    rows = np.flatnonzero((prev >= 0) & (prev < distances.shape[1]))
    keep = distances[rows, prev[rows]] <= (1.0 + stickiness) * distances[rows, nearest[rows]]
    nearest[rows[keep]] = prev[rows[keep]]
    return nearest


class BroadLevel:
    """K-means broad segments with the count chosen by stability (see the module docstring).

    After fit: centers_ [k, d], merge_ (k-means cluster → final segment id, ids ordered by size),
    n_segments_, selection_ (one row per candidate k), stability_ (of the chosen k), merged_.
    """

    def __init__(self, n_segments: tuple[int, int], *, n_resamples: int = 5, resample_share: float = 0.8,
                 min_ari: float = 0.85, unstable_jaccard: float = 0.5, max_share: float = 0.5,
                 silhouette_sample_size: int = 10_000, seed: int = 0):
        self.n_segments = n_segments
        self.n_resamples = n_resamples
        self.resample_share = resample_share
        self.min_ari = min_ari
        self.unstable_jaccard = unstable_jaccard
        self.max_share = max_share
        self.silhouette_sample_size = silhouette_sample_size
        self.seed = seed

    def _evaluate(self, S: np.ndarray, k: int) -> tuple[dict, np.ndarray, np.ndarray]:
        """(row of the selection table, centres, per-cluster mean best Jaccard over resamples)."""
        from sklearn.metrics import adjusted_rand_score, silhouette_score

        n = len(S)
        main = _kmeans(S, k, self.seed)
        labels = main.labels_
        other = _nearest(S, _kmeans(S, k, self.seed + 1).cluster_centers_)
        aris, jaccard = [], np.zeros((max(self.n_resamples, 1), k))
        for r in range(self.n_resamples):
            rng = np.random.default_rng([self.seed, 7919, r])
            sub = rng.choice(n, int(round(self.resample_share * n)), replace=False)
            resampled = _nearest(S, _kmeans(S[sub], k, self.seed + 2 + r).cluster_centers_)
            aris.append(adjusted_rand_score(labels, resampled))
            cont = np.zeros((k, k), dtype=np.int64)
            np.add.at(cont, (labels, resampled), 1)
            union = cont.sum(1)[:, None] + cont.sum(0)[None, :] - cont
            jaccard[r] = (cont / np.maximum(union, 1)).max(axis=1)
        take = np.arange(n)
        if n > self.silhouette_sample_size:
            take = np.random.default_rng([self.seed, 31]).choice(n, self.silhouette_sample_size, replace=False)
        sil = float(silhouette_score(S[take], labels[take])) if len(np.unique(labels[take])) > 1 else float("nan")
        row = {"k": k, "ari_resample_mean": float(np.mean(aris)) if aris else None,
               "ari_resample_min": float(np.min(aris)) if aris else None,
               "ari_seed": float(adjusted_rand_score(labels, other)),
               "largest_share": float(np.bincount(labels, minlength=k).max() / n), "silhouette": sil}
        return row, main.cluster_centers_, jaccard

    def fit(self, S: np.ndarray) -> "BroadLevel":
        lo, hi = self.n_segments
        n = len(S)
        hi = min(hi, n // 2)
        if hi < 2:
            raise ClusterInputError(f"too few customers ({n}) for broad segments")
        candidates = list(range(min(lo, hi), hi + 1))
        rows, fitted = [], {}
        for k in candidates:
            row, centers, jaccard = self._evaluate(S, k)
            rows.append(row)
            fitted[k] = (centers, jaccard)
        table = pd.DataFrame(rows)
        stable = table["ari_seed"] >= self.min_ari
        if self.n_resamples:
            stable &= table["ari_resample_mean"] >= self.min_ari
        table["eligible"] = stable & (table["largest_share"] <= self.max_share)
        if table["eligible"].any():
            ok = table[table["eligible"]]
            best = ok.assign(s=ok["silhouette"].fillna(-1).round(3)).sort_values(["s", "k"], ascending=[False, True]).index[0]
            status = "ok"
        else:
            score = table[["ari_seed"] + (["ari_resample_mean"] if self.n_resamples else [])].min(axis=1)
            best = score.idxmax()
            status = "fallback"
            warnings.warn(
                f"no number of broad segments in {list(self.n_segments)} is stable (adjusted Rand index >= "
                f"{self.min_ari} under resampling and a seed change) with no segment above {self.max_share:.0%}; "
                f"using the most stable: {int(table.loc[best, 'k'])} (see cluster_metrics.json broad.selection)",
                stacklevel=3)
        table["chosen"] = table.index == best
        k = int(table.loc[best, "k"])
        centers, jaccard = fitted[k]
        survived = (jaccard >= self.unstable_jaccard).sum(axis=0) if self.n_resamples else np.full(k, 1)
        unstable = np.flatnonzero(survived <= self.n_resamples / 2) if self.n_resamples else np.array([], int)
        keep = np.setdiff1d(np.arange(k), unstable)
        if len(keep) < 2:  # merging would leave a single segment: keep k-means' own (the fallback warned)
            keep, unstable = np.arange(k), np.array([], int)
        target = np.arange(k)
        for c in unstable:  # into the nearest stable centre
            d = ((centers[keep] - centers[c]) ** 2).sum(1)
            target[c] = keep[d.argmin()]
        sizes = np.bincount(target[_nearest(S, centers)], minlength=k)[keep]
        order = keep[np.lexsort((keep, -sizes))]  # final ids: largest first
        final = np.full(k, -1, dtype=np.int64)
        final[order] = np.arange(len(order))
        self.centers_ = centers
        self.merge_ = final[target]
        self.n_segments_ = len(order)
        self.merged_ = [int(c) for c in unstable]
        if len(unstable):
            warnings.warn(f"{len(unstable)} broad segment(s) did not survive resampling (best Jaccard overlap < "
                          f"{self.unstable_jaccard} in most resamples) and were merged into their nearest neighbour: "
                          f"{self.n_segments_} broad segments", stacklevel=3)
        if not lo <= self.n_segments_ <= self.n_segments[1]:
            warnings.warn(f"{self.n_segments_} broad segments, outside the requested {list(self.n_segments)}",
                          stacklevel=3)
        self.selection_ = table
        self.status_ = status
        chosen = table.loc[best]
        self.stability_ = {k2: (None if v is None or (isinstance(v, float) and not np.isfinite(v)) else round(float(v), 4))
                           for k2, v in chosen.items() if k2 in ("ari_resample_mean", "ari_resample_min", "ari_seed",
                                                                 "silhouette", "largest_share")}
        return self

    def predict(self, S: np.ndarray, previous: np.ndarray | None = None, stickiness: float = 0.0) -> np.ndarray:
        """Nearest segment; with `previous` segments, see `nearest_keeping_previous`."""
        S = np.asarray(S, dtype=np.float64)
        if previous is None or stickiness <= 0:
            return self.merge_[_nearest(S, self.centers_)]
        from sklearn.metrics import pairwise_distances

        d = pairwise_distances(S, self.centers_)  # [n, k clusters]; k is small
        seg_d = np.full((len(S), int(self.merge_.max()) + 1), np.inf)
        for cluster, segment in enumerate(self.merge_):  # a merged segment is as near as its nearest cluster
            seg_d[:, segment] = np.minimum(seg_d[:, segment], d[:, cluster])
        return nearest_keeping_previous(seg_d, previous, stickiness)
