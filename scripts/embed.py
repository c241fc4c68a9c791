"""Embed customers with a trained model: python scripts/embed.py ckpt=PATH [data=...] [out_dir=...]"""

import json

from omegaconf import DictConfig

from eventseg.cli import hydra_app
from eventseg.embed import embed_from_config


@hydra_app("embed")
def main(cfg: DictConfig) -> None:
    result = embed_from_config(cfg)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
