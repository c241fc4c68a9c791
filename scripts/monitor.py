"""Segments over time: python scripts/monitor.py run_dir=DIR data=events data.path=EVENTS cutoffs=[d1,d2,...]
(= eventseg monitor)"""

import sys

from eventseg.cli import main

if __name__ == "__main__":
    main(["monitor", *sys.argv[1:]])
