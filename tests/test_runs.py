"""Trustworthy runs: one writer per out_dir, a manifest readers verify, content fingerprints,
trained models shared through the model store and verified before use, checkpoints that refuse
another run's resume, and one-line user errors (exit 2)."""

import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import torch

from eventseg.training.checkpoint import CheckpointError
from eventseg.run.errors import RunError
from eventseg.run.manifest import RunLock, content_hash, mark_running, read_manifest, verify_files
from eventseg.training.store import run_checkpoint
from eventseg.training.train import train
from test_train import ROOT, compose_train, tiny_overrides


def run_script(name, args, cwd):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *args], capture_output=True, text=True, cwd=cwd)


def pipeline_args(tmp_path, tiny_events, out="run"):
    labels = tiny_events.parent / "labels.parquet"
    return [*tiny_overrides(tmp_path, tiny_events), f"out_dir={tmp_path}/{out}", "trainer.max_epochs=1",
            f"labels.path={labels}", "heads=logistic", "cluster.stability.n_resamples=0"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_events):
    """One finished pipeline run, shared by the read-only tests below (copy it before changing it)."""
    root = tmp_path_factory.mktemp("finished")
    done = run_script("pipeline.py", pipeline_args(root, tiny_events), root)
    assert done.returncode == 0, done.stderr[-3000:]
    return root, root / "run"


# ---- the lock ----------------------------------------------------------------------------


def test_second_writer_is_refused_and_the_lock_is_released(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunError, match="being written by another eventseg run .*pid"):
            RunLock(tmp_path).__enter__()
        # a second process is refused too (flock is per open file, across processes)
        code = f"from eventseg.run.manifest import RunLock\nRunLock({str(tmp_path)!r}).__enter__()"
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert other.returncode != 0 and "being written by another eventseg run" in other.stderr
    with RunLock(tmp_path):  # released on exit
        pass


def test_concurrent_pipeline_into_one_out_dir_is_refused(tmp_path, tiny_events):
    out = tmp_path / "run"
    with RunLock(out):  # stands for a first run still going
        second = run_script("pipeline.py", pipeline_args(tmp_path, tiny_events), tmp_path)
    assert second.returncode == 2
    assert "being written by another eventseg run" in second.stderr and "Traceback" not in second.stderr
    assert not (out / "prepared").exists()  # refused before any work


# ---- the manifest -------------------------------------------------------------------------


def test_manifest_lists_every_output_with_its_hash(finished_run):
    _, out = finished_run
    manifest = read_manifest(out)
    assert manifest["status"] == "complete"
    for name in ("customers.parquet", "segments.parquet", "segments.csv", "report.html",
                 "train_metrics.json", "prepared/splits.npy"):
        assert manifest["files"][name] == content_hash(out / name), name
    assert not any(k.startswith(("logs/", ".stages/", "checkpoints/")) for k in manifest["files"])
    assert set(manifest["stages"]) >= {"prepare", "train", "embed", "cluster", "propensity", "segments", "report"}
    # the model lives in the store; the manifest-listed train_metrics.json pins its entry and bytes
    record = json.loads((out / "train_metrics.json").read_text())["checkpoint"]
    stored = run_checkpoint(out)
    assert stored.parent.parent == (out.parent / "checkpoints").resolve() and stored.parent.name == record["fingerprint"]
    assert record["sha256"] == content_hash(stored)


def test_incomplete_run_is_refused_by_readers(finished_run, tmp_path):
    _, out = finished_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    mark_running(copy, "segments")  # what a kill between stages leaves behind
    with pytest.raises(RunError, match="incomplete run .*'segments'"):
        read_manifest(copy)
    (copy / "run.json").unlink()
    with pytest.raises(RunError, match="no finished run"):
        read_manifest(copy)


