"""The embed stage: a trained encoder plus a sequence store in, one vector per customer out
(`embeddings.parquet`), in bounded batches; also the reader other stages use."""
