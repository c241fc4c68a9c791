"""Benchmarks that write JSON: python scripts/bench.py prepare|train|objectives|embed|cluster [options]

Each measurement runs in a fresh subprocess so peak memory (ru_maxrss) belongs to it alone.
Results go to benchmarks/<name>.json (tracked: `python scripts/bench_tables.py` renders them into
docs/benchmarks.md; `cluster --outcomes` writes benchmarks/cluster_outcomes.json), or to --out.
Generated inputs are cached in the ignored bench_results/cache.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from eventseg.run.config import CONFIG_DIR

CACHE = Path("bench_results/cache")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_events_file(n_events: int) -> Path:
    """Tile the built-in synthetic log (new ids per copy, shuffled) to about n_events rows."""
    from eventseg.data.synthetic import generate_synthetic

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
    from eventseg.data.prepare import prepare_events

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
                     precision: str = "32-true", compile: bool = False, objective: str = "reconstruction") -> dict:
    """Training events/s of a model on random full-length batches (no padding)."""
    import lightning as L
    import torch
    from hydra import compose, initialize_config_dir

    from eventseg.data.batch import EventBatch
    from eventseg.training.module import SequenceEncoderModule

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={model_cfg}", f"objective={objective}"])
    options = {k: v for k, v in cfg.model.items() if k != "name"}
    options.update(objectives=cfg.objective.weights, contrastive=cfg.objective.contrastive, future=cfg.objective.future)
    # the layout prepare gives one numeric field: value, missing flag, then the 7 time features
    numeric = ["amount", "amount__missing", "time_log_gap", "time_first_event", "time_hour_sin", "time_hour_cos",
               "time_week_sin", "time_week_cos", "time_log_age"]
    unit = {"center": 0.0, "scale": 1.0, "clip": 5.0}
    spec = {"categorical": {"event_type": 8, "category": 34, "channel": 7}, "numeric": numeric,
            "scalers": {"amount": unit, "time_log_gap": unit, "time_log_age": unit}}
    model = SequenceEncoderModule(feature_spec=spec, **options)
    if compile:
        model.compile()
    g = torch.Generator().manual_seed(0)
    age = torch.linspace(6.0, 0.0, seq_len).expand(batch_size, seq_len)  # log1p(days to the anchor): ~400 days to 0
    batches = [
        EventBatch(
            categorical=torch.stack([torch.randint(4, c, (batch_size, seq_len), generator=g) for c in spec["categorical"].values()], -1),
            numeric=torch.cat([torch.randn(batch_size, seq_len, len(numeric) - 1, generator=g), age.unsqueeze(-1)], -1),
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
    return {"model": model_cfg, "objective": objective, "batch_size": batch_size, "seq_len": seq_len, "device": accelerator,
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


def bench_objectives(args) -> dict:
    """Training events/s of each objective at the default model size (GRU, CPU)."""
    rows = []
    for objective in args.objectives.split(","):
        for batch_size, seq_len in ((64, 50), (256, 50), (256, 200)):
            steps = max(4, int(args.events // (batch_size * seq_len)))
            rows.append(train_throughput("gru_ae", batch_size, seq_len, steps, "cpu", objective=objective))
            print(json.dumps(rows[-1]))
    base = {(r["batch_size"], r["seq_len"]): r["events_per_second"] for r in rows if r["objective"] == "reconstruction"}
    for r in rows:
        ref = base.get((r["batch_size"], r["seq_len"]))
        r["slowdown_vs_reconstruction"] = round(ref / r["events_per_second"], 2) if ref else None
    return {"benchmark": "objectives", "target": "no objective slower than 2x reconstruction at equal model size",
            "results": rows}


def random_events(n_customers: int, per_customer: int, seed: int = 0) -> pd.DataFrame:
    """Exactly `per_customer` events per customer over a year, shuffled, synthetic columns."""
    rng = np.random.default_rng(seed)
    n = n_customers * per_customer
    event_type = rng.choice(np.array(["view", "cart", "purchase", "return"]), n, p=[0.6, 0.2, 0.15, 0.05])
    df = pd.DataFrame({
        "customer_id": np.repeat(np.arange(1, n_customers + 1, dtype=np.int64) * 7919, per_customer),
        "ts": pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 365 * 86400, n), unit="s"),
        "event_type": pd.Categorical(event_type),
        "category": pd.Categorical(rng.choice(np.array([f"cat{i:02d}" for i in range(30)]), n)),
        "channel": pd.Categorical(rng.choice(np.array(["app", "web", "store"]), n)),
        "amount": np.where(event_type == "purchase", rng.lognormal(3, 1, n), np.nan),
    })
    return df.iloc[rng.permutation(n)].reset_index(drop=True)


def bench_embed(args) -> dict:
    """Customers/s of inference with the default GRU (untrained: weights do not change speed)."""
    import torch
    from hydra import compose, initialize_config_dir

    from eventseg.data.schema import EventSchema
    from eventseg.embedding.embed import Embedder
    from eventseg.training.module import SequenceEncoderModule
    from eventseg.data.prepare import encode_events, prepare_events

    schema = EventSchema(categorical=("event_type", "category", "channel"), numeric=("amount",))
    events = random_events(args.customers, args.events_per_customer)
    encoders = prepare_events(events.iloc[:1_000_000], schema, max_len=200).encoders
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        model_cfg = {k: v for k, v in compose(config_name="train").model.items() if k != "name"}
    torch.manual_seed(0)
    model = SequenceEncoderModule(feature_spec=encoders.feature_spec.to_dict(), **model_cfg)
    t = time.perf_counter()
    store = encode_events(events, encoders, max_len=200)
    encode_s = time.perf_counter() - t
    rows = []
    for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
        embedder = Embedder(model, encoders, 200, device="cpu", batch_size=batch_size)
        embedder.embed_store(store, np.arange(2 * batch_size))  # warm-up
        t = time.perf_counter()
        _, matrix = embedder.embed_store(store)
        seconds = time.perf_counter() - t
        rows.append({"batch_size": batch_size, "seconds": round(seconds, 2),
                     "customers_per_second": round(store.n_customers / seconds)})
        print(json.dumps(rows[-1]))
    return {"benchmark": "embed", "target": ">= 5,000 customers/s (default GRU, 50 events each, this CPU)",
            "customers": store.n_customers, "events": store.n_events, "torch_threads": torch.get_num_threads(),
            "encode_events_seconds": round(encode_s, 2), "results": rows}


def planted_embeddings(n: int, dim: int = 64, k: int = 8, seed: int = 0):
    """(ids, float32 [n, dim], truth): k unequal Gaussian segments in a 16-d subspace, 5%
    background noise (truth -1) and a 10% clump of near-identical one-event customers (truth k)."""
    rng = np.random.default_rng(seed)
    n_noise, n_clump = int(0.05 * n), int(0.10 * n)
    n_seg = n - n_noise - n_clump
    y = rng.choice(k, n_seg, p=rng.dirichlet(np.full(k, 2.0)))
    centers, spread = rng.normal(0, 4.0, (k, 16)), rng.uniform(0.5, 1.5, k)
    z = centers[y] + rng.normal(0, 1, (n_seg, 16)) * spread[y, None]
    z_noise = rng.uniform(z.min(0), z.max(0), (n_noise, 16))
    W = rng.normal(0, 1 / 4, (16, dim))
    X = np.empty((n, dim), dtype=np.float32)
    X[:n_seg] = z @ W + rng.normal(0, 0.3, (n_seg, dim))
    X[n_seg:n_seg + n_noise] = z_noise @ W + rng.normal(0, 0.3, (n_noise, dim))
    X[n_seg + n_noise:] = rng.normal(0, 2, dim) + rng.normal(0, 1e-3, (n_clump, dim))
    truth = np.concatenate([y, np.full(n_noise, -1), np.full(n_clump, k)])
    perm = rng.permutation(n)
    return np.arange(n, dtype=np.int64) + 10_000_000, X[perm], truth[perm]


def cluster_worker(embeddings: str, out_dir: str, outcomes: str | None = None) -> dict:
    """The cluster stage end to end (load, fit on a sample, dense groups, broad segments and their
    stability, micro-segments, place everyone, write)."""
    t0 = time.perf_counter()
    from eventseg.segmentation.clusterer import cluster_from_config

    result = cluster_from_config({"embeddings": embeddings, "out_dir": out_dir, "outcomes": outcomes, "cluster": {}})
    metrics = json.loads((Path(out_dir) / "cluster_metrics.json").read_text())
    return {"wall_seconds": round(time.perf_counter() - t0, 1), "peak_rss_mb": round(_peak_mb()),
            **{k: result[k] for k in ("rows", "n_clusters", "n_subsegments", "coverage", "largest_share",
                                      "broad_space", "broad_stability", "dense_groups", "seconds")},
            "stage_seconds": metrics["seconds"]}


def planted_outcomes(ids: np.ndarray, truth: np.ndarray) -> pd.DataFrame:
    """Two propensity-like scores that depend on the planted group plus noise (for the outcome-aware path)."""
    rng = np.random.default_rng(1)
    base = rng.normal(0, 1.5, int(truth.max()) + 2)[truth + 1]
    logit = np.stack([base + rng.normal(0, 0.7, len(ids)), -0.5 * base + rng.normal(0, 0.7, len(ids))])
    return pd.DataFrame({"customer_id": ids, "p_buy": 1 / (1 + np.exp(-logit[0])), "p_churn": 1 / (1 + np.exp(-logit[1]))})


def bench_cluster(args) -> dict:
    from sklearn.metrics import adjusted_rand_score

    from eventseg.embedding.embed import write_embeddings

    rows = []
    for n in [int(float(s)) for s in args.sizes.split(",")]:
        ids, X, truth = planted_embeddings(n)
        folder = CACHE / f"cluster_{n}"
        write_embeddings(ids, X, folder / "embeddings.parquet")
        del X
        extra = []
        if args.outcomes:
            planted_outcomes(ids, truth).to_parquet(folder / "propensity_scores.parquet", index=False)
            extra = ["--outcomes", str(folder / "propensity_scores.parquet")]
        out = subprocess.run([sys.executable, __file__, "_cluster_worker", str(folder / "embeddings.parquet"), str(folder),
                              *extra], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-3000:])
        row = {"customers": n, **json.loads(out.stdout.strip().splitlines()[-1])}
        placed = pd.read_parquet(folder / "clusters.parquet").set_index("customer_id").loc[ids]
        labels = placed["subsegment"].to_numpy()
        both = (truth >= 0) & (labels >= 0)
        row["micro_ari_vs_planted_non_noise"] = round(float(adjusted_rand_score(truth[both], labels[both])), 4)
        print(json.dumps(row))
        rows.append(row)
    return {"benchmark": "cluster", "target": "1M customers x 64 dims end to end <= 5 min on 2 cores", "outcomes": bool(args.outcomes), "results": rows}


def planted_migration_measures(assignments: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """The synthetic targets: monthly churn among customers whose archetype did not change, and
    the share of planted migrations seen as a move to another segment within two periods."""
    seg = assignments.pivot(index="customer_id", columns="cutoff", values="segment")
    cutoffs = list(seg.columns)
    truth = truth.set_index("customer_id").reindex(seg.index)
    stable = truth["migration_date"].isna().to_numpy()
    churn = []
    for a, b in zip(cutoffs, cutoffs[1:]):
        both = seg[a].notna() & seg[b].notna() & stable
        churn.append(round(float((seg.loc[both, a] != seg.loc[both, b]).mean()), 4))
    seen, detected = 0, 0
    dates = truth["migration_date"]
    for i, a in enumerate(cutoffs[:-2]):  # migrations between cutoff i and i+1, followed by two periods
        movers = (dates >= a) & (dates < cutoffs[i + 1]) & seg[a].notna()
        before = seg.loc[movers, a]
        moved = (seg.loc[movers, cutoffs[i + 1]] != before) | (seg.loc[movers, cutoffs[i + 2]] != before)
        seen += int(movers.sum())
        detected += int(moved.sum())
    return {"stable_customer_churn_per_period": churn, "max_stable_churn": max(churn) if churn else None,
            "planted_migrations_checked": seen,
            "migrations_moved_within_two_periods": round(detected / seen, 4) if seen else None}


def tiled_synthetic(n_customers: int, months: int) -> tuple[Path, pd.DataFrame]:
    """The synthetic default's history plus `months` later months, tiled (new ids per copy) to about
    n_customers; its truth table tiled the same way. The first copy is the default data itself."""
    from eventseg.data.synthetic import generate_synthetic

    path = CACHE / f"monitor_events_{n_customers}_{months}.parquet"
    data = generate_synthetic(n_customers=20_000, seed=0, months_after=months)
    copies = int(np.ceil(n_customers / 20_000))
    span = int(data.truth.customer_id.max()) + 1
    truth = pd.concat([data.truth.assign(customer_id=data.truth.customer_id + k * span) for k in range(copies)],
                      ignore_index=True)
    if not path.exists():
        full = data.events_full()
        parts = [full.assign(customer_id=full.customer_id + k * span) for k in range(copies)]
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.concat(parts, ignore_index=True).to_parquet(path, index=False, row_group_size=1_000_000)
    return path, truth


def bench_monitor(args) -> dict:
    """scripts/monitor.py's work at scale: the synthetic default run, its customers tiled to
    --customers, re-scored at --cutoffs monthly dates from the run's cutoff."""
    from eventseg.apps.monitor import monitor_run

    run = Path(args.run)
    if not (run / "run.json").exists():
        done = subprocess.run([sys.executable, "scripts/pipeline.py", f"out_dir={run}"], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-3000:])
    events, truth = tiled_synthetic(args.customers, max(args.cutoffs, 3))
    cutoffs = [str((pd.Timestamp("2026-01-01") + pd.DateOffset(months=m)).date()) for m in range(args.cutoffs)]
    work = CACHE / "monitor_run"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(run, work, ignore=shutil.ignore_patterns("monitor", "logs"))
    t0 = time.perf_counter()
    summary = monitor_run(work, str(events), cutoffs, purchase_filter="event_type == purchase", report=False)
    seconds = time.perf_counter() - t0
    assignments = pd.read_parquet(work / "monitor" / "assignments.parquet", columns=["customer_id", "cutoff", "segment"])
    return {"benchmark": "monitor", "target": "1M customers x 6 cutoffs <= 10 min on 2 cores; synthetic: stable "
            "customers' monthly churn <= 15%, >= 70% of planted migrations move within two periods",
            "customers": int(assignments["customer_id"].nunique()), "cutoffs": cutoffs,
            "wall_seconds": round(seconds, 1), "seconds_per_cutoff": summary["seconds_per_cutoff"],
            "peak_rss_mb": round(_peak_mb()), "stickiness": summary["stickiness"],
            "membership_churn": [p["membership_churn"] for p in summary["periods"]],
            "rfm_kmeans_churn": [p["rfm_kmeans_churn"] for p in summary["periods"]],
            **planted_migration_measures(assignments, truth),
            "alerts": [len(p["alerts"]) for p in summary["periods"]], "refresh_recommended": summary["refresh_recommended"]}


