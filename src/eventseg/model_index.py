"""Finished trainings indexed by what they were trained on, so a new run folder whose prepared
data and training settings are the same reuses the model instead of training it again.

The index lives in `<paths.runs_dir>/.trained/<fingerprint>.json` and names the run folder and
the SHA-256 of its checkpoints; a model whose files changed since is not reused.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from eventseg.artifacts import atomic_path, write_json
from eventseg.runs import content_hash

TRAINED_FILES = ("train_metrics.json", "checkpoints")


def _entry(index_dir: Path, identity: dict) -> Path:
    key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()
    return Path(index_dir) / f"{key[:40]}.json"


def _hashes(run_dir: Path) -> dict:
    files = [p for name in TRAINED_FILES for p in ([run_dir / name] if (run_dir / name).is_file()
                                                    else sorted((run_dir / name).rglob("*")))]
    return {p.relative_to(run_dir).as_posix(): content_hash(p) for p in files if p.is_file()}


def record_trained_model(index_dir: str | Path, identity: dict, run_dir: str | Path) -> None:
    """Remember that `run_dir` holds the model for `identity`."""
    run_dir = Path(run_dir).resolve()
    write_json({"run_dir": str(run_dir), "files": _hashes(run_dir)}, _entry(Path(index_dir), identity))


def reuse_trained_model(index_dir: str | Path, identity: dict, run_dir: str | Path) -> bool:
    """Copy an indexed model for `identity` into `run_dir`; False when there is none (or it changed)."""
    entry = _entry(Path(index_dir), identity)
    run_dir = Path(run_dir)
    if not entry.exists():
        return False
    recorded = json.loads(entry.read_text())
    source = Path(recorded["run_dir"])
    if source.resolve() == run_dir.resolve() or not source.exists() or _hashes(source) != recorded["files"]:
        return False
    for name in TRAINED_FILES:
        with atomic_path(run_dir / name) as tmp:
            (shutil.copytree if (source / name).is_dir() else shutil.copy2)(source / name, tmp)
    print(f"[train] reused the model trained in {source} (same prepared data and training settings)")
    return True
