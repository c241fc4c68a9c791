"""Has the population moved? Population stability index per feature and score, and a
classifier's ROC-AUC at telling two dates' embeddings apart.

PSI bins come from the reference (the population the run was fitted on), as deciles of its
values (a bin holds values up to and including its upper edge); tied deciles merge, so a feature
with few distinct values (a share that is mostly 0,
a count) gets fewer, honest bins instead of empty ones. The usual reading: < 0.1 stable,
0.1–0.2 some shift, > 0.2 a shift worth acting on.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from eventseg.propensity.metrics import roc_auc

_EMPTY_BIN = 1e-4  # share given to an empty bin so log(0) never happens


def psi(reference, current, n_bins: int = 10) -> float | None:
    """Population stability index of `current` against `reference` (None when either has no finite value)."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    if len(ref) == 0 or len(cur) == 0:
        return None
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, n_bins + 1)[1:-1]))
    expected = np.bincount(np.searchsorted(edges, ref, side="left"), minlength=len(edges) + 1) / len(ref)
    actual = np.bincount(np.searchsorted(edges, cur, side="left"), minlength=len(edges) + 1) / len(cur)
    expected = np.maximum(expected, _EMPTY_BIN)
    actual = np.maximum(actual, _EMPTY_BIN)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def psi_table(reference: pd.DataFrame, current: pd.DataFrame, n_bins: int = 10) -> dict[str, float]:
    """PSI of every numeric column the two tables share, largest first."""
    out = {}
    for col in reference.columns:
        if col in current.columns and pd.api.types.is_numeric_dtype(reference[col]) \
                and pd.api.types.is_numeric_dtype(current[col]):
            value = psi(reference[col], current[col], n_bins)
            if value is not None:
                out[str(col)] = round(value, 4)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def embedding_drift_auc(before: np.ndarray, after: np.ndarray, *, seed: int = 0, folds: int = 3) -> float | None:
    """Cross-validated ROC-AUC of a logistic regression telling `before` rows from `after` rows.

    0.5: the two dates' embeddings are indistinguishable; near 1: the space itself moved (a new
    population, or the model reading the same histories differently). None without enough rows.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if min(len(before), len(after)) < 5 * folds:
        return None
    x = np.vstack([before, after]).astype(np.float64)
    y = np.r_[np.zeros(len(before)), np.ones(len(after))]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    p = cross_val_predict(model, x, y, cv=cv, method="predict_proba")[:, 1]
    return round(float(roc_auc(y, p)), 4)


def sample_rows(n: int, size: int, seed: int) -> np.ndarray:
    """At most `size` row positions of `n`, sorted, the same for the same seed."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
