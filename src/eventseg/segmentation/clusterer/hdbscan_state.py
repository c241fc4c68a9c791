"""A fitted hdbscan.HDBSCAN as JSON settings and plain arrays, and back: the arrays are checked
to fit together (hdbscan's compiled code indexes with them unchecked) before the model is
rebuilt, its prediction data regenerated from the saved core distances."""

from __future__ import annotations

import warnings

import numpy as np

from eventseg.segmentation.clusterer.inputs import ClusterConfigError, ClustererFileError
from eventseg.segmentation.clusterer.npz import float_member, int_member, json_member
from eventseg.segmentation.clusterer.placement import NOISE

# the fitted HDBSCAN as arrays: (attribute, member name, required)
_HDBSCAN_ARRAYS = (
    ("_condensed_tree", "hdbscan.condensed_tree", True),
    ("_single_linkage_tree", "hdbscan.single_linkage_tree", True),
    ("_min_spanning_tree", "hdbscan.min_spanning_tree", False),
    ("_raw_data", "hdbscan.raw_data", True),
    ("labels_", "hdbscan.labels", True),
    ("probabilities_", "hdbscan.probabilities", True),
    ("cluster_persistence_", "hdbscan.cluster_persistence", True),
    ("_outlier_scores", "hdbscan.outlier_scores", False),
    ("_prediction_data.core_distances", "hdbscan.core_distances", True),
)
_CONDENSED_FIELDS = ("parent", "child", "lambda_val", "child_size")


def hdbscan_to_arrays(hdb) -> tuple[dict, dict[str, np.ndarray]]:
    """JSON parameters and plain arrays of a fitted hdbscan.HDBSCAN (its prediction data is
    derived from these on load, exactly as fit derives it)."""
    params = {k: v for k, v in hdb.get_params().items() if k != "memory"}
    meta = {"params": params, "metric_kwargs": dict(hdb._metric_kwargs), "all_finite": bool(hdb._all_finite),
            "relative_validity": None if hdb._relative_validity is None else float(hdb._relative_validity)}
    try:
        json_member(meta, strict=True)
    except (TypeError, ValueError) as err:
        raise ClusterConfigError(f"the HDBSCAN settings cannot be saved as JSON ({err})") from None
    if not meta["all_finite"]:  # pragma: no cover - check_embeddings refuses non-finite embeddings
        raise ClusterConfigError("an HDBSCAN model fitted on non-finite data cannot be saved")
    if hdb._outlier_scores is None:
        hdb.outlier_scores_  # noqa: B018 - computes and caches them from the condensed tree
    arrays = {}
    for attr, key, required in _HDBSCAN_ARRAYS:
        value = hdb
        for part in attr.split("."):
            value = getattr(value, part, None)
        if value is None:
            if required:
                raise ClusterConfigError(f"the HDBSCAN model has no {attr}: is it fitted?")
            continue
        arrays[key] = np.asarray(value)
    return meta, arrays


