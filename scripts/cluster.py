"""Segment customers with HDBSCAN: python scripts/cluster.py embeddings=PATH [out_dir=DIR] [cluster.n_segments=[4,8]]
(= eventseg cluster)"""

import sys

from eventseg.cli import main

if __name__ == "__main__":
    main(["cluster", *sys.argv[1:]])
