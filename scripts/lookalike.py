"""Lookalike audience from a finished run:
python scripts/lookalike.py run_dir=DIR seeds=FILE|top:<column>:<share> k=N [name=...] (= eventseg lookalike)"""

import sys

from eventseg.cli import main

if __name__ == "__main__":
    main(["lookalike", *sys.argv[1:]])