def hdbscan_from_arrays(meta: dict, arrays: dict[str, np.ndarray], what: str):
    """An hdbscan.HDBSCAN in the state fit leaves it in (private attributes set from the saved
    arrays, prediction data regenerated), after checking the arrays fit together."""
    import hdbscan

    if not isinstance(meta, dict) or not isinstance(meta.get("params"), dict):
        raise ClustererFileError(f"{what} is corrupt: no HDBSCAN settings")
    params = dict(meta["params"])
    known = set(hdbscan.HDBSCAN().get_params()) - {"memory"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ClustererFileError(f"{what} has HDBSCAN settings {unknown} that this hdbscan does not know; re-run cluster")
    metric_kwargs = meta.get("metric_kwargs") or {}
    if not isinstance(metric_kwargs, dict) or not all(
            isinstance(v, (int, float, str, bool, type(None))) for v in metric_kwargs.values()):
        raise ClustererFileError(f"{what} is corrupt: invalid HDBSCAN metric arguments")
    if params.get("metric") != "euclidean":
        raise ClustererFileError(f"{what}: HDBSCAN metric {params.get('metric')!r} is not one eventseg fits")

    raw = arrays.get("hdbscan.raw_data")
    if (raw is None or raw.dtype != np.float64 or raw.ndim != 2 or raw.shape[0] < 2 or raw.shape[1] < 1
            or not np.isfinite(raw).all()):
        raise ClustererFileError(f"{what} is corrupt: hdbscan.raw_data is not a finite [points, dims] matrix")
    n = raw.shape[0]
    labels = int_member(arrays, "hdbscan.labels", what, (n,))
    k = int(labels.max()) + 1
    if labels.min() < NOISE:
        raise ClustererFileError(f"{what} is corrupt: hdbscan.labels below -1")
    ct = arrays.get("hdbscan.condensed_tree")
    if ct is None or ct.ndim != 1 or ct.dtype.names != _CONDENSED_FIELDS or len(ct) == 0:
        raise ClustererFileError(f"{what} is corrupt: hdbscan.condensed_tree is missing or malformed")
    if any(ct.dtype[f].kind not in "iu" for f in ("parent", "child", "child_size")) or ct.dtype["lambda_val"].kind != "f":
        raise ClustererFileError(f"{what} is corrupt: hdbscan.condensed_tree has the wrong field types")
    # a real tree over the n points: hdbscan's compiled prediction code indexes with these ids
    # unchecked (boundscheck=False) and walks parent links until the root
    parent, child = ct["parent"].astype(np.int64), ct["child"].astype(np.int64)
    top = n + len(ct)  # no node id can reach this
    is_point = child < n
    cluster_child = child[~is_point]
    if (parent.min() != n or parent.max() >= top or child.min() < 0 or child.max() >= top
            or not np.array_equal(ct["child_size"] == 1, is_point) or np.any(ct["child_size"] < 1)
            or np.any(np.isnan(ct["lambda_val"]))
            or not np.array_equal(np.bincount(child[is_point], minlength=n), np.ones(n, dtype=np.int64))
            or np.any(cluster_child <= parent[~is_point]) or len(np.unique(cluster_child)) != len(cluster_child)
            or not np.isin(np.unique(parent[parent != n]), cluster_child).all()):
        raise ClustererFileError(f"{what} is corrupt: hdbscan.condensed_tree is not a tree over {n} points")
    slt = float_member(arrays, "hdbscan.single_linkage_tree", what, (n - 1, 4))
    probabilities = float_member(arrays, "hdbscan.probabilities", what, (n,))
    persistence = float_member(arrays, "hdbscan.cluster_persistence", what, (k,))
    mst = arrays.get("hdbscan.min_spanning_tree")
    if mst is not None:
        mst = float_member(arrays, "hdbscan.min_spanning_tree", what, (n - 1, 3))
    scores = arrays.get("hdbscan.outlier_scores")
    if scores is not None:
        scores = float_member(arrays, "hdbscan.outlier_scores", what, (n,))
    core = float_member(arrays, "hdbscan.core_distances", what, (n,))
    if not (np.isfinite(core).all() and (core >= 0).all()):
        raise ClustererFileError(f"{what} is corrupt: hdbscan.core_distances are not finite distances")
    rv = meta.get("relative_validity")

    hdb = hdbscan.HDBSCAN(**params, **metric_kwargs)
    hdb.memory = None  # as fit leaves it: the fit-time cache is gone
    hdb._condensed_tree, hdb._single_linkage_tree, hdb._min_spanning_tree = ct, slt, mst
    hdb._raw_data, hdb._all_finite = raw, True
    hdb.labels_, hdb.probabilities_, hdb.cluster_persistence_ = labels, probabilities, persistence
    hdb._outlier_scores = scores
    hdb._relative_validity = None if rv is None else float(rv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        _prediction_data(hdb, core)
    if hdb._prediction_data is None:
        raise ClustererFileError(f"{what}: the HDBSCAN prediction data could not be rebuilt")
    return hdb


class _SavedCoreDistances:
    """Stands in for the KD-tree while hdbscan's PredictionData is built: its one query (the
    core distance of every fit point, the slow part: seconds for 50k points) is answered with
    the saved values, which are that query's result at fit time."""

    def __init__(self, core: np.ndarray):
        self.core = core

    def query(self, X, k):
        d = np.empty((len(X), k))
        d[:, -1] = self.core
        return d, None


def _prediction_data(hdb, core: np.ndarray) -> None:
    """hdb.generate_prediction_data(), reusing the saved core distances. Everything else
    (cluster map, cluster tree, max lambdas, exemplars, the KD-tree) is derived by hdbscan
    itself; if its internals differ from what this expects, the full generation runs instead."""
    from hdbscan.prediction import PredictionData

    try:
        tree_type = PredictionData._tree_type_map["kdtree"]  # the class generate_prediction_data uses
        if hdb.metric != "euclidean":
            raise ValueError(hdb.metric)
        pdata = PredictionData.__new__(PredictionData)
        pdata._tree_type_map = {"kdtree": lambda data, metric, **kw: _SavedCoreDistances(core)}
        PredictionData.__init__(pdata, hdb._raw_data, hdb.condensed_tree_, hdb.min_samples or hdb.min_cluster_size,
                                tree_type="kdtree", metric=hdb.metric, **hdb._metric_kwargs)
        del pdata._tree_type_map
        pdata.tree = tree_type(pdata.raw_data, metric=hdb.metric, **hdb._metric_kwargs)
        if not np.array_equal(pdata.core_distances, core):
            raise ValueError("core distances")
        hdb._prediction_data = pdata
    except Exception:  # pragma: no cover - another hdbscan version
        hdb.generate_prediction_data()
