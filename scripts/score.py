"""Score new customers with a finished run: python scripts/score.py run_dir=DIR data=events data.path=FILE
(= eventseg score)"""

import sys

from eventseg.cli import main

if __name__ == "__main__":
    main(["score", *sys.argv[1:]])
