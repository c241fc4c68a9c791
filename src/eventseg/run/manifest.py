"""A run folder that can be trusted: one writer at a time, a manifest written last, and every
file a reader loads checked against the manifest's SHA-256 before it is opened.

- `RunLock`: an exclusive lock on `<out_dir>/.lock` (flock: released by the OS if the process
  dies), so a second run into the same folder is refused instead of racing for its files.
- `run.json`: written when the last stage has succeeded; a run being written (or killed midway)
  has `"status": "running"`, and `verified_run` refuses it.
- `verified_run(run_dir, files)`: readers (score.py, monitoring) name the files they are about
  to load; a file that is missing from the manifest, or whose bytes changed, is refused.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from eventseg import __version__
from eventseg.run.artifacts import file_hash, write_json
from eventseg.run.errors import RunError
from eventseg.run.layout import RunLayout

MANIFEST = RunLayout.manifest
LOCK = RunLayout.lock
MANIFEST_FORMAT = "eventseg.run"
# not part of a run's result: bookkeeping, logs, and the outputs of later jobs that read the run
_UNLISTED = {*RunLayout.bookkeeping(), *RunLayout.later_jobs()}


class RunLock:
    """`with RunLock(out_dir):` refuses to start while another process writes to `out_dir`.

    `wait=True` queues behind the other writer instead: for short writes into a folder that many
    runs share (the model store), where refusing would throw away a finished training."""

    def __init__(self, out_dir: str | os.PathLike, *, wait: bool = False):
        self.path = Path(out_dir) / LOCK
        self.wait = wait
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if self.wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunError(f"{self.path.parent} is being written by another eventseg run ({holder}); "
                           "wait for it to finish or choose another out_dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {_now()}".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


_HASHES: dict[tuple, str] = {}


def content_hash(path: str | os.PathLike) -> str:
    """SHA-256 of a file, or of a directory's relative names and file contents (memoised by
    path, size and mtime within a process). Paths never enter it, so a copied or moved input
    hashes the same."""
    path = Path(path)
    if path.is_file():
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        if key not in _HASHES:
            _HASHES[key] = file_hash(path)
        return _HASHES[key]
    if path.is_dir():
        h = hashlib.sha256()
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f"{child.relative_to(path).as_posix()}\0{content_hash(child)}\n".encode())
        return h.hexdigest()
    return "absent"


def combined_hash(paths: Iterable[str | os.PathLike]) -> str:
    """One hash for several inputs, in order."""
    return hashlib.sha256("".join(content_hash(p) for p in paths).encode()).hexdigest()


def run_files(run_dir: Path) -> list[Path]:
    """Every file of a run's result (relative paths), bookkeeping and later jobs' outputs excluded."""
    return sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")
                  if p.is_file() and p.relative_to(run_dir).parts[0] not in _UNLISTED
                  and not p.name.startswith(".") and ".tmp-" not in p.name)


def mark_running(run_dir: str | os.PathLike, stage: str) -> None:
    """From now until `write_manifest`, readers see the run as incomplete."""
    write_json({"format": MANIFEST_FORMAT, "status": "running", "stage": stage, "since": _now(),
                "eventseg_version": __version__}, Path(run_dir) / MANIFEST)


def write_manifest(run_dir: str | os.PathLike, stages: dict[str, str], **facts) -> Path:
    """The last write of a run: status complete, each stage's fingerprint, each file's SHA-256."""
    run_dir = Path(run_dir)
    files = {p.as_posix(): content_hash(run_dir / p) for p in run_files(run_dir)}
    manifest = {"format": MANIFEST_FORMAT, "status": "complete", "completed_at": _now(),
                "eventseg_version": __version__, "stages": stages, "files": files, **facts}
    write_json(manifest, run_dir / MANIFEST)
    return run_dir / MANIFEST


def record_rewritten_file(run_dir: str | os.PathLike, rel: str) -> None:
    """A later job (monitor, audit) re-rendered a run file such as report.html: list its new hash,
    so the manifest keeps vouching for every file of a complete run."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    manifest.setdefault("files", {})[rel] = content_hash(run_dir / rel)
    write_json(manifest, run_dir / MANIFEST)


def read_manifest(run_dir: str | os.PathLike) -> dict:
    """The manifest of a finished run; refuses a missing, foreign or incomplete one."""
    run_dir = Path(run_dir)
    path = run_dir / MANIFEST
    if not run_dir.is_dir():
        raise RunError(f"run_dir {run_dir} does not exist: pass the out_dir of a finished eventseg run run")
    if not path.exists():
        raise RunError(f"{run_dir} holds no finished run (no {MANIFEST}): run eventseg run out_dir={run_dir} first")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunError(f"{path} is not a readable run manifest ({err}); re-run eventseg run") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise RunError(f"{path} is not an eventseg run manifest; re-run eventseg run")
    if manifest.get("status") != "complete":
        raise RunError(f"{run_dir} is an incomplete run (stopped during stage {manifest.get('stage')!r} "
                       f"since {manifest.get('since')}): re-run eventseg run out_dir={run_dir} to finish it")
    return manifest


HOLDS = ("representation", "propensity", "finetune")


def run_holds(manifest: dict, run_dir: str | os.PathLike) -> dict:
    """What a finished run wrote (`holds` in run.json: its representation, whether it has propensity
    models and a fine-tuned encoder), so readers never guess from which files happen to exist."""
    holds = manifest.get("holds")
    if not isinstance(holds, dict) or set(HOLDS) - set(holds):
        raise RunError(f"{Path(run_dir) / MANIFEST} does not say what the run holds (written before eventseg recorded "
                       f"it): re-run eventseg run out_dir={run_dir}")
    return holds


def check_run_version(manifest: dict, run_dir: str | os.PathLike) -> None:
    """Same major.minor as this eventseg, before a run's model and files are reused: file formats
    and model code may differ across minor versions."""
    written = str(manifest.get("eventseg_version") or "unknown")
    if written.split(".")[:2] != __version__.split(".")[:2]:
        raise RunError(f"{run_dir} was written by eventseg {written}; this is eventseg {__version__}: "
                       f"re-run eventseg run out_dir={run_dir} with this version (or install eventseg {written})")


def verify_files(run_dir: str | os.PathLike, files: Iterable[str | os.PathLike], manifest: dict | None = None) -> dict:
    """Check `files` (relative to the run, files or folders) against the manifest before anything loads them."""
    run_dir = Path(run_dir)
    manifest = manifest or read_manifest(run_dir)
    listed = manifest.get("files", {})
    for rel in files:
        rel = Path(rel)
        target = run_dir / rel
        members = [rel] if not target.is_dir() else [p.relative_to(run_dir) for p in target.rglob("*") if p.is_file()]
        prefix = rel.as_posix().rstrip("/") + "/"
        expected = [k for k in listed if k == rel.as_posix() or k.startswith(prefix)]
        if not expected:
            raise RunError(f"{target} is not listed in {run_dir / MANIFEST}: the run did not write it; "
                           "re-run eventseg run")
        unexpected = sorted(set(m.as_posix() for m in members) - set(listed))
        if unexpected:
            raise RunError(f"{run_dir / unexpected[0]} was added after the run finished (not in its manifest); "
                           "remove it or re-run eventseg run")
        for key in expected:
            if not (run_dir / key).is_file():
                raise RunError(f"{run_dir / key} is missing (listed in the run manifest); re-run eventseg run")
            if content_hash(run_dir / key) != listed[key]:
                raise RunError(f"{run_dir / key} changed after the run finished (SHA-256 does not match the run "
                               "manifest): refusing to load it; restore the file or re-run eventseg run")
    return manifest
