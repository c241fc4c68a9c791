"""The main job, end to end: python scripts/pipeline.py [overrides...]

With no arguments it runs on the built-in synthetic customers (generated on first use).
"""

import sys

from omegaconf import DictConfig

from eventseg.cli import hydra_app
from eventseg.pipeline import run_pipeline


@hydra_app("pipeline")
def main(cfg: DictConfig) -> None:
    outputs = run_pipeline(cfg)
    print("outputs:")
    for name, path in outputs.items():
        print(f"  {name:<26} {path}")


if __name__ == "__main__":
    sys.argv = ["force=true" if a == "--force" else a for a in sys.argv]  # the usual flag spelling
    main()
