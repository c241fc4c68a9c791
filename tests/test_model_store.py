"""The model store: one entry per trained model, written atomically under a lock, verified
byte for byte before a run (or anyone) loads it. Fake checkpoints keep these tests fast; the
end-to-end sharing and refusal tests are in test_runs.py."""

import json
import threading

import pytest
import torch

import eventseg.training.store as store_module
from eventseg.run.artifacts import write_json
from eventseg.run.manifest import RunLock, content_hash
from eventseg.training.checkpoint import CheckpointError
from eventseg.training.store import (
    ModelStore,
    fingerprint,
    run_checkpoint,
    verified_checkpoint,
)

IDENTITY = {"prepared": "ab" * 32, "config": {"model": {"embedding_dim": 8}, "seed": 0}}


def fake_checkpoint(path, value=0.0):
    torch.save({"state_dict": {"w": torch.full((3,), value)}}, path)
    return path


def published_run(tmp_path, value=0.0):
    """A run folder whose train_metrics.json names a freshly published entry."""
    store = ModelStore(tmp_path / "checkpoints")
    metrics = store.publish(IDENTITY, fake_checkpoint(tmp_path / "trained.ckpt", value), {"best_val_loss": 1.5})
    run = tmp_path / "run"
    write_json(metrics, run / "train_metrics.json")  # as train() writes it
    return store, run


def flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_publish_writes_a_content_addressed_entry_and_the_run_resolves_it(tmp_path):
    store, run = published_run(tmp_path)
    entry = tmp_path / "checkpoints" / fingerprint(IDENTITY)
    assert sorted(p.name for p in entry.iterdir()) == ["best.ckpt", "identity.json", "train_metrics.json"]
    identity = json.loads((entry / "identity.json").read_text())
    assert identity["training"] == IDENTITY and fingerprint(identity["training"]) == entry.name
    assert identity["files"]["best.ckpt"] == content_hash(entry / "best.ckpt")
    record = json.loads((run / "train_metrics.json").read_text())["checkpoint"]
    assert record == {"store": str(store.root), "fingerprint": entry.name, "sha256": identity["files"]["best.ckpt"]}
    assert run_checkpoint(run) == entry / "best.ckpt"
    assert verified_checkpoint(entry / "best.ckpt") == entry / "best.ckpt"


def test_a_changed_or_missing_store_file_is_refused_in_one_line(tmp_path):
    _, run = published_run(tmp_path)
    ckpt = run_checkpoint(run)
    flip_a_byte(ckpt)
    with pytest.raises(CheckpointError) as err:
        run_checkpoint(run)
    assert f"{ckpt} changed after it was stored" in one_line(err) and "rerun with force=true to retrain" in str(err.value)
    with pytest.raises(CheckpointError, match="changed after it was stored"):
        verified_checkpoint(ckpt)  # a reader given the file itself (embed ckpt=...) checks it too
    ckpt.unlink()
    with pytest.raises(CheckpointError) as err:
        run_checkpoint(run)
    assert f"{ckpt} is missing" in one_line(err) and "force=true" in str(err.value)


def test_a_run_refuses_an_entry_retrained_with_other_weights(tmp_path):
    """The run's own record (inside its manifest-listed train_metrics.json) pins the bytes it was built with."""
    store, run = published_run(tmp_path)
    built_with = run_checkpoint(run)
    store.publish(IDENTITY, fake_checkpoint(tmp_path / "retrained.ckpt", 1.0), {"best_val_loss": 1.4})
    with pytest.raises(CheckpointError) as err:
        run_checkpoint(run)
    assert f"{built_with} is not the model {run} was built with" in one_line(err)


def test_same_weights_keep_the_entry_other_weights_replace_it(tmp_path):
    store, run = published_run(tmp_path)
    entry = store.entry(IDENTITY)
    before = (entry / "best.ckpt").stat().st_mtime_ns
    kept = store.publish(IDENTITY, fake_checkpoint(tmp_path / "again.ckpt"), {"best_val_loss": 9.9})
    assert kept["best_val_loss"] == 1.5 and (entry / "best.ckpt").stat().st_mtime_ns == before
    assert run_checkpoint(run) == entry / "best.ckpt"  # runs that share the entry still load it
    replaced = store.publish(IDENTITY, fake_checkpoint(tmp_path / "other.ckpt", 2.0), {"best_val_loss": 0.5})
    assert replaced["best_val_loss"] == 0.5
    assert torch.load(entry / "best.ckpt", weights_only=True)["state_dict"]["w"][0] == 2.0


def test_a_damaged_entry_is_replaced_not_reused(tmp_path):
    store, _ = published_run(tmp_path)
    entry = store.entry(IDENTITY)
    flip_a_byte(entry / "best.ckpt")
    assert not store.adopt(IDENTITY, tmp_path / "other")
    store.publish(IDENTITY, fake_checkpoint(tmp_path / "again.ckpt"), {"best_val_loss": 1.5})
    assert store.adopt(IDENTITY, tmp_path / "other")
    assert run_checkpoint(tmp_path / "other") == entry / "best.ckpt"


def test_adopting_gives_a_second_run_the_same_model_without_a_copy(tmp_path):
    store, run = published_run(tmp_path)
    assert store.adopt(IDENTITY, tmp_path / "second")
    assert (tmp_path / "second" / "train_metrics.json").read_bytes() == (run / "train_metrics.json").read_bytes()
    assert run_checkpoint(tmp_path / "second") == run_checkpoint(run)
    assert list((tmp_path / "second").iterdir()) == [tmp_path / "second" / "train_metrics.json"]
    assert not store.adopt({**IDENTITY, "prepared": "cd" * 32}, tmp_path / "third")  # other data: nothing to adopt


def test_a_failure_mid_write_leaves_no_entry(tmp_path, monkeypatch):
    real_write_json = store_module.write_json

    def fail_on_identity(obj, path):
        if path.name == "identity.json":
            raise OSError("disk full")
        real_write_json(obj, path)

    monkeypatch.setattr(store_module, "write_json", fail_on_identity)
    store = ModelStore(tmp_path / "checkpoints")
    with pytest.raises(OSError, match="disk full"):
        store.publish(IDENTITY, fake_checkpoint(tmp_path / "trained.ckpt"), {})
    assert [p.name for p in store.root.iterdir()] == [".lock"]  # no entry, no half-written temp folder
    assert not store.adopt(IDENTITY, tmp_path / "run")


def test_a_second_writer_waits_for_the_lock(tmp_path):
    store = ModelStore(tmp_path / "checkpoints")
    done = threading.Event()
    writer = threading.Thread(target=lambda: (store.publish(IDENTITY, fake_checkpoint(tmp_path / "t.ckpt"), {}), done.set()))
    with RunLock(store.root):
        writer.start()
        assert not done.wait(0.5)  # blocked behind the holder
        assert not store.entry(IDENTITY).exists()
    writer.join(30)
    assert done.is_set() and store.entry(IDENTITY).is_dir()
