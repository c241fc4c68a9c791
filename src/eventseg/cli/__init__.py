"""The `eventseg` command: `eventseg <command> [Hydra overrides]`, one module here per command.

A command module composes its config from src/eventseg/configs and runs one task; it is imported
only when its command runs, so `eventseg --help` and a mistyped command answer at once.
"""

from __future__ import annotations

import importlib
import sys
from typing import Sequence

from eventseg.cli.app import EXIT_USER_ERROR

COMMANDS = {  # name (= module eventseg.cli.<name>): what it does
    "run": "the whole job: prepare, train, embed, propensity, segments, report.html (skips up-to-date stages)",
    "synthetic": "write the built-in synthetic customers (events, labels, truth)",
    "prepare": "validate events, fit encoders, build the memory-mapped sequence store",
    "train": "train the sequence encoder (Lightning; trainer=gpu|ddp)",
    "embed": "one float32 vector per customer -> embeddings.parquet",
    "cluster": "HDBSCAN segments -> clusters.parquet, clusterer.npz",
    "score": "segment and score new customers with a finished run, no retraining",
    "monitor": "segments over time: re-score a finished run at later cutoffs, churn, drift, alerts",
    "lookalike": "customers most like a seed set, from a finished run",
    "audit": "fairness audit of a finished run's segments and tiers against protected attributes",
    "evaluate": "probe aggregates and each objective's embeddings on one split -> evaluation.md",
}
FORCE_FLAG = {"run", "evaluate"}  # commands whose config has force: `--force` is the usual spelling of force=true


def usage() -> str:
    from eventseg import __version__

    width = max(map(len, COMMANDS))
    lines = [f"eventseg {__version__}: behavioural customer embeddings and predictive segments", "",
             "usage: eventseg <command> [key=value ...]", ""]
    lines += [f"  {name:<{width}}  {what}" for name, what in COMMANDS.items()]
    lines += ["", "Every command takes Hydra overrides (key=value, group=option); `eventseg <command> --help`",
              "shows its config. run and evaluate take --force (redo up-to-date stages). See README.md."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """`eventseg <command> [overrides]`: argv defaults to the command line (scripts/*.py pass their own)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("help", "-h", "--help"):
        print(usage())
        return
    name, overrides = args[0], args[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; known: {', '.join(COMMANDS)}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    if name in FORCE_FLAG:
        overrides = ["force=true" if arg == "--force" else arg for arg in overrides]
    importlib.import_module(f"eventseg.cli.{name}").main(overrides)
