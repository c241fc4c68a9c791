"""The main job, end to end: python scripts/pipeline.py [overrides...] [--force] (= eventseg run).

With no arguments it runs on the built-in synthetic customers (generated on first use).
"""

import sys

from eventseg.cli import main

if __name__ == "__main__":
    main(["run", *sys.argv[1:]])
