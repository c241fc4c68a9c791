"""scripts/bench_tables.py: benchmark JSON becomes markdown tables in docs/benchmarks.md, the page
is rewritten only between its markers, and the committed page matches benchmarks/*.json."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_bench_tables():
    spec = importlib.util.spec_from_file_location("bench_tables", ROOT / "scripts" / "bench_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench_tables = load_bench_tables()

RESULT = {
    "benchmark": "cluster",
    "target": "1M customers x 64 dims end to end <= 5 min on 2 cores",
    "outcomes": True,
    "index": {"vectors": 1000, "nprobe": 16},
    "results": [
        {"customers": 100000, "wall_seconds": 21.5, "stage_seconds": {"fit": 3.0, "place": 9.1}},
        {"customers": 1000000, "wall_seconds": 232.0, "note": "a | b"},
    ],
    "machine": {"python": "3.11.9", "cpus": 2},
}


@pytest.fixture
def bench_dir(tmp_path):
    folder = tmp_path / "benchmarks"
    folder.mkdir()
    (folder / "cluster_outcomes.json").write_text(json.dumps(RESULT))
    return folder


def test_renders_a_table_per_record_list(bench_dir):
    text = bench_tables.render_section(bench_dir)
    lines = text.splitlines()
    assert lines[0] == "### cluster_outcomes"
    assert "`python scripts/bench.py cluster` → `benchmarks/cluster_outcomes.json`" in lines
    assert "Target: 1M customers x 64 dims end to end <= 5 min on 2 cores" in lines
    assert "Machine: python=3.11.9, cpus=2" in lines
    assert "- outcomes: True" in lines
    start = lines.index("`results`:") + 2
    assert lines[start:start + 4] == [
        "| customers | wall_seconds | stage_seconds | note |",
        "| --- | --- | --- | --- |",
        "| 100000 | 21.5 | fit=3.0, place=9.1 | — |",
        "| 1000000 | 232.0 | — | a \\| b |",
    ]
    start = lines.index("`index`:") + 2
    assert lines[start:start + 3] == ["| vectors | nprobe |", "| --- | --- |", "| 1000 | 16 |"]


def test_no_results_says_so(tmp_path):
    assert bench_tables.render_section(tmp_path / "missing").startswith("No benchmark results are recorded yet")


def test_update_rewrites_only_between_the_markers_and_is_idempotent(bench_dir, tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Page\n\nbefore\n\n{bench_tables.START}\nstale\n{bench_tables.END}\n\nafter\n")
    assert bench_tables.update_doc(doc, bench_dir) is True
    once = doc.read_text()
    assert once.startswith("# Page\n\nbefore\n\n") and once.endswith("\n\nafter\n")
    assert "stale" not in once and "| 1000000 | 232.0 |" in once
    assert bench_tables.update_doc(doc, bench_dir) is False
    assert doc.read_text() == once


def test_a_page_without_markers_is_refused(bench_dir, tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Page\n")
    with pytest.raises(ValueError, match="marker comments"):
        bench_tables.update_doc(doc, bench_dir)


def test_docs_page_is_in_sync_with_the_recorded_results():
    """Rerun `python scripts/bench_tables.py` after a benchmark writes benchmarks/<name>.json."""
    _, generated, _ = bench_tables.split_page((ROOT / "docs" / "benchmarks.md").read_text())
    assert generated == bench_tables.render_section(ROOT / "benchmarks")
