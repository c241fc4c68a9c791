"""A fitted SegmentClusterer saved to, and loaded from, one file that cannot run code.

One NPZ file (a zip of .npy arrays), read back with np.load(allow_pickle=False): nothing in
it can run code when loaded. Members: "__header__" and "meta" (UTF-8 JSON as uint8 arrays),
"scaler"/"reducer" (skops bytes, loaded against SKOPS_TRUSTED_TYPES only), the fitted HDBSCAN
as plain arrays ("hdbscan.*") rebuilt into an hdbscan.HDBSCAN on load, "label_order", "relabel",
the broad level ("broad.centers", "broad.merge", and "outcomes.mean"/"outcomes.scale" when it
is outcome-aware) and the micro level ("micro.table", "micro.parent").
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from eventseg import __version__
from eventseg.run.artifacts import atomic_path, sidecar_path, write_sidecar
from eventseg.run.layout import RunLayout
from eventseg.run.safe_skops import SKOPS_DATA_TYPES, skops_dumps_checked, skops_loads_checked
from eventseg.segmentation.clusterer.hdbscan_state import hdbscan_from_arrays, hdbscan_to_arrays
from eventseg.segmentation.clusterer.inputs import ClusterConfigError, ClustererFileError, parse_segment_range
from eventseg.segmentation.clusterer.npz import float_member, int_member, json_member, read_json_member
from eventseg.segmentation.clusterer.placement import NOISE, DenseGroupPlacer
from eventseg.segmentation.clusterer.reducers import Identity

FORMAT = "eventseg.cluster.SegmentClusterer"
FORMAT_VERSION = 3  # 1: pickle (no longer loaded); 2: NPZ arrays + JSON + skops; 3: + broad and micro levels
LEGACY_CLUSTERER_FILE = "clusterer.pkl"  # the old pickle format: recognised, never loaded
HEADER_KEY = "__header__"

# the clusterer's fitted scaler and reducer: exactly these types (and SKOPS_DATA_TYPES)
SCALER_REDUCER_TYPES = (
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.decomposition._pca.PCA",
)
SKOPS_TRUSTED_TYPES = SKOPS_DATA_TYPES + SCALER_REDUCER_TYPES



def _lib_versions() -> dict:
    import hdbscan
    import sklearn

    return {"hdbscan_version": _hdbscan_version(hdbscan), "sklearn_version": sklearn.__version__,
            "numpy_version": np.__version__}


def _hdbscan_version(hdbscan) -> str | None:
    version = getattr(hdbscan, "__version__", None)
    if version is None:
        try:
            from importlib.metadata import version as dist_version

            version = dist_version("hdbscan")
        except Exception:  # pragma: no cover - not installed as a distribution
            version = None
    return version


def _header() -> dict:
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "eventseg_version": __version__, **_lib_versions()}


_UMAP_MESSAGE = (
    "a clusterer with reducer='umap' cannot be saved: a fitted UMAP model can only be stored with pickle "
    "(numba functions, a pynndescent index), and eventseg never writes or loads pickle because loading one can "
    "run arbitrary code. Use reducer='pca' (the default) or reducer='none' for a clusterer you want to save and "
    "reuse with SegmentClusterer.load().")


def _transform_state(obj, name: str, setting) -> tuple[dict, bytes | None]:
    """(JSON description, skops bytes or None) of a fitted scaler/reducer, or ClusterConfigError."""
    if isinstance(obj, Identity):
        return {"kind": "identity"}, None
    if setting == "umap" or type(obj).__module__.split(".")[0] == "umap":
        raise ClusterConfigError(_UMAP_MESSAGE)
    type_name = f"{type(obj).__module__}.{type(obj).__name__}"
    remedy = (f"Only StandardScaler, PCA and 'none' are saved (scaler='standard'|'none', reducer='pca'|'none'); "
              f"a custom {name} object can be fitted and used in memory, but not saved.")
    if type_name not in SCALER_REDUCER_TYPES:
        raise ClusterConfigError(f"the fitted {name} ({type_name}) cannot be saved safely. {remedy}")
    data = skops_dumps_checked(obj, SKOPS_TRUSTED_TYPES, f"the fitted {name}", ClusterConfigError, remedy)
    return {"kind": "skops", "type": type_name}, data


def _load_transform(meta, data: np.ndarray | None, name: str, what: str):
    remedy = "Re-run cluster (eventseg cluster embeddings=...) to write a new clusterer."
    if not isinstance(meta, dict):
        raise ClustererFileError(f"{what} is corrupt: no {name} description")
    if meta.get("kind") == "identity":
        return Identity()
    if meta.get("kind") != "skops" or data is None or data.dtype != np.uint8 or data.ndim != 1:
        raise ClustererFileError(f"{what} is corrupt: the {name} is missing or of an unknown kind")
    obj = skops_loads_checked(data.tobytes(), SKOPS_TRUSTED_TYPES, f"{what} ({name})", ClustererFileError, remedy)
    type_name = f"{type(obj).__module__}.{type(obj).__name__}"
    if type_name not in SCALER_REDUCER_TYPES:
        raise ClustererFileError(f"{what} is corrupt: the {name} is a {type_name}, not one of {SCALER_REDUCER_TYPES}")
    return obj


def _payload(sc) -> tuple[dict, dict[str, np.ndarray]]:
    """(JSON metadata, named arrays) describing the fitted clusterer: no Python objects.
    ClusterConfigError if a part cannot be stored in the safe format (UMAP, custom objects)."""
    scaler_meta, scaler_bytes = _transform_state(sc.scaler_, "scaler", sc.scaler)
    reducer_meta, reducer_bytes = _transform_state(sc.reducer_, "reducer", sc.reducer)
    hdb_meta, hdb_arrays = hdbscan_to_arrays(sc.hdbscan_)
    params = {}
    for k, v in sc.get_params().items():
        if k in ("reducer", "scaler") and not (v is None or isinstance(v, str)):
            v = {"object": type(v).__name__}  # restored on load from the fitted (saved) object
        params[k] = list(v) if isinstance(v, tuple) else v
    meta = {
        "params": params,
        "scaler": scaler_meta, "reducer": reducer_meta, "hdbscan": hdb_meta,
        "embedding_dim": int(sc.embedding_dim),
        "min_cluster_size": int(sc.min_cluster_size_), "min_samples": int(sc.min_samples_),
        "cluster_selection_method": str(sc.cluster_selection_method_),
        "outlier_threshold": float(sc.outlier_threshold_),
        "outcome_columns": None if sc.outcome_space_ is None else list(sc.outcome_space_.columns),
        "metrics": {k: v for k, v in getattr(sc, "metrics_", {}).items() if k != "dense"},
    }
    arrays = {"label_order": np.asarray(sc.label_order_, dtype=np.int64),
              "relabel": np.asarray(sc.relabel_, dtype=np.int64), **hdb_arrays,
              "broad.centers": np.asarray(sc.broad_.centers_, dtype=np.float64),
              "broad.merge": np.asarray(sc.broad_.merge_, dtype=np.int64),
              "micro.table": np.asarray(sc.micro_.table_, dtype=np.int64),
              "micro.parent": np.asarray(sc.micro_.parent_, dtype=np.int64)}
    if sc.outcome_space_ is not None:
        arrays["outcomes.mean"] = np.asarray(sc.outcome_space_.mean_, dtype=np.float64)
        arrays["outcomes.scale"] = np.asarray(sc.outcome_space_.scale_, dtype=np.float64)
    if scaler_bytes is not None:
        arrays["scaler"] = np.frombuffer(scaler_bytes, dtype=np.uint8)
    if reducer_bytes is not None:
        arrays["reducer"] = np.frombuffer(reducer_bytes, dtype=np.uint8)
    try:
        json_member(params, strict=True)
    except (TypeError, ValueError) as err:
        raise ClusterConfigError(f"the clusterer settings cannot be saved as JSON ({err}); use plain values "
                                 "(numbers, strings, lists) for umap_kwargs and the other settings") from None
    return meta, arrays


def save_clusterer(sc, path: str | os.PathLike, **sidecar_fields: Any) -> Path:
    """A fitted SegmentClusterer to `path` (see the module docstring), atomically, with a sidecar."""
    path = Path(path)
    meta, arrays = _payload(sc)  # before writing anything: an unsaveable clusterer leaves no file
    members = {HEADER_KEY: json_member(_header()), "meta": json_member(meta), **arrays}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a name
            np.savez(f, **members)
        stale = sidecar_path(path)
        if stale.exists():
            stale.unlink()
    facts = {"format": FORMAT, "format_version": FORMAT_VERSION, "n_clusters": sc.n_clusters_,
             "embedding_dim": int(sc.embedding_dim), "min_cluster_size": sc.min_cluster_size_,
             "min_samples": sc.min_samples_, "cluster_selection_method": sc.cluster_selection_method_}
    write_sidecar(path, **{**sidecar_fields, **facts})  # facts about the file win over caller fields
    return path


def load_clusterer(path: str | os.PathLike, cls):
    """The `cls` (SegmentClusterer) saved at `path` by save_clusterer; ClustererFileError for
    anything else."""
    path = Path(path)
    if not path.exists():
        legacy = path.with_name(LEGACY_CLUSTERER_FILE)
        hint = (f"; {legacy} is an old pickle clusterer, which this eventseg no longer loads (unpickling can "
                "run code): re-run cluster (eventseg cluster embeddings=...) to write the new format"
                if path.name == RunLayout.clusterer and legacy.exists() else " (run eventseg cluster to create it)")
        raise FileNotFoundError(f"clusterer not found: {path}{hint}")
    if path.is_dir():
        raise ClustererFileError(f"{path} is a directory, not a saved eventseg clusterer")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic[:1] == b"\x80":
        raise ClustererFileError(
            f"{path} is a pickle (an eventseg clusterer from before format {FORMAT_VERSION}, or something else): "
            "it is not loaded, because unpickling a file can run arbitrary code. Re-run cluster "
            "(eventseg cluster embeddings=...) to write the safe format.")
    if magic != b"PK\x03\x04":
        raise ClustererFileError(f"{path} is not a saved eventseg clusterer (not an NPZ archive)")
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as err:
        raise ClustererFileError(f"{path} is not a saved eventseg clusterer, or is truncated "
                                 f"({type(err).__name__}: {err}); re-run cluster") from None
    with npz:
        try:
            header = read_json_member(npz, HEADER_KEY)
        except Exception:
            header = None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ClustererFileError(f"{path} is not a saved eventseg clusterer (no {FORMAT} header)")
        fv, ev = header.get("format_version"), header.get("eventseg_version")
        if fv != FORMAT_VERSION or ev != __version__:
            raise ClustererFileError(
                f"{path} was saved by eventseg {ev} (clusterer format {fv}); this is eventseg {__version__} "
                f"(format {FORMAT_VERSION}). Re-run cluster (eventseg cluster embeddings=...) to refit it.")
        for lib, now in _lib_versions().items():
            if header.get(lib) and header[lib] != now:
                warnings.warn(f"{path} was saved with {lib} {header[lib]}, this environment has {now}; "
                              "if loading or predictions fail, re-run cluster", stacklevel=3)
        try:
            meta = read_json_member(npz, "meta")
            arrays = {k: npz[k] for k in npz.files if k not in (HEADER_KEY, "meta")}
        except Exception as err:  # a bad member: zip CRC, short read, an object (pickled) array
            raise ClustererFileError(f"{path} is truncated or corrupt ({type(err).__name__}: {err}); "
                                     "re-run cluster") from None
    try:
        return _from_payload(cls, meta, arrays, path)
    except ClustererFileError:
        raise
    except Exception as err:
        raise ClustererFileError(f"{path} is corrupt: its contents do not describe a fitted clusterer "
                                 f"({type(err).__name__}: {err}); re-run cluster") from None


def _from_payload(cls, meta: dict, arrays: dict[str, np.ndarray], path: Path):
    if not isinstance(meta, dict) or not isinstance(meta.get("params"), dict):
        raise ClustererFileError(f"{path} is corrupt: no clusterer settings")
    params = dict(meta["params"])
    objects = {k: params.pop(k) for k in ("reducer", "scaler") if isinstance(params.get(k), dict)}
    sc = cls.__new__(cls)
    known = set(cls().get_params())
    cls.__init__(sc, **{k: tuple(v) if isinstance(v, list) else v for k, v in params.items() if k in known})
    what = str(path)
    sc.scaler_ = _load_transform(meta.get("scaler"), arrays.get("scaler"), "scaler", what)
    sc.reducer_ = _load_transform(meta.get("reducer"), arrays.get("reducer"), "reducer", what)
    for k in objects:  # a custom (allowlisted) object was passed: an unfitted copy of the saved one
        from sklearn.base import clone

        setattr(sc, k, clone(getattr(sc, k + "_")))
    sc.hdbscan_ = hdbscan_from_arrays(meta["hdbscan"], arrays, what)
    n_fit = len(sc.hdbscan_.labels_)
    k = int(sc.hdbscan_.labels_.max()) + 1 if n_fit else 0
    order = int_member(arrays, "label_order", what, shape=(k,))
    if not np.array_equal(np.sort(order), np.arange(k)):
        raise ClustererFileError(f"{what} is corrupt: label_order is not a permutation of the {k} clusters")
    relabel = np.full(k + 1, NOISE, dtype=np.int64)
    relabel[order + 1] = np.arange(k)
    if not np.array_equal(int_member(arrays, "relabel", what, shape=(k + 1,)), relabel):
        raise ClustererFileError(f"{what} is corrupt: relabel does not match label_order")
    sc.label_order_, sc.relabel_ = order, relabel
    sc.embedding_dim = int(meta["embedding_dim"])
    if sc.embedding_dim < 1:
        raise ClustererFileError(f"{what} is corrupt: embedding_dim={sc.embedding_dim}")
    sc.min_cluster_size_, sc.min_samples_ = int(meta["min_cluster_size"]), int(meta["min_samples"])
    sc.cluster_selection_method_ = str(meta["cluster_selection_method"])
    sc.saved_metrics_ = meta.get("metrics") or {}
    sc.outlier_threshold_ = float(meta["outlier_threshold"])
    if not 0 <= sc.outlier_threshold_ <= 1:  # also NaN
        raise ClustererFileError(f"{what} is corrupt: outlier_threshold={sc.outlier_threshold_} is not in [0, 1]")
    _load_levels(sc, meta, arrays, what, n_dense=k)
    # built now, so a file whose trees do not fit together is refused here, not at the first predict
    sc.placer_ = DenseGroupPlacer(sc.hdbscan_, sc.n_jobs)
    probe = sc.transform(np.zeros((1, sc.embedding_dim), dtype=np.float32))
    if probe.shape != (1, sc.hdbscan_._raw_data.shape[1]):
        raise ClustererFileError(f"{what} is corrupt: the reducer gives {probe.shape[1]} dimensions, the "
                                 f"HDBSCAN model was fitted on {sc.hdbscan_._raw_data.shape[1]}")
    return sc


def _load_levels(sc, meta: dict, arrays: dict[str, np.ndarray], what: str, n_dense: int) -> None:
    """The broad and micro levels, checked to fit together before any customer is placed."""
    from eventseg.segmentation.clusterer.broad import BroadLevel, OutcomeSpace
    from eventseg.segmentation.clusterer.hierarchy import MicroLevel

    merge = arrays.get("broad.merge")
    centers = arrays.get("broad.centers")
    if merge is None or centers is None or centers.ndim != 2 or centers.dtype.kind != "f":
        raise ClustererFileError(f"{what} is corrupt: the broad level is missing")
    if not np.isfinite(centers).all():
        raise ClustererFileError(f"{what} is corrupt: broad.centers are not finite")
    k_means = centers.shape[0]
    merge = int_member(arrays, "broad.merge", what, shape=(k_means,))
    n_broad = int(merge.max()) + 1 if k_means else 0
    if k_means == 0 or merge.min() < 0 or not np.array_equal(np.unique(merge), np.arange(n_broad)):
        raise ClustererFileError(f"{what} is corrupt: broad.merge does not number the broad segments 0..k-1")
    columns = meta.get("outcome_columns")
    sc.outcome_space_ = None
    if columns is not None:
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise ClustererFileError(f"{what} is corrupt: outcome_columns is not a list of names")
        space = OutcomeSpace(columns)
        space.mean_ = float_member(arrays, "outcomes.mean", what, shape=(len(columns),))
        space.scale_ = float_member(arrays, "outcomes.scale", what, shape=(len(columns),))
        if not np.isfinite(space.mean_).all():
            raise ClustererFileError(f"{what} is corrupt: outcomes.mean is not finite")
        if not (np.isfinite(space.scale_).all() and (space.scale_ > 0).all()):
            raise ClustererFileError(f"{what} is corrupt: outcomes.scale is not finite and positive")
        sc.outcome_space_ = space
    expected_dim = len(columns) if columns is not None else sc.hdbscan_._raw_data.shape[1]
    if centers.shape[1] != expected_dim:
        raise ClustererFileError(f"{what} is corrupt: broad centres have {centers.shape[1]} coordinates, expected {expected_dim}")
    broad = BroadLevel(parse_segment_range(sc.n_segments))
    broad.centers_, broad.merge_, broad.n_segments_ = centers.astype(np.float64), merge, n_broad
    sc.broad_ = broad
    parent = arrays.get("micro.parent")
    if parent is None or parent.ndim != 1:
        raise ClustererFileError(f"{what} is corrupt: the micro level is missing")
    parent = int_member(arrays, "micro.parent", what, shape=parent.shape)
    table = int_member(arrays, "micro.table", what, shape=(n_broad, max(n_dense, 1)))
    if (len(parent) == 0 or parent.min() < 0 or parent.max() >= n_broad or table.min() < 0
            or table.max() >= len(parent) or not np.array_equal(parent[table], np.repeat(np.arange(n_broad)[:, None],
                                                                                       table.shape[1], axis=1))):
        raise ClustererFileError(f"{what} is corrupt: the micro-segment table does not fit the broad segments")
    sc.micro_ = MicroLevel.from_arrays(table, parent)
