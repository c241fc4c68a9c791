"""Validate events and build the sequence store: python scripts/prepare.py [data=...] [out_dir=...]
(= eventseg prepare)"""

import sys

from eventseg.cli import main

if __name__ == "__main__":
    main(["prepare", *sys.argv[1:]])
