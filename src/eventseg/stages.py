"""Skip a pipeline stage when its outputs are up to date with its inputs and its config.

A stage's fingerprint hashes its config (as canonical JSON) and, for every input path, the
names, sizes and modification times of its files. The fingerprint is stored beside the
outputs in `<out_dir>/.stages/<stage>.json` once the stage has succeeded, so an interrupted
stage always reruns.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from eventseg.artifacts import write_json


def _file_signature(path: Path) -> list:
    if path.is_file():
        st = path.stat()
        return [[str(path), st.st_size, st.st_mtime_ns]]
    if path.is_dir():
        return [sig for child in sorted(path.rglob("*")) if child.is_file() for sig in _file_signature(child)]
    return [[str(path), None, None]]


def fingerprint(config: Any, inputs: Iterable[str | os.PathLike]) -> str:
    payload = {"config": config, "inputs": [_file_signature(Path(p)) for p in inputs]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class StageRunner:
    out_dir: Path
    force: bool = False
    log: Callable[[str], None] = print

    def run(self, name: str, fn: Callable[[], Any], *, config: Any, inputs: Iterable, outputs: Iterable) -> bool:
        """Run `fn` unless `outputs` exist and were made from the same config and inputs.

        Returns True if the stage ran, False if it was skipped.
        """
        inputs, outputs = [Path(p) for p in inputs], [Path(p) for p in outputs]
        record = self.out_dir / ".stages" / f"{name}.json"
        key = fingerprint(config, inputs)
        if not self.force and record.exists() and all(p.exists() for p in outputs):
            if json.loads(record.read_text()).get("fingerprint") == key:
                self.log(f"[{name}] up to date, skipped (force=true reruns it)")
                return False
        self.log(f"[{name}] running")
        fn()
        write_json({"stage": name, "fingerprint": key, "outputs": [str(p) for p in outputs]}, record)
        return True
