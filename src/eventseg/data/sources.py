"""Named data sources a data config can point at: a file, the synthetic default, Complete Journey.

Each returns something `read_events` accepts (a path or a DataFrame), so the rest of the
pipeline never knows where the events came from. Complete Journey also has household
demographics, which `completejourney_demographic_labels` turns into probe labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd


def resolve_source(data_cfg: Mapping[str, Any]) -> str | pd.DataFrame:
    kind = data_cfg.get("source", "file")
    if kind == "file":
        return str(_file_path(data_cfg))
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
    if kind == "file":
        return [_file_path(data_cfg)]
    return [Path(data_cfg["path"])] if data_cfg.get("path") else []


def _file_path(data_cfg: Mapping[str, Any]) -> Path:
    """data.path of a file source; unset fails here, before any stage runs."""
    if not data_cfg.get("path"):
        raise ValueError("data.path is not set: point it at a Parquet file/directory or a CSV file of events")
    return Path(data_cfg["path"])


def ensure_synthetic(data_cfg: Mapping[str, Any]) -> Path:
    """Generate the built-in synthetic customers on first use, then reuse the files."""
    path = Path(data_cfg["path"])
    if not path.exists():
        from eventseg.data.synthetic import generate_synthetic, write_synthetic

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


# Complete Journey demographics answer brackets, split at the probes' thresholds. Every known
# bracket is listed, so a renamed or new one fails loudly instead of landing on the wrong side.
INCOME_UNDER_50K = ("Under 15K", "15-24K", "25-34K", "35-49K")
INCOME_50K_PLUS = ("50-74K", "75-99K", "100-124K", "125-149K", "150-174K", "175-199K", "200-249K", "250K+")
AGE_UNDER_45 = ("19-24", "25-34", "35-44")
AGE_45_PLUS = ("45-54", "55-64", "65+")


def _bracket_label(values: pd.Series, positive: tuple, negative: tuple, column: str) -> pd.Series:
    """1.0 / 0.0 by bracket, NaN where the answer is missing."""
    text = values.astype("string")
    unknown = sorted(set(text.dropna()) - set(positive) - set(negative))
    if unknown:
        raise ValueError(f"demographics column '{column}' has unknown bracket(s) {unknown}; known: {[*negative, *positive]}")
    return text.isin(positive).astype(np.float64).where(text.notna())


def completejourney_demographic_labels(raw_dir: str | Path) -> pd.DataFrame:
    """Probe labels from the demographics of the 801 households that have them.

    `household_id`, `income_over_50k` (income bracket 50-74K or above) and `age_45_plus`
    (age bracket 45-54 or above): 1.0 / 0.0, NaN where the household did not answer. These
    are things a purchase history implies but never states, so they test what an embedding
    learned beyond the aggregates.
    """
    path = Path(raw_dir) / "demographics.parquet"
    if not path.exists():
        raise FileNotFoundError(f"Complete Journey demographics not found: {path} (set data.raw_dir to the folder holding it)")
    demo = pd.read_parquet(path, columns=["household_id", "income", "age"])
    return pd.DataFrame({
        "household_id": demo["household_id"].to_numpy(),
        "income_over_50k": _bracket_label(demo["income"], INCOME_50K_PLUS, INCOME_UNDER_50K, "income").to_numpy(),
        "age_45_plus": _bracket_label(demo["age"], AGE_45_PLUS, AGE_UNDER_45, "age").to_numpy(),
    })
