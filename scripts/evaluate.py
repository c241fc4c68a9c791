"""Probe every representation on one split: python scripts/evaluate.py [data=...] [objectives=[...]] [overrides...]

Writes <out_dir>/evaluation.md and evaluation.json (default out_dir: runs/evaluate/<data name>).
"""

import sys

from omegaconf import DictConfig

from eventseg.cli import hydra_app
from eventseg.evaluate import evaluate_from_config


@hydra_app("evaluate")
def main(cfg: DictConfig) -> None:
    result = evaluate_from_config(cfg)
    print(open(result["outputs"]["markdown"], encoding="utf-8").read())
    print("outputs:")
    for name, path in result["outputs"].items():
        print(f"  {name:<9} {path}")


if __name__ == "__main__":
    sys.argv = ["force=true" if a == "--force" else a for a in sys.argv]  # the usual flag spelling
    main()
