"""Embed customers with a trained model: python scripts/embed.py ckpt=PATH [data=...] [out_dir=...]
(= eventseg embed)"""

import sys

from eventseg.cli import main

if __name__ == "__main__":
    main(["embed", *sys.argv[1:]])
