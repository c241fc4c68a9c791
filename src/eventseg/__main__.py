"""python -m eventseg: what the stages are and which script runs each."""

STAGES = [
    ("make_synthetic", "scripts/make_synthetic.py", "write the built-in synthetic customers (events, labels, truth)"),
    ("prepare", "scripts/prepare.py", "validate events, fit encoders, build the memory-mapped sequence store"),
    ("train", "scripts/train.py", "train the sequence autoencoder (Lightning + Hydra; trainer=gpu|ddp)"),
    ("embed", "scripts/embed.py", "one float32 vector per customer -> embeddings.parquet"),
    ("cluster", "scripts/cluster.py", "HDBSCAN segments -> clusters.parquet, clusterer.npz"),
    ("pipeline", "scripts/pipeline.py", "all of the above + propensity, segments, report.html (skips up-to-date stages)"),
    ("score", "scripts/score.py", "segment and score new customers with a finished run, no retraining"),
    ("bench", "scripts/bench.py", "benchmarks: prepare | train | embed | cluster -> bench_results/*.json"),
]


def main() -> None:
    from eventseg import __version__

    print(f"eventseg {__version__}: behavioural customer embeddings and predictive segments\n")
    width = max(len(name) for name, _, _ in STAGES)
    for name, script, what in STAGES:
        print(f"  {name:<{width}}  python {script:<26} {what}")
    print("\nEvery script takes Hydra overrides (key=value, group=option); see README.md.")


if __name__ == "__main__":
    main()
