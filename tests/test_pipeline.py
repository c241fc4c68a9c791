"""The end-to-end job on tiny data: outputs, skipping of up-to-date stages, --force."""

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from eventseg.training.store import run_checkpoint
from test_train import ROOT, tiny_overrides

STAGES = ("prepare", "train", "embed", "propensity", "cluster", "segments", "metrics", "report")


@pytest.mark.slow
def test_pipeline_runs_skips_and_forces(tmp_path, tiny_events):
    labels = tiny_events.parent / "labels.parquet"
    shutil.copy(tiny_events, tmp_path / "events.parquet")  # reached through a config interpolation below
    cmd = [sys.executable, str(ROOT / "scripts" / "pipeline.py"), *tiny_overrides(tmp_path, tiny_events), "data.path=${paths.root_dir}/events.parquet",
           "trainer.max_epochs=2", f"labels.path={labels}", "heads=logistic", "cluster.stability.n_resamples=2"]
    first = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    out = tmp_path / "run"
    n_customers = pd.read_parquet(tiny_events).customer_id.nunique()

    emb = pd.read_parquet(out / "embeddings.parquet")
    assert len(emb) == n_customers
    assert json.loads((out / "embeddings.parquet.json").read_text())["rows"] == len(emb)
    customers = pd.read_parquet(out / "customers.parquet")
    assert len(customers) == n_customers and customers["customer_id"].is_unique  # everyone exactly once
    assert {"segment", "segment_name", "membership_strength", "is_outlier", "p_purchase_within_30d",
            "tier_churn_30d"} <= set(customers.columns)
    segments = pd.read_parquet(out / "segments.parquet")
    for level in ("broad", "micro"):  # everyone once per level (outliers are a broad row)
        assert segments.loc[segments["level"] == level, "size"].sum() == n_customers - (
            0 if level == "broad" else int(customers["is_outlier"].sum()))
    assert (out / "segments.csv").exists() and (out / "report.html").exists()
    metrics = json.loads((out / "propensity_metrics.json").read_text())
    assert {"heads", "rfm_logistic", "aggregate_hgb"} <= set(metrics["test"]["purchase_within_30d"])
    broad = segments[(segments["level"] == "broad") & (segments["segment"] >= 0)]
    assert broad["action"].str.len().gt(0).all() and broad["rule"].notna().all()
    test_ids = pd.read_parquet(out / "propensity_scores.parquet").query("split == 'test'")["customer_id"]
    assert broad["observed_n"].sum() <= len(test_ids)  # observed outcomes of held-out customers only
    summary = json.loads((out / "metrics.json").read_text())  # the run in one file
    assert summary["data"]["customers"] == n_customers
    assert summary["segments"]["n_broad"] == customers.loc[customers["segment"] >= 0, "segment"].nunique()
    assert summary["propensity"]["purchase_within_30d"]["verdict"] in summary["verdict"]

    second = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    for stage in STAGES:
        assert f"[{stage}] up to date, skipped" in second.stdout

    forced = subprocess.run(cmd + ["--force"], capture_output=True, text=True, cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr[-3000:]
    assert all(f"[{stage}] running" in forced.stdout for stage in STAGES)
    assert "skipped" not in forced.stdout

    # score.py: unseen customers (new ids, an unseen category) get segments and scores, no retraining
    events = pd.read_parquet(tiny_events)
    new = events[events.customer_id.isin(events.customer_id.unique()[:25])].copy()
    new["customer_id"] = new["customer_id"] + 10**9
    new.loc[new.index[::3], "category"] = "brand_new_category"
    new.to_parquet(tmp_path / "new_events.parquet")
    stored = run_checkpoint(out)  # the forced retrain trained the same weights: the entry was kept
    checkpoint_mtime = stored.stat().st_mtime
    scored = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "score.py"), f"run_dir={out}", "data=events",
         f"data.path={tmp_path / 'new_events.parquet'}", f"paths.root_dir={tmp_path}"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert scored.returncode == 0, scored.stderr[-3000:]
    new_customers = pd.read_parquet(out / "scored" / "customers.parquet")
    assert sorted(new_customers["customer_id"]) == sorted(new["customer_id"].unique())
    assert new_customers["p_purchase_within_30d"].between(0, 1).all()
    assert new_customers["segment_name"].notna().all()
    assert set(new_customers["segment"]) <= set(segments.loc[segments["level"] == "broad", "segment"])
    assert set(new_customers["subsegment"]) - {-1} <= set(segments.loc[segments["level"] == "micro", "segment"])
    assert stored.stat().st_mtime == checkpoint_mtime and run_checkpoint(out) == stored


