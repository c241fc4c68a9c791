"""Embed customers with a trained model: python scripts/embed.py ckpt=PATH [data=...] [out_dir=...]"""

import json

import hydra
from omegaconf import DictConfig

from eventseg.embed import embed_from_config


@hydra.main(config_path="../configs", config_name="embed", version_base="1.3")
def main(cfg: DictConfig) -> None:
    result = embed_from_config(cfg)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
