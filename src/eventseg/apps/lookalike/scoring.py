"""LookalikeScorer: how much each customer resembles a seed set, as one cosine-like number.

    >>> scorer = LookalikeScorer(n_neighbors=10, centroid_weight=0.75).fit(X[seed_rows])
    >>> scorer.score(X)     # similarity per row, in [-1, 1]
    >>> scorer.rank(X)      # 1 = most similar

Two views of "like the seeds", combined as a weighted mean so the result stays on the cosine
scale and reads the same for any seed set:

- centroid similarity: cosine to the (normalised) mean seed direction. Robust to noisy single
  seeds, but a seed set drawn from two groups has a centroid between them that neither
  resembles;
- k-nearest-seed similarity: mean cosine to the `n_neighbors` most similar seeds (a density of
  the seeds around the customer). It follows a seed set of several groups, and every group of
  it, at the price of more noise from any one seed.

`similarity = centroid_weight · centroid + (1 − centroid_weight) · knn`, default 0.75: on the
synthetic run, 100 seeds from one archetype gave precision at 500 of 0.83 (centroid only),
0.83 (0.75) and 0.81 (0.5); 100 seeds from two archetypes 0.945, 0.949 and 0.946. Rows are
L2-normalised here; centring and whitening are the space's business (space.py). The nearest
seeds come from an index over the seeds with every scored row as a query; index.py picks exact
or approximate search by seeds × rows. A seed scored by
its own scorer counts itself among its nearest seeds; evidence.py therefore fits on some seeds
and ranks the others.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from eventseg.apps.lookalike.index import MAX_EXACT_PAIRS, build_index, check_index_kind
from eventseg.run.errors import ConfigError


def unit_rows(X) -> np.ndarray:
    """Rows scaled to length 1 (float32); an all-zero row stays zero, similar to nothing."""
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"expected a 2-D matrix [customers, dims], got shape {X.shape}")
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)


class LookalikeScorer(BaseEstimator):
    """Centroid + k-nearest-seed cosine similarity to the seeds given to `fit`.

    Parameters: n_neighbors (seeds averaged per customer; capped at the seed count),
    centroid_weight (share of the centroid term, 0 = kNN only, 1 = centroid only), index
    ('auto' | 'exact' | 'ann': how the nearest seeds are found, see index.py), nprobe (cells an
    approximate search scans), max_exact_pairs (the auto switch), seed (the index's k-means).

    After fit: seeds_ (unit rows), centroid_ (unit vector), n_seeds_, n_features_in_,
    n_neighbors_ (as used); after a score: index_kind_ ('exact' or 'ann', which search ran).
    """

    def __init__(self, *, n_neighbors: int = 10, centroid_weight: float = 0.75, index: str = "auto",
                 nprobe: int = 16, max_exact_pairs: float = MAX_EXACT_PAIRS, seed: int = 0):
        self.n_neighbors = n_neighbors
        self.centroid_weight = centroid_weight
        self.index = index
        self.nprobe = nprobe
        self.max_exact_pairs = max_exact_pairs
        self.seed = seed

    def check_params(self) -> None:
        """Refuse a bad setting with a ConfigError (called by fit, and by the API before any work)."""
        if not 0.0 <= float(self.centroid_weight) <= 1.0:
            raise ConfigError(f"centroid_weight={self.centroid_weight} must lie in [0, 1] "
                              "(0 = nearest seeds only, 1 = centroid only)")
        if int(self.n_neighbors) < 1:
            raise ConfigError(f"n_neighbors={self.n_neighbors} must be at least 1")
        check_index_kind(self.index)

    def fit(self, X_seeds, y=None) -> "LookalikeScorer":
        """Remember the seeds (unit rows) and their centroid; the neighbour index is built at score
        time, when the number of queries that decides exact vs approximate is known."""
        self.check_params()
        seeds = unit_rows(X_seeds)
        if len(seeds) == 0:
            raise ValueError("LookalikeScorer.fit needs at least one seed row")
        mean = seeds.mean(axis=0)
        norm = float(np.linalg.norm(mean))
        self.centroid_ = (mean / norm if norm > 0 else mean).astype(np.float32)
        self.seeds_ = seeds
        self.n_seeds_ = len(seeds)
        self.n_features_in_ = seeds.shape[1]
        self.n_neighbors_ = min(int(self.n_neighbors), self.n_seeds_)
        return self

    def score_components(self, X) -> dict[str, np.ndarray]:
        """{'centroid', 'knn', 'similarity'}: each term per row of X, and their combination."""
        check_is_fitted(self, "centroid_")
        X = unit_rows(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} columns; the scorer was fitted on {self.n_features_in_}")
        centroid = X @ self.centroid_
        index = build_index(self.seeds_, len(X), self.index, nprobe=self.nprobe,
                            max_exact_pairs=self.max_exact_pairs, seed=self.seed)
        self.index_kind_ = index.kind
        sims, pos = index.search(X, self.n_neighbors_)
        found = pos >= 0  # an approximate search may return fewer than k seeds for a row
        knn = np.where(found, sims, 0.0).sum(axis=1) / np.maximum(found.sum(axis=1), 1)
        w = float(self.centroid_weight)
        return {"centroid": centroid, "knn": knn.astype(np.float32),
                "similarity": (w * centroid + (1.0 - w) * knn).astype(np.float32)}

    def score(self, X) -> np.ndarray:
        """Similarity to the seeds per row of X, in [-1, 1]; higher = more alike."""
        return self.score_components(X)["similarity"]

    def rank(self, X) -> np.ndarray:
        """1-based rank of each row of X by similarity (1 = most alike; ties keep row order)."""
        return ranks_of(self.score(X))


def ranks_of(similarity: np.ndarray) -> np.ndarray:
    """1-based ranks, highest similarity first, ties in row order (a stable, reproducible order)."""
    order = np.argsort(-np.asarray(similarity), kind="stable")
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(1, len(order) + 1)
    return ranks
