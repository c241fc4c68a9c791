"""Automatic choice of HDBSCAN's min_cluster_size / min_samples for the dense groups (the
micro-segments' cores): a small sweep over the fit sample, scored by relative validity, with a
ceiling on the share outside every core and a minimum group size. The sweep table is written as
cluster_sweep.csv. The number of broad segments is chosen separately (broad.py)."""

from __future__ import annotations

import logging
import math
import time
import warnings

import numpy as np
import pandas as pd

from eventseg.run.layout import RunLayout
from eventseg.segmentation.clusterer.inputs import ClusterInputError
from eventseg.segmentation.clusterer.placement import NOISE

log = logging.getLogger(__name__)

SELECTION_METHODS = ("eom", "leaf")
DEFAULT_SWEEP_SHARES = (0.005, 0.01, 0.02, 0.04)
DEFAULT_SWEEP_MIN_SAMPLES = (10, 25)


def _grid(n_fit: int, floor: int, min_cluster_size, min_samples, sweep_shares,
          sweep_min_samples) -> tuple[list[int], list[int]]:
    if min_cluster_size is not None:
        v = float(min_cluster_size)
        mcs_grid = [max(2, math.ceil(v * n_fit)) if v < 1 else int(v)]
        if mcs_grid[0] > n_fit // 2:
            raise ClusterInputError(
                f"min_cluster_size={min_cluster_size} ({mcs_grid[0]} customers) is more than half of the "
                f"{n_fit} customers in the fit sample: at most one segment could be found")
    else:
        mcs_grid = sorted({max(floor, math.ceil(s * n_fit)) for s in sweep_shares})
        mcs_grid = [m for m in mcs_grid if m <= n_fit // 2] or [floor]
    ms_grid = [int(min_samples)] if min_samples is not None else sorted(set(sweep_min_samples))
    ms_grid = sorted({max(1, min(m, n_fit - 1)) for m in ms_grid})
    return mcs_grid, ms_grid


def choose_params(Z: np.ndarray, memory, *, floor: int, min_cluster_size, min_samples, sweep_shares,
                  sweep_min_samples, selection_method: str, max_noise_share):
    """(min_cluster_size, min_samples, selection method, sweep table, selection facts) for HDBSCAN
    on the reduced fit sample Z. Given min_cluster_size / min_samples (None: swept over
    sweep_shares of the customers / sweep_min_samples) are used as they are; `floor` is the
    minimum segment size in customers, `max_noise_share` the ceiling on the share outside every core."""
    import hdbscan

    n_fit = len(Z)
    mcs_grid, ms_grid = _grid(n_fit, floor, min_cluster_size, min_samples, sweep_shares, sweep_min_samples)
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

    run([selection_method], mcs_grid)
    table = pd.DataFrame(rows)
    table["acceptable"] = _acceptable(table, floor, max_noise_share)
    ok = table[table["acceptable"]]
    selection = {"status": "ok", "message": None}
    if len(table) == 1 and min_cluster_size is not None and min_samples is not None:
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
        t["distance"] = np.maximum(2 - t["n_clusters"], 0)
        t["excess_noise"] = np.maximum(t["noise_share"] - max_noise_share, 0)
        t["rv"] = t["relative_validity"].fillna(-np.inf)
        best = t.sort_values(["distance", "excess_noise", "rv", "min_cluster_size"],
                             ascending=[True, True, False, False], kind="stable").index[0]
        row = table.loc[best]
        msg = (f"no swept setting gives at least 2 dense groups with at most {max_noise_share:.0%} of customers "
               f"outside them and groups of at least {floor} customers; using the closest: min_cluster_size="
               f"{int(row.min_cluster_size)}, min_samples={int(row.min_samples)} ({int(row.n_clusters)} groups, "
               f"{row.noise_share:.1%} outside; those customers still join their nearest group). See {RunLayout.cluster_sweep}.")
        warnings.warn(msg, stacklevel=3)
        selection.update(status="fallback", message=msg)
    table["chosen"] = table.index == best
    row = table.loc[best]
    return int(row.min_cluster_size), int(row.min_samples), str(row.cluster_selection_method), table, selection


def _acceptable(table: pd.DataFrame, floor: int, max_noise_share) -> pd.Series:
    """At least 2 segments, noise within the ceiling, every segment at least `floor` customers."""
    return (table["n_clusters"] >= 2) & (table["noise_share"] <= float(max_noise_share)) & (table["smallest_size"] >= floor)
