"""Fairness audit of a finished run: python scripts/audit.py run_dir=DIR attributes=FILE [columns=[age,income]]
(= eventseg audit)"""

import sys

from eventseg.cli import main

if __name__ == "__main__":
    main(["audit", *sys.argv[1:]])
