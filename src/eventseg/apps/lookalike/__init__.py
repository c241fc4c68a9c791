"""Lookalike audiences from a finished run: customers ranked by similarity to a seed set in the
run's representation (or embedding) space.

- seeds.py: a seed file or a `top:<column>:<share>` query, resolved to the run's customers;
- space.py: which matrix of the run, centred for cosine similarity;
- index.py: exact or approximate (faiss IVF) nearest-neighbour search, chosen by size;
- scoring.py: `LookalikeScorer`, centroid + k-nearest-seed similarity (scikit-learn contract);
- evidence.py: held-out seed recall and lift, observed outcomes against random;
- api.py: `find_lookalikes(run_dir, seeds, k=...)` writing <run>/lookalikes/<name>.parquet.
"""

from eventseg.apps.lookalike.api import find_lookalikes, lookalike_from_config
from eventseg.apps.lookalike.scoring import LookalikeScorer

__all__ = ["LookalikeScorer", "find_lookalikes", "lookalike_from_config"]
