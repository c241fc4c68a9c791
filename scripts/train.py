"""Train the sequence autoencoder: python scripts/train.py [data=...] [model=...] [trainer=...] (= eventseg train)"""

import sys

from eventseg.cli import main

if __name__ == "__main__":
    main(["train", *sys.argv[1:]])