def bench_lookalike(args) -> dict:
    """The lookalike speed target on --customers x 64 planted-cluster vectors (centred, unit rows):
    the approximate index (faiss IVF) built over every customer plus --queries searches, against
    exact search (recall at 10 counts a returned vector as right when it is as similar as the
    exact 10th: the planted clump holds exact ties); then LookalikeScorer fit + score of every
    customer against each --seeds count drawn from the largest planted cluster (exact or
    approximate as 'auto' picks), the approximate one checked against exact on a sample."""
    from eventseg.apps.lookalike.index import ExactIndex, IVFIndex
    from eventseg.apps.lookalike.scoring import LookalikeScorer, unit_rows

    _, X, truth = planted_embeddings(args.customers, dim=64)
    X = unit_rows(X - X.mean(axis=0))
    rng = np.random.default_rng(1)
    queries = X[rng.choice(len(X), args.queries, replace=False)]
    t0 = time.perf_counter()
    ann = IVFIndex(X, nprobe=args.nprobe)
    t1 = time.perf_counter()
    got, _ = ann.search(queries, 10)
    t2 = time.perf_counter()
    want, _ = ExactIndex(X).search(queries, 10)
    t3 = time.perf_counter()
    index = {"vectors": len(X), "queries": args.queries, "nlist": ann.nlist, "nprobe": ann.nprobe,
             "ann_build_seconds": round(t1 - t0, 2), "ann_query_seconds": round(t2 - t1, 2),
             "ann_build_plus_queries_seconds": round(t2 - t0, 2), "exact_query_seconds": round(t3 - t2, 2),
             "recall_at_10_vs_exact": round(float(np.mean(got >= want[:, -1:] - 1e-5)), 4)}
    print(json.dumps(index))
    del ann
    largest = np.flatnonzero(truth == np.bincount(truth[truth >= 0]).argmax())
    rows = []
    for n_seeds in [int(float(s)) for s in args.seeds.split(",")]:
        seeds = X[rng.choice(largest, min(n_seeds, len(largest)), replace=False)]
        t0 = time.perf_counter()
        scorer = LookalikeScorer(nprobe=args.nprobe).fit(seeds)
        similarity = scorer.score(X)
        row = {"seeds": len(seeds), "customers": len(X), "index_used": scorer.index_kind_,
               "fit_plus_score_seconds": round(time.perf_counter() - t0, 2),
               "largest_cluster_share_of_top_100k": round(float(np.isin(np.argsort(-similarity)[:100_000], largest).mean()), 4)}
        if scorer.index_kind_ == "ann":  # the same scores, exact, on a sample: does the audience change?
            rows_ = rng.choice(len(X), 20_000, replace=False)
            exact = LookalikeScorer(index="exact").fit(seeds).score(X[rows_])
            top = int(0.1 * len(rows_))
            row["sample_top10pct_overlap_with_exact"] = round(len(set(np.argsort(-exact)[:top])
                                                                  & set(np.argsort(-similarity[rows_])[:top])) / top, 4)
        print(json.dumps(row))
        rows.append(row)
    return {"benchmark": "lookalike", "target": "1M customers x 64 dims: index build + 1,000 queries <= 60 s on 2 cores",
            "threads": int(__import__("torch").get_num_threads()), "index": index, "scorer": rows}


