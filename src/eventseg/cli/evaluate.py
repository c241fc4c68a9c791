"""eventseg evaluate [data=...] [objectives=[...]] [--force]: probe every representation on one split
(configs/evaluate.yaml). Writes <out_dir>/evaluation.md and evaluation.json (default out_dir:
runs/evaluate/<data name>)."""

from omegaconf import DictConfig

from eventseg.cli.app import hydra_app
from eventseg.experiments.evaluate import evaluate_from_config


@hydra_app("evaluate")
def main(cfg: DictConfig) -> None:
    result = evaluate_from_config(cfg)
    print(open(result["outputs"]["markdown"], encoding="utf-8").read())
    print("outputs:")
    for name, path in result["outputs"].items():
        print(f"  {name:<9} {path}")
