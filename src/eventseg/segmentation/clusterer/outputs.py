"""The cluster stage's files (clusters.parquet, clusterer.npz, cluster_metrics.json,
cluster_sweep.csv, each atomic with a `<name>.json` sidecar) and the stage as scripts call it."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from eventseg.data.schema import OUTPUT_ID
from eventseg.run.artifacts import atomic_path, file_hash, sidecar_path, write_json, write_sidecar
from eventseg.run.columns import score_names
from eventseg.run.config import plain
from eventseg.run.layout import RunLayout
from eventseg.segmentation.clusterer.estimator import SegmentClusterer
from eventseg.segmentation.clusterer.inputs import ClusterConfigError


def write_cluster_outputs(clusterer: SegmentClusterer, out_dir: str | os.PathLike, *, id_col: str = OUTPUT_ID,
                          **provenance: Any) -> dict[str, str]:
    """clusterer.npz, clusters.parquet, cluster_metrics.json, cluster_sweep.csv under out_dir, each
    written atomically (temporary name, then rename) with a `<name>.json` sidecar."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    layout = RunLayout(out)
    paths = {"clusterer": layout.clusterer, "clusters": layout.clusters, "metrics": layout.cluster_metrics,
             "sweep": layout.cluster_sweep}
    m = clusterer.metrics_
    facts = {"n_clusters": m["n_clusters"], "n_subsegments": m["n_subsegments"], **provenance}
    clusterer.save(paths["clusterer"], **facts)
    facts["clusterer_sha256"] = file_hash(paths["clusterer"])

    df = clusterer.assignments(id_col)
    _atomic(paths["clusters"], lambda tmp: df.to_parquet(tmp, index=False))
    write_sidecar(paths["clusters"], rows=len(df), id_col=id_col, outlier_share=m["outlier_share"], **facts)

    write_json(m, paths["metrics"])
    _atomic(paths["sweep"], lambda tmp: clusterer.sweep_.to_csv(tmp, index=False))
    write_sidecar(paths["sweep"], rows=len(clusterer.sweep_), **facts)
    return {k: str(v) for k, v in paths.items()}


def _atomic(path: Path, write) -> None:
    with atomic_path(path) as tmp:
        write(tmp)
        stale = sidecar_path(path)
        if stale.exists():  # an old sidecar must never describe new data
            stale.unlink()


def _embeddings_provenance(path: Path) -> dict:
    side = sidecar_path(path)
    info: dict[str, Any] = {"embeddings": str(path)}
    if side.exists():
        import json

        try:
            meta = json.loads(side.read_text())
            info["embeddings_sidecar"] = {k: meta.get(k) for k in ("checkpoint_sha256", "rows", "created_at",
                                                                    "eventseg_version") if k in meta}
        except ValueError:
            pass
    return info


def _read_outcomes(path: Path, ids, id_col: str):
    """The published propensity scores (p_* / pred_*) of every clustered customer, in ids order."""
    import numpy as np
    import pandas as pd

    from eventseg.segmentation.clusterer.inputs import ClusterInputError

    table = pd.read_parquet(path)
    key = id_col if id_col in table.columns else OUTPUT_ID
    columns = score_names(table.columns)
    if key not in table.columns or not columns:
        raise ClusterInputError(f"{path} has no '{id_col}' column or no p_<label> / pred_<label> scores")
    scores = table.set_index(key)[columns]
    missing = ~pd.Index(np.asarray(ids)).isin(scores.index)
    if missing.any():
        raise ClusterInputError(f"{int(missing.sum())} clustered customer(s) have no propensity score in {path}, "
                                f"e.g. {np.asarray(ids)[missing][0]!r}: score every customer or drop outcomes=")
    return scores.reindex(np.asarray(ids)).reset_index(drop=True)


def cluster_from_config(cfg) -> dict:
    """The cluster stage as scripts call it. Keys: embeddings (file or directory of parts), out_dir
    (default: the embeddings' folder), outcomes (optional: propensity scores that make the broad
    level outcome-aware), cluster (the cluster group). Returns paths and metrics."""
    from eventseg.embedding.embed import embeddings_id_col, load_embeddings  # lazy: the stage only needs the reader

    started = time.perf_counter()
    c = dict(plain(cfg) or {})
    if not c.get("embeddings"):
        raise ClusterConfigError("embeddings is not set: pass embeddings=path/to/embeddings.parquet")
    emb_path = Path(str(c["embeddings"]))
    out_dir = Path(str(c["out_dir"])) if c.get("out_dir") else emb_path.parent
    t = time.perf_counter()
    ids, matrix = load_embeddings(emb_path)
    load_seconds = time.perf_counter() - t
    clusterer = SegmentClusterer.from_config(c.get("cluster") or {})
    outcomes = _read_outcomes(Path(str(c["outcomes"])), ids, embeddings_id_col(emb_path)) if c.get("outcomes") else None
    clusterer.fit(matrix, ids=ids, outcomes=outcomes)
    del matrix
    t = time.perf_counter()
    paths = write_cluster_outputs(clusterer, out_dir, id_col=embeddings_id_col(emb_path), config=c.get("cluster"),
                                  **_embeddings_provenance(emb_path))
    m = clusterer.metrics_
    return {
        **paths,
        "rows": m["n_customers"], "n_clusters": m["n_clusters"], "n_subsegments": m["n_subsegments"],
        "coverage": m["coverage"], "largest_share": m["largest_share"], "cluster_sizes": m["cluster_sizes"],
        "broad_space": m["broad"]["space"], "broad_stability": m["broad"]["stability"],
        "dense_groups": m["dense"]["n_groups"],
        "load_seconds": round(load_seconds, 3), "write_seconds": round(time.perf_counter() - t, 3),
        "seconds": round(time.perf_counter() - started, 3),
    }
