"""What the cluster stage is given, checked: the embeddings and their customer ids, the
requested range of segment counts; and the stage's error classes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from eventseg.run.errors import UserError


class ClusterInputError(UserError):
    """The embeddings cannot be clustered as given (NaN, duplicate ids, too few customers, wrong dim)."""


class ClusterConfigError(UserError):
    """A clustering setting is invalid or needs an optional dependency."""


class ClustererFileError(UserError):
    """A saved clusterer is missing, corrupt, or was written by another format/eventseg version."""


def _example(values) -> str:
    v = values[0]
    return repr(v.item() if hasattr(v, "item") else v)


def check_embeddings(matrix, ids=None, *, expected_dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ids, float32 C-contiguous [n, dim]) or ClusterInputError naming the problem, count and an example."""
    matrix = np.asarray(matrix)
    if matrix.ndim != 2:
        raise ClusterInputError(f"embeddings must be a 2-D array [customers, dim], got shape {matrix.shape}")
    if not (np.issubdtype(matrix.dtype, np.floating) or np.issubdtype(matrix.dtype, np.integer)):
        raise ClusterInputError(f"embeddings must be numeric, got dtype {matrix.dtype}")
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    n, dim = matrix.shape
    if expected_dim is not None and dim != expected_dim:
        raise ClusterInputError(
            f"embeddings have {dim} dimensions but the clusterer was fitted on {expected_dim}-dimensional "
            "embeddings: use embeddings from the same model (or re-run cluster on the new ones)")
    ids = np.arange(n) if ids is None else np.asarray(ids)
    if ids.ndim != 1 or len(ids) != n:
        raise ClusterInputError(f"{len(ids)} customer ids for {n} embedding rows")
    bad = np.zeros(n, dtype=bool)
    for start in range(0, n, 200_000):  # chunked: no n x dim boolean temporary
        bad[start:start + 200_000] = ~np.isfinite(matrix[start:start + 200_000]).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        kind = "NaN" if np.isnan(matrix[rows[0]]).any() else "infinite"
        raise ClusterInputError(
            f"{len(rows)} customer(s) have NaN or infinite embedding values, e.g. customer {_example(ids[rows])} "
            f"(row {rows[0]}, {kind}); re-run embed or drop them")
    if n:
        dup = pd.Series(ids).duplicated(keep=False).to_numpy()
        if dup.any():
            dup_ids = pd.unique(ids[dup])
            raise ClusterInputError(
                f"{len(dup_ids)} customer id(s) appear more than once ({int(dup.sum())} rows), e.g. "
                f"{_example(dup_ids)} appears {int((ids == dup_ids[0]).sum())} times; each customer needs one embedding")
    return ids, matrix


DEFAULT_N_SEGMENTS = (4, 8)


def parse_segment_range(n_segments) -> tuple[int, int]:
    """(min, max) broad segments from an int, a pair, or None (the default range)."""
    if n_segments is None:
        return DEFAULT_N_SEGMENTS
    try:
        if isinstance(n_segments, (int, np.integer)):
            lo = hi = int(n_segments)
        else:
            vals = list(n_segments)
            if len(vals) != 2:
                raise ValueError
            lo, hi = int(vals[0]), int(vals[1])
    except (TypeError, ValueError):
        raise ClusterConfigError(f"n_segments must be an int or a [min, max] pair of ints, got {n_segments!r}") from None
    if lo < 2 or hi < lo:
        raise ClusterConfigError(f"n_segments must satisfy 2 <= min <= max, got [{lo}, {hi}]")
    return lo, hi
