"""Are two run folders the same result? python scripts/compare_runs.py RUN_A RUN_B

Kept for restructurings that must not change behaviour: the embeddings, the aggregates, the
representation, the propensity scores, the clusters, the customers and the segments of two runs
are compared value by value (exactly: same columns, dtypes, order and bits) and the metrics files
key by key, ignoring only what records when and where a run happened. Exit status 1 when
anything differs, with one line per difference.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

TABLES = ("embeddings.parquet", "aggregates.parquet", "representation.parquet", "propensity_scores.parquet",
          "clusters.parquet", "customers.parquet", "segments.parquet")
JSONS = ("propensity_metrics.json", "cluster_metrics.json", "segment_metrics.json")
# bookkeeping that differs between two identical computations: clocks, paths, durations
VOLATILE = {"seconds", "elapsed_s", "created", "finished", "started", "run_dir", "path", "paths", "duration_s",
            "wall_s", "fit_seconds", "time_s", "timings"}


def table_differences(a: Path, b: Path) -> list[str]:
    if not a.exists() and not b.exists():
        return []
    if a.exists() != b.exists():
        return [f"{a.name}: only in {a.parent if a.exists() else b.parent}"]
    left, right = pd.read_parquet(a), pd.read_parquet(b)
    if list(left.columns) != list(right.columns):
        return [f"{a.name}: columns differ: {sorted(set(left.columns) ^ set(right.columns))}"]
    if left.shape != right.shape:
        return [f"{a.name}: shape {left.shape} vs {right.shape}"]
    out = []
    for col in left.columns:
        x, y = left[col], right[col]
        if x.dtype != y.dtype:
            out.append(f"{a.name}: {col} dtype {x.dtype} vs {y.dtype}")
        elif not x.equals(y):
            if x.dtype.kind == "f":
                out.append(f"{a.name}: {col} differs, max |diff| {float((x - y).abs().max()):.3g}")
            else:
                out.append(f"{a.name}: {col} differs in {int((x.astype(str) != y.astype(str)).sum())} rows")
    return out


def json_differences(a, b, where: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted((set(a) | set(b)) - VOLATILE)
        return [d for k in keys for d in json_differences(a.get(k), b.get(k), f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in json_differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {str(a)[:60]} vs {str(b)[:60]}"]


def compare_runs(run_a: Path, run_b: Path) -> list[str]:
    out = [d for name in TABLES for d in table_differences(run_a / name, run_b / name)]
    for name in JSONS:
        a, b = run_a / name, run_b / name
        if a.exists() and b.exists():
            out += json_differences(json.loads(a.read_text()), json.loads(b.read_text()), name)
        elif a.exists() != b.exists():
            out.append(f"{name}: only in one run")
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    differences = compare_runs(Path(argv[0]), Path(argv[1]))
    for line in differences:
        print(line)
    print("identical" if not differences else f"{len(differences)} difference(s)")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
