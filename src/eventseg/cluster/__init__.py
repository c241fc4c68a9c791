"""Stage 4, cluster: customer embeddings in, HDBSCAN segments out, and a saved clusterer that
places new customers into the same segments without refitting.

Pipeline (one estimator-like object, BERTopic style, each step swappable by duck typing):

    standardise (StandardScaler)  →  reduce (PCA default | UMAP | any object with fit/transform)
      →  hdbscan.HDBSCAN(prediction_data=True)  on a seeded fit sample
      →  every other customer placed with approximate prediction (chunked, vectorised)

- min_cluster_size / min_samples are chosen automatically unless set: a small sweep scored by
  relative validity (hdbscan's cheap DBCV approximation, which already counts noise against
  a setting), with a noise ceiling, a minimum segment size and an optional requested range of
  segment counts (`n_segments=[4, 8]`). The sweep table is kept (`sweep_`).
- Stability: refit on seeded subsamples of the fit sample, place the held-out points, compare
  with the main fit (adjusted Rand index, share of customers that change segment, per-segment
  best Jaccard overlap; segments that do not survive most resamples are flagged).
- Segment ids are ordered by size in the fit sample: 0 is the largest; -1 is noise.
- Placement of new points reproduces `hdbscan.approximate_predict` and
  `hdbscan.approximate_predict_scores` exactly, but vectorised over points (the library loops
  in Python and scans the condensed tree per point, ~200 µs a point), so millions of
  customers are placed in seconds plus one nearest-neighbour query each.

Outputs of `write_cluster_outputs` (each atomic, each with a `<name>.json` sidecar):
clusters.parquet, clusterer.npz, cluster_metrics.json, cluster_sweep.csv.

Submodules:

- `inputs`: checks on the embeddings and ids; the stage's error classes.
- `reducers`: the scaler and reducer steps.
- `selection`: the min_cluster_size / min_samples sweep.
- `placement`: vectorised approximate prediction, ClusterPrediction, the resolution floor.
- `quality`: silhouette, stability under resampling, the metrics summary.
- `estimator`: SegmentClusterer.
- `persistence`: save / load (NPZ arrays + JSON + skops against an allowlist, header with
  format and library versions); `hdbscan_state`: the fitted HDBSCAN as checked arrays and back;
  `npz`: JSON and checked arrays as archive members.
- `outputs`: the stage's files and `cluster_from_config`, the stage as scripts call it.
"""

from eventseg.cluster.estimator import SegmentClusterer
from eventseg.cluster.inputs import ClusterConfigError, ClustererFileError, ClusterInputError, check_embeddings
from eventseg.cluster.outputs import cluster_from_config, write_cluster_outputs
from eventseg.cluster.persistence import CLUSTERER_FILE, SKOPS_TRUSTED_TYPES
from eventseg.cluster.placement import ClusterPrediction, _Placer
from eventseg.cluster.reducers import make_reducer
from eventseg.safe_skops import skops_type_names

__all__ = [
    "ClusterConfigError", "ClusterInputError", "ClusterPrediction", "ClustererFileError", "SegmentClusterer",
    "check_embeddings", "cluster_from_config", "make_reducer", "write_cluster_outputs",
]
