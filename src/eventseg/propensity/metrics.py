"""Scores against outcomes: ranking (ROC-AUC, PR-AUC, top-decile lift), probability quality
(Brier, expected calibration error), regression error (MAE, RMSE, R²), and a paired bootstrap
of ROC-AUC differences (every candidate scored on the same resamples of the same customers),
and the form verdict sentences print them in.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """Sum over equal-width score bins of (bin share) * |observed rate - mean score|."""
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    b = np.minimum((p * n_bins).astype(np.int64), n_bins - 1)
    gap = np.abs(np.bincount(b, weights=y, minlength=n_bins) - np.bincount(b, weights=p, minlength=n_bins))
    return float(gap.sum() / len(y))  # sum_b n_b/N * |sum_y/n_b - sum_p/n_b|


def top_decile_lift(y: np.ndarray, p: np.ndarray) -> float:
    """Positive rate among the top 10% by score over the overall positive rate.

    Ties at the decile boundary count at their average rate (what a random tie-break gives
    on average), so a constant score has lift exactly 1 whatever the row order.
    """
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    k = max(1, int(np.ceil(0.1 * len(y))))
    threshold = np.sort(p)[::-1][k - 1]
    above, tied = p > threshold, p == threshold
    positives = y[above].sum() + (k - above.sum()) * y[tied].mean()
    return float((positives / k) / y.mean())


def classification_metrics(y, p, n_bins: int = 10) -> dict:
    """ROC-AUC, PR-AUC (average precision), Brier, top-decile lift, ECE, n and positives.

    With one class only, the ranking metrics (AUC, PR-AUC, lift) are undefined: they are
    None and `reason` says why; Brier and ECE are still computed.
    """
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    if len(y) == 0:
        return {"n": 0, "positives": 0, "roc_auc": None, "pr_auc": None, "brier": None,
                "top_decile_lift": None, "ece": None, "reason": "no labelled rows"}  # fmt: skip
    positives = int(y.sum())
    out = {
        "n": int(len(y)),
        "positives": positives,
        "base_rate": positives / len(y),
        "brier": float(np.mean((p - y) ** 2)),
        "ece": expected_calibration_error(y, p, n_bins),
    }
    if positives in (0, len(y)):
        which = "all 1" if positives else "all 0"
        reason = f"only one class ({which}) among {len(y)} rows: ranking metrics undefined"
        out.update(roc_auc=None, pr_auc=None, top_decile_lift=None, reason=reason)
    else:
        out.update(
            roc_auc=float(roc_auc_score(y, p)),
            pr_auc=float(average_precision_score(y, p)),
            top_decile_lift=top_decile_lift(y, p),
        )
    return out


def regression_metrics(y, pred) -> dict:
    """MAE, RMSE and R² (1 - SSE / SST; None when the target is constant)."""
    y, pred = np.asarray(y, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    if len(y) == 0:
        return {"n": 0, "mae": None, "rmse": None, "r2": None, "reason": "no labelled rows"}
    sst = float(((y - y.mean()) ** 2).sum())
    sse = float(((y - pred) ** 2).sum())
    return {
        "n": int(len(y)),
        "mean": float(y.mean()),
        "mae": float(np.abs(y - pred).mean()),
        "rmse": float(np.sqrt(sse / len(y))),
        "r2": 1.0 - sse / sst if sst > 0 else None,
    }


# --- bootstrap -------------------------------------------------------------------------------


class _SortedScores:
    """Scores sorted once, ties grouped: AUC of any row weighting is then a few array ops."""

    def __init__(self, y, p):
        y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
        if y.shape != p.shape or y.ndim != 1:
            raise ValueError(f"labels and scores must be 1-D and of equal length, got {y.shape} and {p.shape}")
        order = np.argsort(p, kind="stable")
        self.n = len(y)
        self.ys = y[order]
        self.starts = np.flatnonzero(np.r_[True, p[order][1:] != p[order][:-1]])  # one group per distinct score
        self.rank = np.empty(self.n, dtype=np.int64)
        self.rank[order] = np.arange(self.n)

    def auc(self, w: np.ndarray) -> np.ndarray:
        """Weighted Mann-Whitney AUC per row of `w` [b, n] (weights in sorted order); ties count 1/2."""
        pos = np.add.reduceat(w * self.ys, self.starts, axis=1)
        neg = np.add.reduceat(w * (1.0 - self.ys), self.starts, axis=1)
        below = np.cumsum(neg, axis=1) - neg  # negatives with a strictly lower score
        pairs = pos.sum(axis=1) * neg.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(pairs > 0, (pos * (below + 0.5 * neg)).sum(axis=1) / pairs, np.nan)


def roc_auc(y, p) -> float:
    """ROC-AUC of the full sample by the bootstrap's own count (NaN with one class)."""
    s = _SortedScores(y, p)
    return float(s.auc(np.ones((1, s.n)))[0])


def bootstrap_aucs(y, p, n_boot: int = 1000, seed: int = 0, chunk_cells: int = 4_000_000) -> np.ndarray:
    """ROC-AUC on each of `n_boot` resamples of the rows (NaN where a resample has one class).

    The resamples depend only on (len(y), n_boot, seed), so two score vectors for the same
    labels get the same resamples and differences between them are paired. Vectorised: a
    resample is a row of multiplicities, in chunks of at most `chunk_cells` numbers.
    """
    s = _SortedScores(y, p)
    rng = np.random.default_rng(seed)
    step = max(1, chunk_cells // max(s.n, 1))
    out = np.empty(n_boot)
    for lo in range(0, n_boot, step):
        b = min(step, n_boot - lo)
        cells = (s.rank[rng.integers(0, s.n, size=(b, s.n))] + s.n * np.arange(b)[:, None]).ravel()
        out[lo : lo + b] = s.auc(np.bincount(cells, minlength=b * s.n).reshape(b, s.n).astype(np.float64))
    return out


def percentile_interval(samples, level: float = 0.95) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval, ignoring NaN resamples (None when all are NaN)."""
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples[~np.isnan(samples)]
    if len(samples) == 0:
        return None, None
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(samples, [tail, 100 - tail])
    return float(lo), float(hi)


def verdict_number(x: float, sign: bool = False) -> str:
    """A score or difference as verdict sentences print it: 0.0123 -> '+0.012' (sign) or '0.012';
    negatives with a true minus sign."""
    return (f"{x:+.3f}" if sign else f"{x:.3f}").replace("-", "\u2212")


def paired_auc_differences(y, scores: Mapping[str, np.ndarray], reference: str, n_boot: int = 1000,
                           seed: int = 0, level: float = 0.95) -> dict[str, dict]:
    """Each score's ROC-AUC minus the reference's, with a paired percentile bootstrap interval.

    Every score is evaluated on the same `n_boot` resamples of the rows (`seed`), so the
    interval is of the difference itself, not of two independent AUCs. {name: {"difference",
    "ci_low", "ci_high", "n_boot", "level"}}; the reference's own entry is 0 [0, 0].
    """
    y = np.asarray(y, dtype=np.float64)
    full = {name: roc_auc(y, p) for name, p in scores.items()}
    boots = {name: bootstrap_aucs(y, p, n_boot, seed) for name, p in scores.items()}
    out = {}
    for name in scores:
        lo, hi = percentile_interval(boots[name] - boots[reference], level)
        diff = full[name] - full[reference]
        out[name] = {"difference": None if np.isnan(diff) else float(diff), "ci_low": lo, "ci_high": hi,
                     "n_boot": int(n_boot), "level": level}
    return out
