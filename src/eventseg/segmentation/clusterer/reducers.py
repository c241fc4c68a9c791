"""The clusterer's first two steps: standardise (StandardScaler | 'none' | any object with
fit/transform), then reduce (PCA | UMAP | 'none' | any object with fit/transform)."""

from __future__ import annotations

from typing import Any

from eventseg.segmentation.clusterer.inputs import ClusterConfigError

REDUCERS = ("pca", "umap", "none")


class Identity:
    """The 'none' reducer."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return X


def make_reducer(reducer: Any = "pca", n_components: int = 10, seed: int = 0, dim: int | None = None,
                 n_fit: int | None = None, umap_kwargs: dict | None = None):
    """A fresh reducer: 'pca' | 'umap' | 'none', or any object with fit/transform (used as is)."""
    if not isinstance(reducer, str):
        if not (hasattr(reducer, "fit") and hasattr(reducer, "transform")):
            raise ClusterConfigError(f"reducer must be one of {REDUCERS} or an object with fit/transform, got {reducer!r}")
        return reducer
    if reducer not in REDUCERS:
        raise ClusterConfigError(f"unknown reducer {reducer!r}; choose one of {REDUCERS}")
    if reducer == "none":
        return Identity()
    k = int(n_components)
    if k < 1:
        raise ClusterConfigError(f"n_components must be >= 1, got {n_components}")
    if reducer == "pca":
        from sklearn.decomposition import PCA

        k = min(k, dim or k, n_fit or k)
        return PCA(n_components=k, svd_solver="full", random_state=seed)
    try:
        import umap  # type: ignore
    except ImportError:
        raise ClusterConfigError(
            "reducer='umap' needs the optional umap-learn package: pip install eventseg[umap] "
            "(or use reducer=pca)") from None
    kw = {"n_neighbors": 30, "min_dist": 0.0, "metric": "euclidean", **(umap_kwargs or {})}
    return umap.UMAP(n_components=k, random_state=seed, **kw)


def make_scaler(scaler: Any):
    if scaler is None or scaler == "standard":
        from sklearn.preprocessing import StandardScaler

        return StandardScaler()
    if scaler == "none":
        return Identity()
    if hasattr(scaler, "fit") and hasattr(scaler, "transform"):
        return scaler
    raise ClusterConfigError(f"scaler must be 'standard', 'none' or an object with fit/transform, got {scaler!r}")
