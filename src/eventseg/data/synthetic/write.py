"""write_synthetic: the generator's tables as Parquet files with JSON sidecars."""

from __future__ import annotations

from pathlib import Path

from eventseg.run.artifacts import write_parquet, write_sidecar

from .generate import SyntheticData


def write_synthetic(data: SyntheticData, out_dir) -> dict[str, Path]:
    """Write events/labels/truth Parquet files atomically, each with a `<file>.json` sidecar;
    with a continuation also `events_full.parquet` (history + later months, for monitoring)."""
    out = Path(out_dir)
    tables = {"events": data.events, "labels": data.labels, "truth": data.truth}
    if len(data.later_events):
        tables["events_full"] = data.events_full()
    paths = {}
    for name, df in tables.items():
        path = out / f"{name}.parquet"
        write_parquet(df, path)
        write_sidecar(
            path,
            producer="eventseg.synthetic.generate_synthetic",
            params=data.params,
            rows=len(df),
            cutoff=str(data.cutoff),
        )
        paths[name] = path
    return paths
