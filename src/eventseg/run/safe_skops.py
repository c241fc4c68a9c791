"""scikit-learn objects saved without pickle (loading a pickle can run code): skops archives,
loaded only if every type they name is in a trusted-type list (checked before anything is
imported or constructed). Used by the clusterer (scaler, PCA) and the propensity heads."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Sequence

import numpy as np

# builtin containers/values and numpy data types: data only, nothing callable
SKOPS_DATA_TYPES = (
    "builtins.dict", "builtins.list", "builtins.tuple", "builtins.str", "builtins.int", "builtins.float",
    "builtins.bool", "builtins.NoneType",
    "numpy.ndarray", "numpy.dtype", "numpy.bool", "numpy.bool_",
    "numpy.int8", "numpy.int16", "numpy.int32", "numpy.int64",
    "numpy.uint8", "numpy.uint16", "numpy.uint32", "numpy.uint64",
    "numpy.float16", "numpy.float32", "numpy.float64",
)


def skops_type_names(data: bytes) -> set[str]:
    """Every type a skops dump names ("module.Class"), read from its schema.json without
    importing or constructing anything. Stricter than skops.io.get_untrusted_types, which
    does not report the types skops trusts by default (every scikit-learn estimator, ...)."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        schema = json.loads(z.read("schema.json"))
    names: set[str] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "__class__" in node or "__module__" in node:
                names.add(f"{node.get('__module__')}.{node.get('__class__')}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return names


def skops_disallowed_types(data: bytes, allowed: Sequence[str]) -> list[str]:
    """Types named in a skops dump that are not in `allowed`: those skops itself does not trust
    (skops.io.get_untrusted_types) and any other type the file names."""
    import skops.io as sio

    untrusted = set(sio.get_untrusted_types(data=data))
    return sorted((untrusted | skops_type_names(data)) - set(allowed))


def skops_dumps_checked(obj, allowed: Sequence[str], what: str, error: type[Exception], remedy: str) -> bytes:
    """skops bytes for obj, or `error` if load would refuse them (a type outside `allowed`)."""
    import skops.io as sio

    try:
        data = sio.dumps(obj)
    except Exception as err:
        raise error(f"{what} ({type(obj).__name__}) cannot be saved in the safe skops format "
                    f"({type(err).__name__}: {err}). {remedy}") from None
    bad = skops_disallowed_types(data, allowed)
    if bad:
        raise error(f"{what} ({type(obj).__name__}) holds types that eventseg does not load: {bad}. Saved models "
                    f"are never pickled (loading a pickle can run code). {remedy}")
    return data


def skops_loads_checked(data: bytes, allowed: Sequence[str], what: str, error: type[Exception], remedy: str):
    """Load skops bytes only if every type they name is in `allowed` (checked before anything
    is imported or constructed); `error` with a clear message otherwise. Never trusted=True."""
    import skops.io as sio

    try:
        bad = skops_disallowed_types(data, allowed)
    except Exception as err:
        raise error(f"{what} is truncated or corrupt: not a skops archive ({type(err).__name__}: {err}). "
                    f"{remedy}") from None
    if bad:
        raise error(f"{what} names types that eventseg never loads: {bad} (allowed: scikit-learn models it saves "
                    f"itself and plain data). Loading it could run code, so it was not loaded. If you did not "
                    f"write this file, do not use it. {remedy}")
    try:
        obj = sio.loads(data, trusted=list(allowed))
    except Exception as err:
        raise error(f"{what} is truncated or corrupt ({type(err).__name__}: {err}). {remedy}") from None
    _check_hgb_predictors(obj, what, error, remedy)
    return obj


def _check_hgb_predictors(obj, what: str, error: type[Exception], remedy: str) -> None:
    """Histogram gradient boosting trees are walked by compiled code without bounds checks (the
    reason skops does not trust TreePredictor by default): check that every node points inside
    its tree, to a later node (so a walk ends), and at a real feature; no categorical splits."""
    items = list(obj.values()) if isinstance(obj, dict) else list(obj) if isinstance(obj, (list, tuple)) else [obj]
    for est in items:
        predictors = getattr(est, "_predictors", None)
        if predictors is None:
            continue
        from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE
        from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

        def bad(msg):
            return error(f"{what} is corrupt or crafted: a {type(est).__name__} {msg}. {remedy}")

        n_features = getattr(est, "n_features_in_", None)
        if not isinstance(n_features, (int, np.integer)) or n_features < 1:
            raise bad("has no valid n_features_in_")
        if getattr(est, "_in_fit", False):
            raise bad("is marked as being fitted")
        categorical = getattr(est, "is_categorical_", None)
        if (categorical is not None and np.any(categorical)) or getattr(est, "_preprocessor", None) is not None:
            raise bad("uses categorical features (not used by eventseg)")
        mapper = getattr(est, "_bin_mapper", None)
        if mapper is None or np.any(np.asarray(mapper.is_categorical_)) or np.size(mapper.is_categorical_) != n_features:
            raise bad("has an invalid bin mapper")
        if not isinstance(predictors, list) or not all(isinstance(it, list) for it in predictors):
            raise bad("has an invalid list of trees")
        for it in predictors:
            if len(it) != getattr(est, "n_trees_per_iteration_", -1):
                raise bad("has the wrong number of trees per iteration")
            for p in it:
                if type(p) is not TreePredictor:
                    raise bad("has a tree of the wrong type")
                nodes = p.nodes
                if (not isinstance(nodes, np.ndarray) or nodes.dtype != PREDICTOR_RECORD_DTYPE or nodes.ndim != 1
                        or len(nodes) == 0 or not nodes.flags.c_contiguous):
                    raise bad("has a tree whose nodes are not a node table")
                n = len(nodes)
                inner = nodes["is_leaf"] == 0
                idx = np.arange(n)[inner]
                left, right = nodes["left"][inner].astype(np.int64), nodes["right"][inner].astype(np.int64)
                feat = nodes["feature_idx"][inner].astype(np.int64)
                if (np.any(nodes["is_categorical"] != 0) or np.any(left <= idx) or np.any(left >= n)
                        or np.any(right <= idx) or np.any(right >= n) or np.any(feat < 0) or np.any(feat >= n_features)):
                    raise bad("has a tree with out-of-range node links or features")