def _commit() -> str | None:
    """The checkout's commit (with '+changes' when the tree differs from it), so a figure names its code."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+changes" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="name", required=True)
    p = sub.add_parser("prepare", help="events/s and peak memory of validate+encode+store")
    p.add_argument("--sizes", default="1e6,5e6,2e7")
    p.add_argument("--out", default=None)
    t = sub.add_parser("train", help="training events/s per model, batch size and sequence length")
    t.add_argument("--events", type=float, default=4e5, help="events per CPU measurement")
    t.add_argument("--out", default=None)
    o = sub.add_parser("objectives", help="training events/s of each objective vs reconstruction (GRU, CPU)")
    o.add_argument("--objectives", default="reconstruction,contrastive,future,contrastive_future,reconstruction_contrastive")
    o.add_argument("--events", type=float, default=4e5, help="events per measurement")
    o.add_argument("--out", default=None)
    e = sub.add_parser("embed", help="inference customers/s for the default GRU")
    e.add_argument("--customers", type=int, default=100_000)
    e.add_argument("--events-per-customer", type=int, default=50)
    e.add_argument("--batch-sizes", default="128,256,1024")
    e.add_argument("--out", default=None)
    c = sub.add_parser("cluster", help="cluster stage wall time and peak memory on planted embeddings")
    c.add_argument("--sizes", default="1e5,1e6")
    c.add_argument("--outcomes", action="store_true", help="broad segments from planted propensity scores")
    c.add_argument("--out", default=None)
    m = sub.add_parser("monitor", help="monitor.py at scale, and churn / planted-migration detection on synthetic")
    m.add_argument("--customers", type=int, default=1_000_000)
    m.add_argument("--cutoffs", type=int, default=6)
    m.add_argument("--run", default="bench_results/cache/synthetic_run", help="a synthetic default run (made if missing)")
    m.add_argument("--out", default=None)
    la = sub.add_parser("lookalike", help="lookalike index build + queries and scorer time on planted 1M x 64")
    la.add_argument("--customers", type=int, default=1_000_000)
    la.add_argument("--queries", type=int, default=1_000)
    la.add_argument("--seeds", default="1000,100000", help="seed counts for the scorer measurement")
    la.add_argument("--nprobe", type=int, default=16)
    la.add_argument("--out", default=None)
    cw = sub.add_parser("_cluster_worker")
    cw.add_argument("embeddings")
    cw.add_argument("out_dir")
    cw.add_argument("--outcomes", default=None)
    w = sub.add_parser("_prepare_worker")
    w.add_argument("path")
    args = parser.parse_args()

    if args.name == "_prepare_worker":
        print(json.dumps(prepare_worker(args.path)))
        return
    if args.name == "_cluster_worker":
        print(json.dumps(cluster_worker(args.embeddings, args.out_dir, args.outcomes)))
        return
    benches = {"prepare": bench_prepare, "train": bench_train, "objectives": bench_objectives, "embed": bench_embed, "cluster": bench_cluster,
               "monitor": bench_monitor, "lookalike": bench_lookalike}
    result = benches[args.name](args)
    result["machine"] = {"python": platform.python_version(), "cpus": __import__("os").cpu_count(),
                         "load_average_at_end": list(__import__("os").getloadavg())}
    result["measured"] = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": _commit()}
    name = "cluster_outcomes" if getattr(args, "outcomes", False) else args.name
    out = Path(args.out or f"benchmarks/{name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
