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


class _StepTimer:
    """Times training steps after a warm-up, excluding Lightning's set-up and tear-down."""

    def __init__(self, warmup: int):
        import lightning as L

        class Timer(L.Callback):
            def __init__(inner):
                inner.start = inner.end = None

            def on_train_batch_start(inner, trainer, *a):
                if trainer.global_step == warmup:
                    inner.start = time.perf_counter()

            def on_train_batch_end(inner, trainer, *a):
                inner.end = time.perf_counter()

        self.callback = Timer()

    @property
    def seconds(self) -> float:
        return self.callback.end - self.callback.start


def train_throughput(model_cfg: str, batch_size: int, seq_len: int, steps: int, accelerator: str,
                     precision: str = "32-true", compile: bool = False) -> dict:
    """Training events/s of a model on random full-length batches (no padding)."""
    import lightning as L
    import torch
    from hydra import compose, initialize_config_dir

    from eventseg.data.batch import EventBatch
    from eventseg.models.autoencoder import SequenceAutoencoder

    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={model_cfg}"])
    options = {k: v for k, v in cfg.model.items() if k != "name"}
    spec = {"categorical": {"event_type": 8, "category": 34, "channel": 7}, "numeric": [f"x{i}" for i in range(9)]}
    model = SequenceAutoencoder(feature_spec=spec, **options)
    if compile:
        model.compile()
    g = torch.Generator().manual_seed(0)
    batches = [
        EventBatch(
            categorical=torch.stack([torch.randint(4, c, (batch_size, seq_len), generator=g) for c in spec["categorical"].values()], -1),
            numeric=torch.randn(batch_size, seq_len, len(spec["numeric"]), generator=g),
            lengths=torch.full((batch_size,), seq_len),
            customer_index=torch.arange(batch_size),
        )
        for _ in range(4)
    ]
    warmup = 3
    loader = torch.utils.data.DataLoader([batches[i % 4] for i in range(steps + warmup)], batch_size=None)
    timer = _StepTimer(warmup)
    trainer = L.Trainer(accelerator=accelerator, devices=1, precision=precision, max_steps=steps + warmup,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[timer.callback], limit_val_batches=0)
    trainer.fit(model, train_dataloaders=loader)
    events = steps * batch_size * seq_len
    return {"model": model_cfg, "batch_size": batch_size, "seq_len": seq_len, "device": accelerator,
            "precision": precision, "compile": compile, "steps": steps,
            "events_per_second": round(events / timer.seconds)}


def bench_train(args) -> dict:
    import torch

    rows = []
    for model_cfg in ("gru_ae", "transformer_ae"):
        for batch_size in (64, 256):
            for seq_len in (50, 200):
                steps = max(4, int(args.events // (batch_size * seq_len)))
                rows.append(train_throughput(model_cfg, batch_size, seq_len, steps, "cpu"))
                print(json.dumps(rows[-1]))
    if torch.cuda.is_available():
        for model_cfg in ("gru_ae", "transformer_ae"):
            for compile in (False, True):
                for batch_size, seq_len in ((256, 50), (1024, 50), (1024, 200)):
                    rows.append(train_throughput(model_cfg, batch_size, seq_len, 50, "gpu", "bf16-mixed", compile))
                    print(json.dumps(rows[-1]))
    return {"benchmark": "train", "target": ">= 2M events/s for the default GRU on an H100 (bf16-mixed)",
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None, "results": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="name", required=True)
    p = sub.add_parser("prepare", help="events/s and peak memory of validate+encode+store")
    p.add_argument("--sizes", default="1e6,5e6,2e7")
    p.add_argument("--out", default=None)
    t = sub.add_parser("train", help="training events/s per model, batch size and sequence length")
    t.add_argument("--events", type=float, default=4e5, help="events per CPU measurement")
    t.add_argument("--out", default=None)
    w = sub.add_parser("_prepare_worker")
    w.add_argument("path")
    args = parser.parse_args()

    if args.name == "_prepare_worker":
        print(json.dumps(prepare_worker(args.path)))
        return
    result = {"prepare": bench_prepare, "train": bench_train}[args.name](args)
    result["machine"] = {"python": platform.python_version(), "cpus": __import__("os").cpu_count()}
    out = Path(args.out or f"bench_results/{args.name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
