"""Evidence about the product itself: `evaluate` trains several objectives on one data set and
probes their embeddings against the aggregates with paired intervals."""
