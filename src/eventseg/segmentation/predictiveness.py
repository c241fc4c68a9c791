"""How predictive is a segmentation? η² of held-out outcomes, against the analyst's recipe and the limit.

η² (eta squared) is the share of an outcome's variance that group membership explains:
between-group sum of squares / total sum of squares. A segmentation that is only descriptive
scores near 0; one that sorts customers by what they will do scores high. η² grows with the
number of groups, so every comparison here uses the same number of groups:

- eventseg: the run's broad segments (outliers, id -1, excluded from every η²);
- rfm_kmeans: what an analyst would do without us, k-means on standardised log recency,
  frequency, average order value and tenure, fitted on other customers;
- limit: quantile tiers of the best propensity score for that outcome, i.e. roughly the most
  that k groups built from what we can predict could explain.

Differences come with a paired bootstrap interval (the same resampled customers for every
segmentation), so "beats RFM" means more than the noise of one held-out sample.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from eventseg.data.encoders import signed_log1p
from eventseg.propensity.metrics import percentile_interval, verdict_number
from eventseg.run.columns import prediction_column, probability_column

RFM_COLUMNS = ("recency", "frequency", "monetary", "tenure")
# |difference| below this is float rounding (e.g. the same partition under other labels), not a gain
_TIE = 1e-9


def _as_float(y) -> np.ndarray:
    """Outcome values as float64, missing (None, pd.NA) as NaN."""
    if isinstance(y, (pd.Series, pd.Index)):
        return y.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.asarray(y, dtype=np.float64).ravel()


def _codes(groups) -> np.ndarray:
    """Any hashable labels -> 0..G-1 (a missing label is a group of its own, not dropped)."""
    codes, _ = pd.factorize(pd.Series(np.asarray(groups, dtype=object).ravel()), use_na_sentinel=False)
    return codes.astype(np.int64)


def _check_lengths(groups, y) -> tuple[np.ndarray, np.ndarray]:
    y = _as_float(y)
    g = np.asarray(groups, dtype=object).ravel() if not isinstance(groups, np.ndarray) else groups.ravel()
    if len(g) != len(y):
        raise ValueError(f"groups and y must describe the same rows: got {len(g)} group labels and {len(y)} outcome values")
    if len(y) == 0:
        raise ValueError("eta_squared needs at least one row; got empty groups and y")
    return g, y


def eta_squared(groups, y) -> float:
    """Between-group sum of squares / total sum of squares of `y` (rows with non-finite y dropped).

    0.0 when y is constant (nothing to explain). Raises ValueError on a length mismatch, on empty
    input, or when no row has a finite y.
    """
    g, y = _check_lengths(groups, y)
    keep = np.isfinite(y)
    if not keep.any():
        raise ValueError(f"eta_squared: none of the {len(y)} outcome values is finite")
    codes, y = _codes(g[keep]), y[keep]
    y = y - y.mean()  # η² is shift-invariant; centring keeps the sums of squares accurate
    total = float(np.dot(y, y))
    if total <= 0.0 or np.ptp(y) == 0 or codes.max() == 0:  # constant y, or one group: nothing explained
        return 0.0
    n_g = np.bincount(codes)
    s_g = np.bincount(codes, weights=y)
    between = float((s_g[n_g > 0] ** 2 / n_g[n_g > 0]).sum())  # sum n_g * mean_g^2 (overall mean is 0)
    return float(min(max(between / total, 0.0), 1.0))


def _bootstrap_eta2(codes: Mapping[str, np.ndarray], y: np.ndarray, n_boot: int, seed: int,
                    chunk_cells: int = 4_000_000) -> dict[str, np.ndarray]:
    """η² of every segmentation on each of `n_boot` resamples of the rows, the same resamples for all.

    The resamples depend only on (len(y), n_boot, seed). Vectorised per chunk: each resample's
    row indices are offset by resample * G, so one bincount gives every resample's group sums.
    """
    n = len(y)
    y = y - y.mean()
    rng = np.random.default_rng(seed)
    step = max(1, chunk_cells // max(n, 1))
    out = {name: np.empty(n_boot) for name in codes}
    for lo in range(0, n_boot, step):
        b = min(step, n_boot - lo)
        idx = rng.integers(0, n, size=(b, n))
        yb = y[idx]
        cnt = np.full(b, float(n))
        s = yb.sum(axis=1)
        total = (yb * yb).sum(axis=1) - s * s / cnt
        scale = (yb * yb).sum(axis=1)
        constant = total <= 1e-12 * np.maximum(scale, 1e-300)
        for name, c in codes.items():
            G = int(c.max()) + 1
            cells = (c[idx] + G * np.arange(b)[:, None]).ravel()
            n_g = np.bincount(cells, minlength=b * G).reshape(b, G).astype(np.float64)
            s_g = np.bincount(cells, weights=yb.ravel(), minlength=b * G).reshape(b, G)
            with np.errstate(invalid="ignore", divide="ignore"):
                between = np.where(n_g > 0, s_g * s_g / n_g, 0.0).sum(axis=1) - s * s / cnt
                eta = np.where(constant, 0.0, between / np.where(constant, 1.0, total))
            out[name][lo : lo + b] = np.clip(eta, 0.0, 1.0)
    return out


def _verdict(reference: str, diff: float, lo: float | None, hi: float | None) -> str:
    if lo is None or hi is None:
        return f"not comparable with {reference}: no bootstrap interval"
    text = f"({verdict_number(diff, True)} [{verdict_number(lo, True)}, {verdict_number(hi, True)}])"
    if lo > _TIE:
        return f"explains more than {reference} {text}"
    if hi < -_TIE:
        return f"explains less than {reference} {text}"
    return f"within noise of {reference} {text}"


def compare_segmentations(y, groups: Mapping[str, Any], reference: str, n_boot: int = 1000, seed: int = 0,
                          level: float = 0.95) -> dict:
    """η² of each segmentation of the same rows, and each one against `reference`.

    Rows with non-finite y are dropped for all segmentations alike; every group label counts
    (drop outliers before calling). Returns {"n", "reference", "n_boot", "level", "eta2": {name:
    η²}, "vs_reference": {name: {"ratio", "diff": {"estimate", "lo", "hi"}, "verdict"}}} for
    every name but the reference; ratio is None when the reference explains nothing.
    """
    if reference not in groups:
        raise ValueError(f"reference {reference!r} is not among the segmentations {sorted(groups)}")
    y = _as_float(y)
    checked = {name: _check_lengths(g, y)[0] for name, g in groups.items()}
    keep = np.isfinite(y)
    if not keep.any():
        raise ValueError(f"compare_segmentations: none of the {len(y)} outcome values is finite")
    y = y[keep]
    codes = {name: _codes(g[keep]) for name, g in checked.items()}
    eta = {name: eta_squared(c, y) for name, c in codes.items()}
    boots = _bootstrap_eta2(codes, y, n_boot, seed)
    vs = {}
    for name in groups:
        if name == reference:
            continue
        diff = eta[name] - eta[reference]
        lo, hi = percentile_interval(boots[name] - boots[reference], level)
        if abs(diff) < _TIE:
            diff = 0.0
        vs[name] = {
            "ratio": eta[name] / eta[reference] if eta[reference] > 0 else None,
            "diff": {"estimate": float(diff), "lo": lo, "hi": hi},
            "verdict": _verdict(reference, diff, lo, hi),
        }
    return {"n": int(len(y)), "reference": reference, "n_boot": int(n_boot), "level": level,
            "eta2": {k: float(v) for k, v in eta.items()}, "vs_reference": vs}


# --- the two comparison segmentations ----------------------------------------------------------


def _rfm_design(rfm: pd.DataFrame, with_aov: bool) -> np.ndarray:
    """log1p recency, frequency, average order value (monetary / max(frequency, 1)), tenure."""
    missing = [c for c in RFM_COLUMNS if c not in rfm.columns and (with_aov or c != "monetary")]
    if missing:
        raise ValueError(f"RFM table lacks column(s) {missing}; build it with eventseg.features.aggregates.rfm_from_aggregates")
    col = {c: pd.to_numeric(rfm[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
           for c in RFM_COLUMNS if c in rfm.columns}
    cols = [col["recency"], col["frequency"]]
    if with_aov:
        cols.append(col["monetary"] / np.maximum(col["frequency"], 1.0))
    cols.append(col["tenure"])
    return signed_log1p(np.column_stack(cols))  # signed: a net-refund customer stays finite


class RFMKMeans(BaseEstimator):
    """The analyst's recipe as a fitted object: k-means on standardised log R, F, AOV, tenure.

    Fitted once and applied to other customers (a held-out set, or later as-of dates when
    monitoring), as our segments are. Without an amount (monetary all zero, missing, or no
    such column on the fit set) AOV carries no information and is left out. Missing values
    take the fit set's median (k-means cannot place a NaN).
    """

    def __init__(self, k: int = 5, seed: int = 0):
        self.k = k
        self.seed = seed

    def fit(self, rfm: pd.DataFrame, y=None) -> "RFMKMeans":
        from sklearn.cluster import KMeans
        from sklearn.preprocessing import StandardScaler

        k = int(self.k)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if len(rfm) < k:
            raise ValueError(f"cannot fit {k} k-means groups on {len(rfm)} customers")
        money = pd.to_numeric(rfm["monetary"], errors="coerce") if "monetary" in rfm else pd.Series(dtype=float)
        self.with_aov_ = bool(money.fillna(0.0).ne(0.0).any())
        x = _rfm_design(rfm, self.with_aov_)
        med = np.nanmedian(np.where(np.isfinite(x), x, np.nan), axis=0)
        self.medians_ = np.where(np.isfinite(med), med, 0.0)
        x = np.where(np.isfinite(x), x, self.medians_)
        self.scaler_ = StandardScaler().fit(x)
        self.kmeans_ = KMeans(n_clusters=k, n_init=10, random_state=self.seed).fit(self.scaler_.transform(x))
        return self

    def predict(self, rfm: pd.DataFrame, previous=None, stickiness: float = 0.0) -> np.ndarray:
        """Nearest group; with `previous` groups the same hysteresis as our segments get when
        monitored (`eventseg.segmentation.clusterer.broad.nearest_keeping_previous`), so churn compares fairly."""
        if len(rfm) == 0:
            return np.empty(0, np.int64)
        x = _rfm_design(rfm, self.with_aov_)
        x = self.scaler_.transform(np.where(np.isfinite(x), x, self.medians_))
        if previous is None or stickiness <= 0:
            return self.kmeans_.predict(x).astype(np.int64)
        from eventseg.segmentation.clusterer.broad import nearest_keeping_previous

        return nearest_keeping_previous(self.kmeans_.transform(x), previous, stickiness).astype(np.int64)


def rfm_kmeans_groups(rfm_fit: pd.DataFrame, rfm_eval: pd.DataFrame, k: int, seed: int = 0) -> np.ndarray:
    """Groups of `rfm_eval` from `RFMKMeans` fitted on `rfm_fit` (other customers than it is measured on)."""
    return RFMKMeans(k, seed).fit(rfm_fit).predict(rfm_eval)


def propensity_tiers(p_fit, p_eval, k: int) -> np.ndarray:
    """Tier 0..k-1 of each `p_eval`, cut at the k-quantiles of `p_fit` (low score, low tier).

    Cut points come from the fit customers so a shifted eval set lands in other tiers instead of
    being re-spread. Tied quantiles merge (never more than k tiers; a score equal to a cut point
    goes to the lower tier). Non-finite fit scores are ignored; a non-finite eval score gets -1.
    """
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    p_fit, p_eval = _as_float(p_fit), _as_float(p_eval)
    p_fit = p_fit[np.isfinite(p_fit)]
    if len(p_fit) == 0:
        raise ValueError("propensity_tiers: no finite fit score to cut at")
    cuts = np.unique(np.quantile(p_fit, np.arange(1, k) / k)) if k > 1 else np.empty(0)
    tiers = np.searchsorted(cuts, p_eval, side="left").astype(np.int64)
    tiers[~np.isfinite(p_eval)] = -1
    return tiers


# --- the report ----------------------------------------------------------------------------------


def _plain(x) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _propensity_column(propensity: pd.DataFrame | None, label: str) -> str | None:
    if propensity is None:
        return None
    for col in (probability_column(label), prediction_column(label)):
        if col in propensity.columns:
            return col
    return None


def segment_predictiveness(segments: pd.Series, outcomes: pd.DataFrame, rfm: pd.DataFrame, fit_ids, eval_ids,
                           propensity: pd.DataFrame | None = None, seed: int = 0, n_boot: int = 1000) -> dict:
    """Per outcome: η² of our broad segments, of RFM k-means and of propensity tiers on held-out customers.

    RFM k-means and the tier cut points are fitted on `fit_ids` with k = the number of broad
    segments; everything is measured on `eval_ids` that have a segment, an RFM row and an
    outcome, minus outliers (segment -1), so all methods score the same customers. Returns
    {outcome column: {"kind", "n_eval", "n_groups", "n_outliers_excluded", "eta2": {"eventseg",
    "rfm_kmeans", "limit"}, "limit_source", "ratio_vs_rfm", "diff_vs_rfm": {"estimate", "lo",
    "hi"}, "verdict"}}; JSON-ready: plain floats and None for anything undefined.
    """
    segments = pd.Series(segments)
    broad = segments[segments != -1]
    k = int(broad.nunique())
    fit_ids, eval_ids = pd.Index(fit_ids), pd.Index(eval_ids)
    if k < 1:
        raise ValueError("segment_predictiveness: every customer is an outlier (-1); there are no segments to measure")
    overlap = fit_ids.intersection(eval_ids)
    if len(overlap):
        raise ValueError(f"fit and eval customers must differ; {len(overlap)} are in both (e.g. {list(overlap[:3])})")

    base = eval_ids.intersection(segments.index).intersection(outcomes.index).intersection(rfm.index)
    n_outliers = int((segments.reindex(base) == -1).sum())
    ids = base[(segments.reindex(base) != -1).to_numpy()]  # the guard: outliers never enter any η²
    fit_rfm = rfm.loc[fit_ids.intersection(rfm.index)]
    rfm_groups = (pd.Series(rfm_kmeans_groups(fit_rfm, rfm.loc[ids], k, seed), index=ids) if len(ids)
                  else pd.Series(dtype=np.int64))
    ours = segments.reindex(ids).to_numpy()

    result: dict[str, Any] = {}
    for label in outcomes.columns:
        y = _as_float(outcomes[label].reindex(ids))
        finite = np.isfinite(y)
        values = np.unique(y[finite])
        entry: dict[str, Any] = {
            "kind": "binary" if len(values) and np.isin(values, (0.0, 1.0)).all() else "numeric",
            "n_eval": int(finite.sum()), "n_groups": k, "n_outliers_excluded": n_outliers,
            "eta2": {"eventseg": None, "rfm_kmeans": None, "limit": None}, "limit_source": None,
            "ratio_vs_rfm": None, "diff_vs_rfm": {"estimate": None, "lo": None, "hi": None},
        }
        if not finite.any():
            entry["verdict"] = "not measured: no eval customer has this outcome"
            result[label] = entry
            continue
        groups = {"eventseg": ours, "rfm_kmeans": rfm_groups.to_numpy()}
        col = _propensity_column(propensity, label)
        if col is not None:
            p_fit = propensity[col].reindex(fit_ids).dropna()
            p_eval = _as_float(propensity[col].reindex(ids))
            if len(p_fit) and np.isfinite(p_eval[finite]).all():
                groups["limit"] = propensity_tiers(p_fit, p_eval, k)
                entry["limit_source"] = col
            else:
                entry["limit_source"] = None
                entry["limit_note"] = f"{col} is missing for some eval customers or for every fit customer"
        cmp = compare_segmentations(y, groups, reference="rfm_kmeans", n_boot=n_boot, seed=seed)
        entry["eta2"].update({name: _plain(v) for name, v in cmp["eta2"].items()})
        ours_vs = cmp["vs_reference"]["eventseg"]
        entry["ratio_vs_rfm"] = _plain(ours_vs["ratio"])
        entry["diff_vs_rfm"] = {key: _plain(v) for key, v in ours_vs["diff"].items()}
        entry["verdict"] = ours_vs["verdict"]
        result[label] = entry
    return result
