"""Segment customers with HDBSCAN: python scripts/cluster.py embeddings=PATH [out_dir=DIR] [cluster.n_segments=[4,8]]"""

import json

from omegaconf import DictConfig

from eventseg.cli import hydra_app
from eventseg.cluster import cluster_from_config


@hydra_app("cluster")
def main(cfg: DictConfig) -> None:
    result = cluster_from_config(cfg)
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
