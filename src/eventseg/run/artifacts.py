"""Atomic writes and JSON sidecars: an output is either complete or absent, never half-written."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from eventseg import __version__


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto `final` only if the block succeeds.

    Works for files and directories. The temporary lives in the same directory so the
    rename is atomic on one filesystem; on failure it is removed and `final` is untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if final.is_dir() and not final.is_symlink():
            old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise


def read_json_if_exists(path: str | os.PathLike) -> Any:
    """A stage's JSON output, or None when the stage did not run (e.g. no labels)."""
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else None


def write_json(obj: Any, path: str | os.PathLike) -> None:
    """Write JSON atomically (sorted keys, so equal content gives equal bytes)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_parquet(df, path: str | os.PathLike) -> None:
    """Write a DataFrame to Parquet atomically."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def sidecar_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".json") if path.suffix != ".json" else path


def write_sidecar(path: str | os.PathLike, **fields: Any) -> Path:
    """Describe what produced `path` next to it, as `<path>.json`."""
    meta = {
        "artifact": Path(path).name,
        "eventseg_version": __version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **fields,
    }
    out = sidecar_path(path)
    write_json(meta, out)
    return out


def file_hash(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, so outputs can name the exact checkpoint that produced them."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
