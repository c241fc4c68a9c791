"""Probe every representation on one split: python scripts/evaluate.py [data=...] [objectives=[...]] [--force]
(= eventseg evaluate). Writes <out_dir>/evaluation.md and evaluation.json (default out_dir:
runs/evaluate/<data name>).
"""

import sys

from eventseg.cli import main

if __name__ == "__main__":
    main(["evaluate", *sys.argv[1:]])
