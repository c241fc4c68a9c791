"""Evidence that an audience is like its seeds, measured where it cannot be flattered.

- Held-out seeds: a seeded share of the seeds is set aside, the scorer is fitted on the rest,
  and the held-out seeds are ranked among every customer that was not a fitting seed. If the
  scorer finds "customers like these", the held-out ones rank near the top: recall at k (share
  of held-out seeds in the top k), recall in the top `top_share`, each with its lift over a
  random ranking (recall / share of candidates taken), and their median percentile rank. A
  held-out seed used to fit would count itself among its nearest seeds and rank first, which
  is why the split is made before fitting and the two sets are disjoint by construction.
- Observed outcomes: where the run has labels (outcomes observed after its cutoff), the mean
  outcome of the audience against the mean over all customers it was drawn from, which is what
  a random audience of that size gets on average.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.base import clone

from eventseg.apps.lookalike.scoring import LookalikeScorer, ranks_of


def holdout_split(n_seeds: int, holdout: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(fit, held_out) indices into the seed list: round(holdout · n) held out, at least one, and
    at least one left to fit; empty held_out when holdout is 0."""
    if holdout <= 0:
        return np.arange(n_seeds), np.arange(0)
    n_held = min(max(1, int(round(holdout * n_seeds))), n_seeds - 1)
    order = np.random.default_rng(seed).permutation(n_seeds)
    return np.sort(order[n_held:]), np.sort(order[:n_held])


def heldout_recall(matrix: np.ndarray, seed_rows: np.ndarray, scorer: LookalikeScorer, *, holdout: float, k: int,
                   top_share: float = 0.10, seed: int = 0) -> dict:
    """Fit a clone of `scorer` on the kept seeds and report how the held-out seeds rank."""
    fit, held = holdout_split(len(seed_rows), holdout, seed)
    if len(held) == 0:
        return {"held_out": 0, "note": "holdout=0: no seeds held out, no recall measured"}
    fit_rows, held_rows = seed_rows[fit], seed_rows[held]
    candidates = np.ones(len(matrix), dtype=bool)
    candidates[fit_rows] = False  # the held-out seeds compete with every customer that did not fit the scorer
    pool = np.flatnonzero(candidates)
    similarity = clone(scorer).fit(matrix[fit_rows]).score(matrix[pool])
    rank = ranks_of(similarity)[np.searchsorted(pool, held_rows)]
    n = len(pool)
    k = min(k, n)
    top = max(1, int(math.ceil(top_share * n)))
    at_k, at_top = float(np.mean(rank <= k)), float(np.mean(rank <= top))
    return {"held_out": int(len(held_rows)), "fitted_on": int(len(fit_rows)), "candidates": int(n),
            "k": int(k), "recall_at_k": round(at_k, 4), "lift_at_k": round(at_k / (k / n), 2),
            "top_share": top_share, "top_share_customers": int(top), "recall_in_top_share": round(at_top, 4),
            "lift_in_top_share": round(at_top / (top / n), 2),
            "median_percentile_rank": round(float(np.median(rank) / n * 100), 2),
            "random_recall_at_k": round(k / n, 4), "seed": seed}


def outcome_vs_random(outcomes: pd.DataFrame, audience: np.ndarray, pool: np.ndarray) -> dict:
    """Per numeric outcome column (rows aligned with the customers; NaN where unknown): the
    audience's observed mean against the mean over `pool`, the customers it was drawn from."""
    result = {}
    for col in outcomes.columns:
        values = outcomes[col].to_numpy(dtype=np.float64, na_value=np.nan)
        mine, base = values[audience], values[pool]
        mine, base = mine[~np.isnan(mine)], base[~np.isnan(base)]
        if len(mine) == 0 or len(base) == 0:
            result[col] = {"note": "no observed values among the audience or the customers it was drawn from"}
            continue
        random_mean = float(base.mean())
        result[col] = {"lookalike_mean": round(float(mine.mean()), 6), "random_mean": round(random_mean, 6),
                       "lift": round(float(mine.mean()) / random_mean, 3) if random_mean else None,
                       "lookalikes_observed": int(len(mine)), "pool_observed": int(len(base))}
    return result
