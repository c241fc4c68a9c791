"""eventseg embed ckpt=PATH [data=...] [out_dir=...]: embed customers with a trained model (configs/embed.yaml)."""

import json

from omegaconf import DictConfig

from eventseg.cli.app import hydra_app
from eventseg.embedding.embed import embed_from_config


@hydra_app("embed")
def main(cfg: DictConfig) -> None:
    result = embed_from_config(cfg)
    print(json.dumps(result, indent=2))
