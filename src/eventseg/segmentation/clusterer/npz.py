"""Members of a saved clusterer's NPZ archive: JSON as uint8 arrays, and arrays read back
only if they have the expected kind and shape."""

from __future__ import annotations

import json

import numpy as np

from eventseg.segmentation.clusterer.inputs import ClustererFileError


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (tuple, set)):
        return list(o)
    return str(o)


def json_member(obj, strict: bool = False) -> np.ndarray:
    """obj as UTF-8 JSON in a uint8 array (an NPZ member). strict: TypeError on non-JSON values."""
    text = json.dumps(obj, sort_keys=True) if strict else json.dumps(obj, sort_keys=True, default=_json_default)
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


def read_json_member(npz, key: str):
    a = npz[key]
    if a.dtype != np.uint8 or a.ndim != 1:
        raise ValueError(f"member {key!r} is not JSON bytes")
    return json.loads(a.tobytes().decode("utf-8"))


def int_member(arrays, key: str, what: str, shape: tuple) -> np.ndarray:
    a = arrays.get(key)
    if a is None or a.dtype.kind not in "iu" or a.shape != shape:
        raise ClustererFileError(f"{what} is corrupt: {key} is missing or malformed (expected integers of shape {shape})")
    return a.astype(np.int64)


def float_member(arrays, key: str, what: str, shape: tuple) -> np.ndarray:
    a = arrays.get(key)
    if a is None or a.dtype.kind != "f" or a.shape != shape:
        raise ClustererFileError(f"{what} is corrupt: {key} is missing or malformed (expected floats of shape {shape})")
    return a