def test_changed_or_added_file_is_refused_before_loading(finished_run, tmp_path):
    _, out = finished_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    verify_files(copy, ["train_metrics.json", "prepared"])  # untouched: passes
    changed = copy / "customers.parquet"
    data = bytearray(changed.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    changed.write_bytes(bytes(data))
    with pytest.raises(RunError, match="customers.parquet changed after the run finished"):
        verify_files(copy, ["customers.parquet"])
    (copy / "prepared" / "extra.bin").write_bytes(b"planted")
    with pytest.raises(RunError, match="extra.bin was added after the run finished"):
        verify_files(copy, ["prepared"])


def test_score_refuses_a_tampered_checkpoint(finished_run, tmp_path, tiny_events):
    """The checkpoint lives outside the run, in the store: a flipped byte there is refused too."""
    root, out = finished_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)  # the copy's train_metrics.json names the same store entry
    ckpt = run_checkpoint(out)
    original = ckpt.read_bytes()
    data = bytearray(original)
    data[-100] ^= 0x01
    ckpt.write_bytes(bytes(data))
    try:
        scored = run_script("score.py", [f"run_dir={copy}", "data=events", f"data.path={tiny_events}",
                                         "data.categorical=[event_type,category,channel]", "data.numeric=[amount]"], tmp_path)
    finally:
        ckpt.write_bytes(original)  # the store is shared by the module's other tests
    assert scored.returncode == 2, scored.stderr[-2000:]
    errors = [line for line in scored.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in scored.stderr, scored.stderr[-2000:]
    assert f"{ckpt} changed after it was stored" in errors[0] and "rerun with force=true to retrain" in errors[0]
    assert not (copy / "scored").exists()


# ---- content fingerprints and model reuse -------------------------------------------------


def test_copied_run_folder_is_up_to_date(finished_run, tmp_path, tiny_events):
    root, out = finished_run
    copy_root = tmp_path
    shutil.copytree(out, copy_root / "run")
    again = run_script("pipeline.py", pipeline_args(copy_root, tiny_events), copy_root)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "running" not in again.stdout.replace("[propensity] no labels", "")
    assert again.stdout.count("up to date, skipped") >= 7


def test_new_out_dir_with_other_clustering_shares_the_stored_model(finished_run, tiny_events):
    """Same prepared data and training settings: the second run uses the first one's store entry;
    it trains nothing and copies nothing."""
    root, out = finished_run
    other = run_script("pipeline.py", pipeline_args(root, tiny_events, out="other") + ["cluster.min_segment_share=0.03"], root)
    assert other.returncode == 0, other.stderr[-3000:]
    assert "[train] reused the model stored in" in other.stdout
    assert "[train] budget" not in other.stdout and "training summary" not in other.stdout  # no training
    assert run_checkpoint(root / "other") == run_checkpoint(out)
    assert [p.name for p in (root / "checkpoints").iterdir() if not p.name.startswith(".")] == [run_checkpoint(out).parent.name]
    assert not (root / "other" / "checkpoints").exists() and not (out / "checkpoints").exists()
    assert read_manifest(root / "other")["status"] == "complete"


# ---- checkpoints belong to their run ------------------------------------------------------


def test_resume_from_another_runs_checkpoint_is_refused(tmp_path, tiny_events):
    first = train(compose_train(tiny_overrides(tmp_path / "a", tiny_events) + ["trainer.max_epochs=1"]))
    stored = first.checkpoint
    assert stored.parent.parent == (tmp_path / "a" / "checkpoints").resolve()  # in the store, not the run
    assert not (tmp_path / "a" / "run" / "checkpoints").exists()  # finished: no resume point left behind
    other = tiny_overrides(tmp_path / "b", tiny_events) + ["trainer.max_epochs=1", "model.embedding_dim=12"]
    with pytest.raises(CheckpointError, match="belongs to another run .*model"):
        train(compose_train(other + [f"ckpt_path={stored}"]))
    other_data = tiny_overrides(tmp_path / "c", tiny_events) + ["trainer.max_epochs=1", "data.max_len=30"]
    with pytest.raises(CheckpointError, match="belongs to another run .*prepared data"):
        train(compose_train(other_data + [f"ckpt_path={stored}"]))


def test_retraining_the_same_model_keeps_its_one_store_entry(tmp_path, tiny_events):
    """Same data and settings train the same weights: the entry other runs verified stays as it is."""
    cfg = compose_train(tiny_overrides(tmp_path, tiny_events) + ["trainer.max_epochs=1"])
    first = train(cfg).checkpoint
    written = first.stat().st_mtime_ns
    second = train(cfg).checkpoint
    assert second == first and first.stat().st_mtime_ns == written
    assert [p.name for p in (tmp_path / "checkpoints").iterdir() if not p.name.startswith(".")] == [first.parent.name]
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert run_checkpoint(tmp_path / "run") == first


# ---- user errors: one line, exit status 2, before any work --------------------------------


@pytest.mark.parametrize("override, message", [
    ("model.embedding_dim=0", "model.embedding_dim=0 must be a positive integer"),
    ("trainer.max_epochs=0", "trainer.max_epochs=0 must be a positive integer"),
    ("representation=pca", "representation='pca' is not one of"),
    ("labels.path=/nonexistent/labels.parquet", "labels.path=/nonexistent/labels.parquet does not exist"),
    # the heads group holds only the heads' parameters: the old spellings name the new keys
    ("heads.finetune.enabled=true", "heads.finetune moved to propensity.finetune: pass propensity.finetune.enabled=true"),
    ("heads.selection.tolerance=0.01", "heads.selection moved to propensity.selection: pass propensity.selection.tolerance=0.01"),
])
def test_bad_settings_fail_in_one_line_before_any_work(tmp_path, tiny_events, override, message):
    bad = run_script("pipeline.py", pipeline_args(tmp_path, tiny_events) + [override], tmp_path)
    assert bad.returncode == 2, bad.stderr[-2000:]
    assert message in bad.stderr and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) <= 2
    assert not (tmp_path / "run" / "prepared").exists()


