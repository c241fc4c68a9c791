"""Train the sequence autoencoder: python scripts/train.py [data=...] [model=...] [trainer=...]"""

import hydra
from omegaconf import DictConfig

from eventseg.train import train


@hydra.main(config_path="../configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    result = train(cfg)
    if result.checkpoint:
        print(f"checkpoint: {result.checkpoint}")


if __name__ == "__main__":
    main()
