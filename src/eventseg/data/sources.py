"""Named data sources a data config can point at: a file, the synthetic default, Complete Journey.

Each returns something `read_events` accepts (a path or a DataFrame), so the rest of the
pipeline never knows where the events came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import pandas as pd


def resolve_source(data_cfg: Mapping[str, Any]) -> str | pd.DataFrame:
    kind = data_cfg.get("source", "file")
    if kind == "file":
        if not data_cfg.get("path"):
            raise ValueError("data.path is not set: point it at a Parquet file/directory or a CSV file of events")
        return str(data_cfg["path"])
    if kind == "synthetic":
        return str(ensure_synthetic(data_cfg))
    if kind == "completejourney":
        return load_completejourney(data_cfg["raw_dir"])
    raise ValueError(f"unknown data.source {kind!r}; use one of: file, synthetic, completejourney")


def source_files(data_cfg: Mapping[str, Any]) -> list[Path]:
    """The files a source reads (generating the synthetic data first), for up-to-date checks."""
    kind = data_cfg.get("source", "file")
    if kind == "synthetic":
        return [ensure_synthetic(data_cfg)]
    if kind == "completejourney":
        return [Path(data_cfg["raw_dir"]) / name for name in ("transactions_sample.parquet", "products.parquet")]
    return [Path(data_cfg["path"])] if data_cfg.get("path") else []


def ensure_synthetic(data_cfg: Mapping[str, Any]) -> Path:
    """Generate the built-in synthetic customers on first use, then reuse the files."""
    path = Path(data_cfg["path"])
    if not path.exists():
        from eventseg.synthetic import generate_synthetic, write_synthetic

        gen = data_cfg.get("synthetic", {}) or {}
        data = generate_synthetic(n_customers=int(gen.get("n_customers", 20_000)), seed=int(gen.get("seed", 0)))
        write_synthetic(data, path.parent)
    return path


def load_completejourney(raw_dir: str | Path) -> pd.DataFrame:
    """Transactions joined to product metadata, so department and category are event fields."""
    raw_dir = Path(raw_dir)
    tx_file, products_file = raw_dir / "transactions_sample.parquet", raw_dir / "products.parquet"
    for f in (tx_file, products_file):
        if not f.exists():
            raise FileNotFoundError(f"Complete Journey file not found: {f} (set data.raw_dir to the folder holding it)")
    tx = pd.read_parquet(tx_file)
    products = pd.read_parquet(products_file, columns=["product_id", "department", "product_category", "brand"])
    return tx.merge(products, on="product_id", how="left", validate="many_to_one")
