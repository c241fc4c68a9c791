"""Every entry of a run folder, named once.

`RunLayout.customers` is the file's name ("customers.parquet"); `RunLayout(out_dir).customers` is
its path in that run. Stages write and readers open run files through this class, so a file's
name lives in one place and the run folder's reference (docs/run-folder.md) can be read off it.
What is inside a folder entry (prepared/, heads/, finetune/, monitor/) belongs to the stage
that writes it.
"""

from __future__ import annotations

import os
from pathlib import Path


class _Entry:
    """A run entry: its name on the class, its path on an instance."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, layout: RunLayout | None, owner=None):
        return self.name if layout is None else layout.root / self.name


def entry_name(entry: str) -> str:
    """The last part of an entry's name, for writing it inside a staging folder first."""
    return entry.rsplit("/", 1)[-1]


class RunLayout:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunLayout({str(self.root)!r})"

    # the pipeline's stages, in order
    prepared = _Entry("prepared")  # validated, encoded sequence store (eventseg.data.prepare)
    prepared_store = _Entry("prepared/store")
    prepared_encoders = _Entry("prepared/encoders.json")
    prepared_splits = _Entry("prepared/splits.npy")  # int8 per customer: train, validation, test
    prepare_report = _Entry("prepared/prepare_report.json")  # what validation kept, dropped and cut
    aggregates = _Entry("aggregates.parquet")
    aggregates_builder = _Entry("aggregates.json")
    train_metrics = _Entry("train_metrics.json")
    embeddings = _Entry("embeddings.parquet")
    embed_metrics = _Entry("embed_metrics.json")
    representation = _Entry("representation.parquet")
    hybrid = _Entry("hybrid.json")
    propensity_metrics = _Entry("propensity_metrics.json")
    propensity_scores = _Entry("propensity_scores.parquet")
    propensity_model = _Entry("propensity_model")  # the candidates each label publishes (PropensityModel)
    finetune = _Entry("finetune")
    clusters = _Entry("clusters.parquet")
    cluster_metrics = _Entry("cluster_metrics.json")
    clusterer = _Entry("clusterer.npz")
    cluster_sweep = _Entry("cluster_sweep.csv")
    customers = _Entry("customers.parquet")
    segments = _Entry("segments.parquet")
    segments_csv = _Entry("segments.csv")
    segment_metrics = _Entry("segment_metrics.json")
    metrics = _Entry("metrics.json")
    report = _Entry("report.html")
    # bookkeeping
    manifest = _Entry("run.json")
    lock = _Entry(".lock")
    stage_records = _Entry(".stages")
    logs = _Entry("logs")
    # written later by jobs that read the finished run
    scored = _Entry("scored")
    monitor = _Entry("monitor")
    monitor_assignments = _Entry("monitor/assignments.parquet")
    monitor_transitions = _Entry("monitor/transitions.parquet")
    monitor_summary = _Entry("monitor/summary.json")
    lookalikes = _Entry("lookalikes")
    audit = _Entry("audit.json")

    def results(self) -> dict[str, Path]:
        """{name: path} of the run's result entries that exist (top level, in stage order)."""
        names = [v.name for v in vars(RunLayout).values() if isinstance(v, _Entry) and "/" not in v.name]
        skip = {*self.bookkeeping(), *self.later_jobs()}
        return {name: self.root / name for name in names if name not in skip and (self.root / name).exists()}

    @classmethod
    def later_jobs(cls) -> tuple[str, ...]:
        """Entries that jobs reading a finished run write into it; not part of the run's result."""
        return cls.scored, cls.monitor, cls.lookalikes, cls.audit

    @classmethod
    def bookkeeping(cls) -> tuple[str, ...]:
        return cls.manifest, cls.lock, cls.stage_records, cls.logs
