"""Points placed into a fitted HDBSCAN's dense groups (hdbscan.approximate_predict and
approximate_predict_scores, vectorised over points); points outside every dense core joined to
the group of their nearest core point; the result type; and the resolution floor that keeps
HDBSCAN's densities finite on (near-)duplicate points."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from eventseg.data.schema import OUTPUT_ID

NOISE = -1


class DenseGroupPlacer:
    """Arrays derived once from a fitted HDBSCAN's condensed tree and prediction data, so that
    labels, membership strengths and GLOSH outlier scores of new points are computed for a
    whole chunk at once. Matches hdbscan.approximate_predict / approximate_predict_scores.
    n_jobs threads share the neighbour queries; below 1, one per CPU (as scikit-learn's n_jobs=-1)."""

    def __init__(self, hdb, n_jobs: int = 1):
        pdata = hdb.prediction_data_
        raw = hdb.condensed_tree_._raw_tree
        self.tree = pdata.tree
        self.core = np.asarray(pdata.core_distances, dtype=np.float64)
        self.min_samples = int(hdb.min_samples or hdb.min_cluster_size)
        self.n_fit = n = pdata.raw_data.shape[0]
        self.dim = pdata.raw_data.shape[1]
        self.n_jobs = int(n_jobs) if int(n_jobs) >= 1 else (os.cpu_count() or 1)
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
        # nearest-core placement: the fit-sample points inside a dense group
        from sklearn.neighbors import KDTree

        core = np.flatnonzero(hdb.labels_ >= 0)
        self.core_labels = hdb.labels_[core].astype(np.int64)
        self.core_distance = self.core[core]
        self.core_tree = KDTree(np.asarray(pdata.raw_data)[core]) if len(core) else None

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

    def nearest_core(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(hdbscan label of the nearest core point, strength) for points outside every dense core.

        Strength is the core point's own core distance over the distance to it, capped at 1: a point
        as close to the group as the group's members are to each other belongs fully; one ten
        times further away, 0.1. Everyone gets a group; how firmly is in the strength."""
        m = len(Z)
        if m == 0 or self.core_tree is None:
            return np.full(m, NOISE, np.int64), np.zeros(m)
        dist, idx = self.core_tree.query(np.ascontiguousarray(Z, dtype=np.float64), k=1)
        dist, idx = dist[:, 0], idx[:, 0]
        reach = self.core_distance[idx]
        with np.errstate(divide="ignore", invalid="ignore"):
            strength = np.where(dist > 0, np.minimum(1.0, reach / np.where(dist > 0, dist, 1.0)), 1.0)
        return self.core_labels[idx], strength


@dataclass
class ClusterPrediction:
    """Where a set of customers sit in the hierarchy: broad segment (`labels`, −1 = outlier),
    micro-segment (`subsegments`, −1 = outlier), how firmly (`membership_strength`), whether in
    a dense core (`is_core`), and the GLOSH outlier score. `membership` (optional): soft
    membership in the dense groups, [n, n_dense]."""

    labels: np.ndarray
    subsegments: np.ndarray
    membership_strength: np.ndarray
    is_core: np.ndarray
    outlier_score: np.ndarray
    membership: np.ndarray | None = None

    @property
    def is_outlier(self) -> np.ndarray:
        return self.labels == NOISE

    def to_frame(self, ids=None, id_col: str = OUTPUT_ID) -> pd.DataFrame:
        n = len(self.labels)
        df = pd.DataFrame({
            id_col: np.arange(n) if ids is None else np.asarray(ids),
            "cluster": self.labels.astype(np.int32),
            "subsegment": self.subsegments.astype(np.int32),
            "membership_strength": self.membership_strength.astype(np.float32),
            "is_core": self.is_core.astype(bool),
            "outlier_score": self.outlier_score.astype(np.float32),
            "is_outlier": self.is_outlier,
        })
        if self.membership is not None:
            for j in range(self.membership.shape[1]):
                df[f"membership_{j}"] = self.membership[:, j].astype(np.float32)
        return df

    @classmethod
    def concat(cls, parts: list["ClusterPrediction"]) -> "ClusterPrediction":
        if not parts:
            empty_i, empty_f = np.empty(0, np.int32), np.empty(0, np.float32)
            return cls(empty_i, empty_i, empty_f, np.empty(0, bool), empty_f)
        return cls(*(np.concatenate([getattr(p, f) for p in parts])
                     for f in ("labels", "subsegments", "membership_strength", "is_core", "outlier_score")))


RESOLUTION = 1e-3  # relative to the data scale; distances below this carry no meaning


def resolution_floor(Z: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
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
