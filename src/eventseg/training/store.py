"""The model store: trained models kept once, by what they were trained from, and shared by every
run folder that trains the same model on the same data (no copy, no retraining).

`<paths.checkpoints_dir>/<fingerprint>/` holds
- `best.ckpt`: the checkpoint;
- `train_metrics.json`: the metrics of the training that made it (a run that reuses the model
  gets them as its own);
- `identity.json`: what the fingerprint hashes (the prepared data's content hash and the
  training settings, `model_identity`) and the SHA-256 of each file above.

A run folder names the entry it uses in its train_metrics.json (`"checkpoint"`: store, fingerprint
and the checkpoint's SHA-256); the run's manifest lists that file, so it vouches for the model
outside the run folder too. Readers resolve the checkpoint through that record (`run_checkpoint`)
and refuse a file whose bytes are not the recorded ones. An entry is written under the store's
lock into a temporary folder that is renamed into place: it is complete or absent.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch

from eventseg import __version__
from eventseg.run.artifacts import atomic_path, write_json
from eventseg.run.layout import RunLayout
from eventseg.run.manifest import RunLock, content_hash
from eventseg.training.checkpoint import CheckpointError

CHECKPOINT = "best.ckpt"
METRICS = RunLayout.train_metrics  # an entry keeps the train_metrics.json of the training that made it
IDENTITY = "identity.json"
RECORD = "checkpoint"  # the key of a run's train_metrics.json that names its store entry
ENTRY_FORMAT = "eventseg.model"
RETRAIN = "rerun with force=true to retrain"


def fingerprint(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:40]


def check_entry(entry: Path) -> None:
    """Refuse an entry unless identity.json describes it and every file has the bytes it records."""
    try:
        recorded = json.loads((entry / IDENTITY).read_text())
        files, training = recorded["files"], recorded["training"]
    except (OSError, ValueError, KeyError, TypeError):
        raise CheckpointError(f"{entry / IDENTITY} is missing or unreadable (a damaged model store entry): {RETRAIN}") from None
    if fingerprint(training) != entry.name:
        raise CheckpointError(f"{entry / IDENTITY} does not describe the model of its entry {entry.name}: {RETRAIN}")
    for name, sha in files.items():
        if not (entry / name).is_file():
            raise CheckpointError(f"{entry / name} is missing from the model store: {RETRAIN}")
        if content_hash(entry / name) != sha:
            raise CheckpointError(f"{entry / name} changed after it was stored (SHA-256 does not match "
                                  f"{IDENTITY}): refusing to load it; {RETRAIN}")


def verified_checkpoint(path: str | os.PathLike) -> Path:
    """`path`, checked against its entry's identity.json when it is a store checkpoint."""
    path = Path(path)
    if (path.parent / IDENTITY).exists():
        check_entry(path.parent)
    return path


def run_checkpoint(run_dir: str | os.PathLike) -> Path:
    """The stored checkpoint a run's train_metrics.json names, checked before anything loads it:
    its bytes must be those the store entry recorded and those the run was built with."""
    run_dir = Path(run_dir)
    metrics = run_dir / METRICS
    if not metrics.exists():
        raise CheckpointError(f"{run_dir} holds no trained model (no train_metrics.json): run eventseg run first")
    record = json.loads(metrics.read_text()).get(RECORD)
    if not record:
        raise CheckpointError(f"{metrics} names no stored model: training saved no checkpoint (is "
                              f"callbacks.model_checkpoint set?) or predates the model store; {RETRAIN}")
    path = Path(record["store"]) / record["fingerprint"] / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"{path} is missing (the stored model that {metrics} names): {RETRAIN}")
    check_entry(path.parent)
    if content_hash(path) != record["sha256"]:
        raise CheckpointError(f"{path} is not the model {run_dir} was built with (its SHA-256 differs from the "
                              f"one in {metrics}; the entry was retrained since): {RETRAIN}")
    return path


def same_weights(a: Path, b: Path) -> bool:
    """Whether two checkpoints hold the same tensors (their other bytes name the folder they were trained in)."""
    first, second = (torch.load(p, map_location="cpu", weights_only=True)["state_dict"] for p in (a, b))
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


class ModelStore:
    """`<root>/<fingerprint>/` per trained model; writes hold `<root>/.lock` (one writer at a time)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()

    def entry(self, identity: dict) -> Path:
        return self.root / fingerprint(identity)

    def adopt(self, identity: dict, run_dir: str | os.PathLike) -> bool:
        """Point `run_dir` at the stored model for `identity` (its train_metrics.json); False when
        there is none or it is damaged (then training again replaces it)."""
        entry = self.entry(identity)
        if not entry.is_dir():
            return False
        with RunLock(self.root, wait=True):
            try:
                check_entry(entry)
            except CheckpointError as err:
                print(f"[train] not reusing a damaged stored model, training it again ({err})")
                return False
            with atomic_path(Path(run_dir) / METRICS) as tmp:
                shutil.copyfile(entry / METRICS, tmp)
        print(f"[train] reused the model stored in {entry} (same prepared data and training settings)")
        return True

    def publish(self, identity: dict, checkpoint: Path, metrics: dict) -> dict:
        """Store `checkpoint` as the model for `identity`; returns the train metrics, with the
        record of the entry, that the run now uses.

        An intact entry holding the same weights is kept as it is (other runs were built with its
        bytes); a missing or damaged one, or one with other weights (a forced retrain after the
        training changed), is replaced under the lock.
        """
        entry = self.entry(identity)
        with RunLock(self.root, wait=True):
            if entry.is_dir():
                try:
                    check_entry(entry)
                    if same_weights(entry / CHECKPOINT, checkpoint):
                        return json.loads((entry / METRICS).read_text())
                except CheckpointError:
                    pass
            with atomic_path(entry) as tmp:
                tmp.mkdir()
                shutil.copyfile(checkpoint, tmp / CHECKPOINT)
                sha = content_hash(tmp / CHECKPOINT)
                stored = {**metrics, RECORD: {"store": str(self.root), "fingerprint": entry.name, "sha256": sha}}
                write_json(stored, tmp / METRICS)
                write_json({"format": ENTRY_FORMAT, "eventseg_version": __version__, "training": identity,
                            "files": {CHECKPOINT: sha, METRICS: content_hash(tmp / METRICS)}}, tmp / IDENTITY)
        return stored
