"""Skip a pipeline stage when its outputs are up to date with its inputs and its config.

A `Stage` declares, once, its config, its input paths and its outputs. Its fingerprint hashes
the config (canonical JSON) and the *content* of every input (never its path or timestamp),
so a copied run folder or a moved input is still up to date. The fingerprint is stored in
`<out_dir>/.stages/<stage>.json` once the stage has succeeded, so an interrupted stage reruns.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from eventseg.run.artifacts import write_json
from eventseg.run.layout import RunLayout
from eventseg.run.manifest import content_hash


def fingerprint(config: Any, inputs: Iterable) -> str:
    payload = {"config": config, "inputs": [content_hash(p) for p in inputs]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _value(x):
    """Declarations may be lazy (a callable), for what exists only once earlier stages ran."""
    return x() if callable(x) else x


@dataclass
class Stage:
    name: str
    fn: Callable[[], Any]
    config: Any = None
    inputs: Any = field(default_factory=list)  # a list of paths, or a callable returning one
    outputs: list = field(default_factory=list)


@dataclass
class StageRunner:
    out_dir: Path
    force: bool = False
    log: Callable[[str], None] = print
    on_start: Callable[[str], None] | None = None
    fingerprints: dict = field(default_factory=dict)

    def run(self, stage: Stage) -> bool:
        """Run the stage unless its outputs exist and were made from the same config and inputs.

        Returns True if the stage ran, False if it was skipped.
        """
        outputs = [Path(p) for p in stage.outputs]
        record = RunLayout(self.out_dir).stage_records / f"{stage.name}.json"
        key = fingerprint(_value(stage.config), [Path(p) for p in _value(stage.inputs)])
        self.fingerprints[stage.name] = key
        if not self.force and record.exists() and all(p.exists() for p in outputs):
            if json.loads(record.read_text()).get("fingerprint") == key:
                self.log(f"[{stage.name}] up to date, skipped (force=true reruns it)")
                return False
        self.log(f"[{stage.name}] running")
        if self.on_start is not None:
            self.on_start(stage.name)
        record.unlink(missing_ok=True)
        stage.fn()
        write_json({"stage": stage.name, "fingerprint": key,
                    "outputs": [p.relative_to(self.out_dir).as_posix() if p.is_relative_to(self.out_dir) else str(p)
                                for p in outputs]}, record)
        return True
