"""eventseg run [overrides] [--force]: the whole job, every stage end to end (configs/pipeline.yaml).

With no overrides it runs on the built-in synthetic customers (generated on first use).
"""

from omegaconf import DictConfig

from eventseg.cli.app import hydra_app
from eventseg.pipeline import MOVED_SETTINGS, run_pipeline


@hydra_app("pipeline", moved=MOVED_SETTINGS)
def main(cfg: DictConfig) -> None:
    outputs = run_pipeline(cfg)
    print("outputs:")
    for name, path in outputs.items():
        print(f"  {name:<26} {path}")
