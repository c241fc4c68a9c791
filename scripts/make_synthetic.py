"""Write the built-in synthetic customers: python scripts/make_synthetic.py n_customers=2000 seed=0 out_dir=DIR
(= eventseg synthetic; months_after=M also writes DIR/events_full.parquet for monitoring).
"""

import sys

from eventseg.cli import main

if __name__ == "__main__":
    main(["synthetic", *sys.argv[1:]])
