"""Automatic choice of min_cluster_size / min_samples (and, for a requested range of segment
counts, the selection method): a small sweep over the fit sample, scored by relative validity,
with a noise ceiling and a minimum segment size. The sweep table is written as SWEEP_FILE."""

from __future__ import annotations

import logging
import math
import time
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from eventseg.cluster.inputs import ClusterInputError
from eventseg.cluster.placement import NOISE

if TYPE_CHECKING:
    from eventseg.cluster.estimator import SegmentClusterer

log = logging.getLogger(__name__)

SELECTION_METHODS = ("eom", "leaf")
DEFAULT_SWEEP_SHARES = (0.005, 0.01, 0.02, 0.04)
DEFAULT_SWEEP_MIN_SAMPLES = (10, 25)
SWEEP_FILE = "cluster_sweep.csv"


def _grid(sc: SegmentClusterer, n_fit: int) -> tuple[list[int], list[int]]:
    floor = sc.min_segment_customers(n_fit)
    if sc.min_cluster_size is not None:
        v = float(sc.min_cluster_size)
        mcs_grid = [max(2, math.ceil(v * n_fit)) if v < 1 else int(v)]
        if mcs_grid[0] > n_fit // 2:
            raise ClusterInputError(
                f"min_cluster_size={sc.min_cluster_size} ({mcs_grid[0]} customers) is more than half of the "
                f"{n_fit} customers in the fit sample: at most one segment could be found")
    else:
        mcs_grid = sorted({max(floor, math.ceil(s * n_fit)) for s in sc.sweep_min_cluster_size_shares})
        mcs_grid = [m for m in mcs_grid if m <= n_fit // 2] or [floor]
    ms_grid = [int(sc.min_samples)] if sc.min_samples is not None else sorted(set(sc.sweep_min_samples))
    ms_grid = sorted({max(1, min(m, n_fit - 1)) for m in ms_grid})
    return mcs_grid, ms_grid


def _choose_params(sc: SegmentClusterer, Z: np.ndarray, memory):
    import hdbscan

    n_fit = len(Z)
    mcs_grid, ms_grid = _grid(sc, n_fit)
    floor = sc.min_segment_customers(n_fit)
    rows = []

    def run(methods, mcs_values):
        for ms in ms_grid:
            for method in methods:
                for mcs in mcs_values:
                    t = time.perf_counter()
                    with warnings.catch_warnings():
                        warnings.filterwarnings("ignore", category=RuntimeWarning, module="hdbscan")
                        h = hdbscan.HDBSCAN(min_cluster_size=mcs, min_samples=ms, cluster_selection_method=method,
                                            gen_min_span_tree=True, core_dist_n_jobs=1, memory=memory).fit(Z)
                    lab = h.labels_
                    sizes = np.bincount(lab[lab >= 0]) if (lab >= 0).any() else np.zeros(0, int)
                    k = int(len(sizes))
                    rv = float(h.relative_validity_) if k >= 1 else float("nan")
                    rows.append({
                        "min_cluster_size": mcs, "min_samples": ms, "cluster_selection_method": method,
                        "n_clusters": k, "noise_share": float((lab == NOISE).mean()),
                        "smallest_size": int(sizes.min()) if k else 0,
                        "smallest_share": float(sizes.min() / n_fit) if k else 0.0,
                        "largest_share": float(sizes.max() / n_fit) if k else 0.0,
                        "relative_validity": rv, "seconds": round(time.perf_counter() - t, 3),
                    })

    def unmet() -> bool:
        table = pd.DataFrame(rows)
        return not (_in_range(sc, table) & _acceptable(sc, table, floor)).any()

    method = sc.cluster_selection_method
    run([method], mcs_grid)
    if sc.n_segments and sc.min_cluster_size is None and unmet():
        # fewer, larger segments wanted: larger min_cluster_size (the trees are cached, so this is cheap)
        lo = sc.n_segments[0]
        bigger, m = [], max(mcs_grid) * 2
        while m <= n_fit // max(lo, 2):
            bigger.append(m)
            m *= 2
        if bigger:
            log.info("no swept setting gives %s segments: trying min_cluster_size %s", sc.n_segments, bigger)
            run([method], bigger)
    if sc.n_segments and unmet():
        # more, finer segments wanted: the other selection method over the same grid
        other = [m for m in SELECTION_METHODS if m != method]
        log.info("no %s setting gives %s segments: also trying %s selection", method, sc.n_segments, other)
        run(other, mcs_grid)
    table = pd.DataFrame(rows)
    table["in_range"] = _in_range(sc, table)
    table["acceptable"] = _acceptable(sc, table, floor) & table["in_range"]
    ok = table[table["acceptable"]]
    selection = {"status": "ok", "message": None, "n_segments": list(sc.n_segments) if sc.n_segments else None}
    if len(table) == 1 and sc.min_cluster_size is not None and sc.min_samples is not None:
        best = table.index[0]
        selection["status"] = "given"
    elif len(ok):
        # best relative validity (to 1e-3: the MST approximation ties often); then coverage (less
        # noise); then larger min_cluster_size and min_samples (the more robust setting)
        ranked = ok.assign(rv=ok["relative_validity"].round(3))
        best = ranked.sort_values(["rv", "noise_share", "min_cluster_size", "min_samples"],
                                  ascending=[False, True, False, False], kind="stable").index[0]
    else:
        t = table.copy()
        lo, hi = sc.n_segments or (2, 10**9)
        t["distance"] = np.maximum(lo - t["n_clusters"], 0) + np.maximum(t["n_clusters"] - hi, 0)
        t["excess_noise"] = np.maximum(t["noise_share"] - sc.max_noise_share, 0)
        t["rv"] = t["relative_validity"].fillna(-np.inf)
        best = t.sort_values(["distance", "excess_noise", "rv", "min_cluster_size"],
                             ascending=[True, True, False, False], kind="stable").index[0]
        row = table.loc[best]
        wanted = f"{lo} to {hi} segments" if sc.n_segments else "at least 2 segments"
        msg = (f"no swept setting gives {wanted} with at most {sc.max_noise_share:.0%} noise and segments of at "
               f"least {floor} customers; using the closest: min_cluster_size={int(row.min_cluster_size)}, "
               f"min_samples={int(row.min_samples)} ({int(row.n_clusters)} segments, {row.noise_share:.1%} noise). "
               f"See {SWEEP_FILE}.")
        warnings.warn(msg, stacklevel=3)
        selection.update(status="fallback", message=msg)
    table["chosen"] = table.index == best
    row = table.loc[best]
    return int(row.min_cluster_size), int(row.min_samples), str(row.cluster_selection_method), table, selection


def _in_range(sc: SegmentClusterer, table: pd.DataFrame) -> pd.Series:
    if not sc.n_segments:
        return pd.Series(True, index=table.index)
    lo, hi = sc.n_segments
    return table["n_clusters"].between(lo, hi)


def _acceptable(sc: SegmentClusterer, table: pd.DataFrame, floor: int) -> pd.Series:
    """At least 2 segments, noise within the ceiling, every segment at least `floor` customers."""
    return (table["n_clusters"] >= 2) & (table["noise_share"] <= sc.max_noise_share) & (table["smallest_size"] >= floor)
