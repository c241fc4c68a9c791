import numpy as np
import pandas as pd
import pytest
import torch

from eventseg.data.schema import EventSchema
from eventseg.data.synthetic import generate_synthetic, write_synthetic


def make_events(n_customers: int = 50, events_per_customer: int = 20, seed: int = 0) -> pd.DataFrame:
    """Small shuffled event log with every field type the contract allows."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 2 * events_per_customer, n_customers)
    ids = np.repeat(np.arange(1000, 1000 + n_customers), counts)
    n = len(ids)
    ts = pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 300 * 86400, n), unit="s")
    event_type = rng.choice(["view", "cart", "purchase"], n, p=[0.6, 0.25, 0.15])
    amount = np.where(event_type == "purchase", rng.lognormal(3, 1, n), np.nan)
    df = pd.DataFrame(
        {
            "customer_id": ids,
            "ts": ts,
            "event_type": event_type,
            "category": rng.choice([f"cat{i}" for i in range(12)], n),
            "amount": amount,
        }
    )
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


@pytest.fixture
def one_thread():
    """The model tests' tensors are tiny: a second thread only adds barrier waits, which turn
    into long stalls when the CPU is shared with other jobs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def schema() -> EventSchema:
    return EventSchema(categorical=("event_type", "category"), numeric=("amount",))


@pytest.fixture
def events() -> pd.DataFrame:
    return make_events()


@pytest.fixture(scope="session")
def tiny_events(tmp_path_factory):
    """300 synthetic customers (about 16k events) as a Parquet file, for training tests."""
    out = tmp_path_factory.mktemp("synthetic")
    write_synthetic(generate_synthetic(n_customers=300, seed=1), out)
    return out / "events.parquet"


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, tiny_events):
    """One complete tiny pipeline run (hybrid, logistic heads, labels) shared by the tests that read
    a run folder. Read-only: a test that changes it copies it first (shutil.copytree)."""
    import subprocess
    import sys
    from pathlib import Path

    root = tmp_path_factory.mktemp("finished")
    repo = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, str(repo / "scripts" / "pipeline.py"), "data=events", f"data.path={tiny_events}",
           "data.categorical=[event_type,category,channel]", "data.numeric=[amount]", "data.max_len=40",
           f"paths.root_dir={root}", f"out_dir={root}/run", "model.d_model=32", "model.embedding_dim=8",
           "loader.batch_size=32", "loader.eval_batch_size=64", "trainer.enable_progress_bar=false",
           "trainer.accelerator=cpu", "logger=csv", "trainer.max_epochs=1", "objective=future",
           f"labels.path={tiny_events.parent / 'labels.parquet'}", "heads=logistic", "cluster.stability.n_resamples=0"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "run"
