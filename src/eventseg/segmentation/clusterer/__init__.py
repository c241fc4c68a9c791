"""Stage 4, cluster: customer representations in, a two-level segmentation out (broad segments
with micro-segments below), and a saved clusterer that places new customers the same way
without refitting.

    standardise → reduce (PCA) → HDBSCAN dense groups on a seeded fit sample
      → everyone placed: core members by hdbscan's approximate prediction (vectorised), the
        rest at their nearest core point; only the top outlier scores outside every core stay out
      → broad segments: k-means in the outcome space (propensity scores) or the reduced space,
        count chosen by resampling and seed-change stability, unstable segments merged
      → micro-segments: each dense group within each broad segment

Outputs of `write_cluster_outputs` (each atomic, each with a `<name>.json` sidecar):
clusters.parquet, clusterer.npz, cluster_metrics.json, cluster_sweep.csv.

Submodules:

- `inputs`: checks on the embeddings and ids; the stage's error classes.
- `reducers`: the scaler and reducer steps.
- `selection`: the HDBSCAN min_cluster_size / min_samples sweep.
- `placement`: vectorised approximate prediction, nearest-core placement, ClusterPrediction,
  the resolution floor.
- `broad`: the outcome space and the broad level (k-means, count by stability, merges).
- `hierarchy`: the micro level (broad × dense group).
- `quality`: silhouette, dense-group stability, the metrics summary.
- `params`: the settings checks and the arguments read from config.
- `estimator`: SegmentClusterer (scikit-learn estimator contract).
- `persistence`: save / load (NPZ arrays + JSON + skops against an allowlist, header with
  format and library versions); `hdbscan_state`: the fitted HDBSCAN as checked arrays and back;
  `npz`: JSON and checked arrays as archive members.
- `outputs`: the stage's files and `cluster_from_config`, the stage as scripts call it.
"""

from eventseg.segmentation.clusterer.estimator import SegmentClusterer
from eventseg.segmentation.clusterer.inputs import (
    ClusterConfigError,
    ClustererFileError,
    ClusterInputError,
    check_embeddings,
)
from eventseg.segmentation.clusterer.outputs import cluster_from_config, write_cluster_outputs
from eventseg.segmentation.clusterer.placement import ClusterPrediction, DenseGroupPlacer
from eventseg.segmentation.clusterer.reducers import make_reducer

__all__ = [
    "ClusterConfigError", "ClusterInputError", "ClusterPrediction", "ClustererFileError", "DenseGroupPlacer",
    "SegmentClusterer", "check_embeddings", "cluster_from_config", "make_reducer", "write_cluster_outputs",
]