@pytest.mark.slow
def test_hybrid_representation_pipeline_and_scoring(tmp_path, tiny_events):
    """representation=hybrid: clustering and heads see embedding ++ aggregates, score.py
    rebuilds the same columns for new customers, and switching back drops the hybrid file."""
    labels = tiny_events.parent / "labels.parquet"
    cmd = [sys.executable, str(ROOT / "scripts" / "pipeline.py"), *tiny_overrides(tmp_path, tiny_events),
           "trainer.max_epochs=1", "objective=future", f"labels.path={labels}", "heads=logistic",
           "cluster.stability.n_resamples=0", "representation=hybrid"]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / "run"
    assert "[represent] running" in run.stdout
    emb = pd.read_parquet(out / "embeddings.parquet")
    rep = pd.read_parquet(out / "representation.parquet")
    assert rep.customer_id.tolist() == emb.customer_id.tolist()
    assert len(rep.embedding.iloc[0]) > len(emb.embedding.iloc[0])  # aggregate columns appended
    assert json.loads((out / "cluster_metrics.json").read_text())["embedding_dim"] == len(rep.embedding.iloc[0])
    assert (out / "hybrid.json").exists()
    assert "Embedding + aggregates (hybrid) map" in (out / "report.html").read_text()

    events = pd.read_parquet(tiny_events)
    new = events[events.customer_id.isin(events.customer_id.unique()[:10])].assign(customer_id=lambda d: d.customer_id + 10**9)
    new.to_parquet(tmp_path / "new_events.parquet")
    scored = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "score.py"), f"run_dir={out}", "data=events",
         f"data.path={tmp_path / 'new_events.parquet'}", f"paths.root_dir={tmp_path}"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert scored.returncode == 0, scored.stderr[-3000:]
    assert pd.read_parquet(out / "scored" / "customers.parquet")["p_purchase_within_30d"].between(0, 1).all()

    back = subprocess.run(cmd[:-1] + ["representation=embedding"], capture_output=True, text=True, cwd=tmp_path)
    assert back.returncode == 0, back.stderr[-3000:]
    assert "[cluster] running" in back.stdout and "[train] up to date, skipped" in back.stdout
    assert not (out / "hybrid.json").exists() and not (out / "representation.parquet").exists()


@pytest.mark.slow
def test_cutoff_route_without_a_labels_file_runs_to_the_report(tmp_path, tiny_events):
    """data.cutoff and no labels.path: labels are built from the events after the cutoff, and
    every stage (the report included) runs on them."""
    last = pd.read_parquet(tiny_events)["ts"].max()
    cutoff = (last - pd.Timedelta(days=40)).strftime("%Y-%m-%d")
    cmd = [sys.executable, str(ROOT / "scripts" / "pipeline.py"), *tiny_overrides(tmp_path, tiny_events),
           "trainer.max_epochs=1", f"data.cutoff={cutoff}", "heads=logistic", "cluster.stability.n_resamples=0"]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / "run"
    assert (out / "report.html").exists()
    customers = pd.read_parquet(out / "customers.parquet")
    assert "p_purchase_within_30d" in customers.columns
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


@pytest.mark.slow
def test_cutoff_after_every_event_fails_in_one_line_before_training(tmp_path, tiny_events):
    """data.cutoff after the last event leaves an empty label window: a one-line error naming the
    last event, before any model is trained and without a half-written report."""
    last = pd.read_parquet(tiny_events)["ts"].max()
    cutoff = (last + pd.Timedelta(days=5)).strftime("%Y-%m-%d")
    cmd = [sys.executable, str(ROOT / "scripts" / "pipeline.py"), *tiny_overrides(tmp_path, tiny_events),
           "trainer.max_epochs=1", f"data.cutoff={cutoff}", "heads=logistic"]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 2, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    error = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "no events after the cutoff" in error[0]
    out = tmp_path / "run"
    assert not list(out.glob("checkpoints/*.ckpt")) and not (tmp_path / "checkpoints").exists()
    assert not (out / "report.html").exists()
