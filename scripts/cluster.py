"""Segment customers with HDBSCAN: python scripts/cluster.py embeddings=PATH [out_dir=DIR] [cluster.n_segments=[4,8]]"""

import json

import hydra
from omegaconf import DictConfig

from eventseg.cluster import cluster_from_config


@hydra.main(config_path="../configs", config_name="cluster", version_base="1.3")
def main(cfg: DictConfig) -> None:
    result = cluster_from_config(cfg)
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
