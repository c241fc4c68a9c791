"""Benchmarks that write JSON: python scripts/bench.py prepare [--sizes 1e6,5e6,2e7]

Each measurement runs in a fresh subprocess so peak memory (ru_maxrss) belongs to it alone.
Results go to bench_results/<name>.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

CACHE = Path("bench_results/cache")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_events_file(n_events: int) -> Path:
    """Tile the built-in synthetic log (new ids per copy, shuffled) to about n_events rows."""
    from eventseg.synthetic import generate_synthetic

    path = CACHE / f"events_{n_events}.parquet"
    if path.exists():
        return path
    base = generate_synthetic(n_customers=20_000, seed=0).events
    copies = int(np.ceil(n_events / len(base)))
    span = int(base.customer_id.max()) + 1
    parts = [base.assign(customer_id=base.customer_id + k * span) for k in range(copies)]
    df = pd.concat(parts, ignore_index=True).iloc[:n_events]
    df = df.iloc[np.random.default_rng(0).permutation(len(df))]
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(path, index=False, row_group_size=1_000_000)
    return path


def prepare_worker(path: str) -> dict:
    """Time one prepare of a Parquet file, from reading to the saved store."""
    from eventseg.data.schema import EventSchema
    from eventseg.prepare import prepare_events

    schema = EventSchema(categorical=("event_type", "category", "channel"), numeric=("amount",))
    raw_mb = pq.read_table(path, columns=schema.columns).nbytes / 2**20
    baseline = _rss_mb()
    t0 = time.perf_counter()
    prepared = prepare_events(path, schema, max_len=200)
    t1 = time.perf_counter()
    prepared.save(CACHE / "prepared_tmp")
    t2 = time.perf_counter()
    n = prepared.report["validation"]["rows_in"]
    peak = _peak_mb() - baseline
    return {
        "events": n,
        "customers": prepared.store.n_customers,
        "prepare_seconds": round(t1 - t0, 2),
        "save_seconds": round(t2 - t1, 2),
        "events_per_second": round(n / (t2 - t0)),
        "raw_columns_mb": round(raw_mb, 1),
        "peak_memory_over_baseline_mb": round(peak, 1),
        "peak_over_raw": round(peak / raw_mb, 2),
    }


def bench_prepare(args) -> dict:
    rows = []
    for size in [int(float(s)) for s in args.sizes.split(",")]:
        path = synthetic_events_file(size)
        out = subprocess.run([sys.executable, __file__, "_prepare_worker", str(path)], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(out.stderr)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(row))
        rows.append(row)
    return {"benchmark": "prepare", "target": "20M events < 20 s, peak < 3x raw columns", "results": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="name", required=True)
    p = sub.add_parser("prepare", help="events/s and peak memory of validate+encode+store")
    p.add_argument("--sizes", default="1e6,5e6,2e7")
    p.add_argument("--out", default=None)
    w = sub.add_parser("_prepare_worker")
    w.add_argument("path")
    args = parser.parse_args()

    if args.name == "_prepare_worker":
        print(json.dumps(prepare_worker(args.path)))
        return
    result = {"prepare": bench_prepare}[args.name](args)
    result["machine"] = {"python": platform.python_version(), "cpus": __import__("os").cpu_count()}
    out = Path(args.out or f"bench_results/{args.name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