def test_a_composed_config_with_a_moved_setting_fails_before_any_work(tmp_path):
    from hydra import compose, initialize_config_dir

    from eventseg.pipeline import check_pipeline_config
    from eventseg.run.errors import ConfigError
    from test_train import CONFIGS

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="pipeline", overrides=[f"paths.root_dir={tmp_path}", f"out_dir={tmp_path}/run",
                                                         "+heads.selection.n_boot=10"])
    with pytest.raises(ConfigError, match=r"^heads.selection moved to propensity.selection: pass propensity.selection"):
        check_pipeline_config(cfg)
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_gpu_trainer_without_a_gpu_names_the_fix(tmp_path, tiny_events):
    args = [a for a in pipeline_args(tmp_path, tiny_events) if a != "trainer.accelerator=cpu"]
    bad = run_script("pipeline.py", args + ["trainer=gpu"], tmp_path)
    assert bad.returncode == 2 and "use trainer=default" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "run" / "prepared").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_out_dir_fails_first(tmp_path, tiny_events):
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    bad = run_script("pipeline.py", pipeline_args(tmp_path, tiny_events, out="ro/run"), tmp_path)
    assert bad.returncode == 2 and "is not writable" in bad.stderr


def test_unwritable_out_dir_is_a_clear_error(tmp_path):
    from eventseg.run.config import check_writable
    from eventseg.run.errors import ConfigError

    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(ConfigError, match="is not writable"):
        check_writable(blocker / "run")


def test_labels_matching_no_customer_fail_before_training(tmp_path, tiny_events):
    labels = pd.read_parquet(tiny_events.parent / "labels.parquet")
    labels["customer_id"] = labels["customer_id"] + 10**9
    labels.to_parquet(tmp_path / "foreign_labels.parquet")
    bad = run_script("pipeline.py", pipeline_args(tmp_path, tiny_events) + [f"labels.path={tmp_path / 'foreign_labels.parquet'}"], tmp_path)
    assert bad.returncode == 2, bad.stderr[-2000:]
    assert "matches a customer in the events" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "run" / "train_metrics.json").exists()


def test_log_has_no_third_party_tips_or_progress_bars(finished_run, tmp_path, tiny_events):
    args = pipeline_args(tmp_path, tiny_events)
    args = [a for a in args if a != "trainer.enable_progress_bar=false"]
    done = run_script("pipeline.py", args, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stdout + done.stderr
    for noise in ("Tip:", "litmodels", "GPU available", "TPU available", "DeprecationWarning", "it/s]"):
        assert noise not in log, noise


def test_score_reproduces_the_runs_own_customers(finished_run, tmp_path, tiny_events):
    """Scoring the run's own events at the run's as-of time gives the run's own answers, tiers
    included (the stored cut points, not ones recomputed on the scored customers)."""
    root, out = finished_run
    scored = run_script("score.py", [f"run_dir={out}", "data=events", f"data.path={tiny_events}",
                                     "data.categorical=[event_type,category,channel]", "data.numeric=[amount]",
                                     f"out={tmp_path / 'scored.parquet'}"], tmp_path)
    assert scored.returncode == 0, scored.stderr[-3000:]
    own = pd.read_parquet(out / "customers.parquet").set_index("customer_id").sort_index()
    again = pd.read_parquet(tmp_path / "scored.parquet").set_index("customer_id").sort_index()
    assert own.index.equals(again.index)
    probabilities = [c for c in own.columns if c.startswith("p_")]
    assert probabilities
    pd.testing.assert_frame_equal(own[probabilities], again[probabilities], atol=1e-5, rtol=0)
    tiers = [c for c in own.columns if c.startswith("tier_")]
    assert (own[tiers] == again[tiers]).all().all()
    # HDBSCAN's own labels for its fit sample vs approximate placement of the same points: measured 299 of 300
    assert (own["segment"] == again["segment"]).mean() >= 0.99


def test_default_synthetic_run_passes_the_checks_before_its_data_exist(tmp_path):
    """`make run` on a fresh clone: labels and truth are generated with the events, so their
    absence before the first run is not an error."""
    from eventseg.pipeline import check_pipeline_config
    from test_train import CONFIGS
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="pipeline", overrides=[f"paths.root_dir={tmp_path}", f"out_dir={tmp_path}/run"])
    assert cfg.labels.path and not os.path.exists(cfg.labels.path)
    check_pipeline_config(cfg)
