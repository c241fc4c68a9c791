"""eventseg cluster embeddings=PATH [out_dir=DIR] [cluster.n_segments=[4,8]]: HDBSCAN segments
(configs/cluster.yaml)."""

import json

from omegaconf import DictConfig

from eventseg.cli.app import hydra_app
from eventseg.segmentation.clusterer import cluster_from_config


@hydra_app("cluster")
def main(cfg: DictConfig) -> None:
    result = cluster_from_config(cfg)
    print(json.dumps(result, indent=2, default=str))
