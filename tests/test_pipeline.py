"""The end-to-end job on tiny data: outputs, skipping of up-to-date stages, --force."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from test_train import ROOT, tiny_overrides


@pytest.mark.slow
def test_pipeline_runs_skips_and_forces(tmp_path, tiny_events):
    cmd = [sys.executable, str(ROOT / "scripts" / "pipeline.py"), *tiny_overrides(tmp_path, tiny_events), "trainer.max_epochs=1"]
    first = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    out = tmp_path / "run"
    emb = pd.read_parquet(out / "embeddings.parquet")
    assert len(emb) == pd.read_parquet(tiny_events).customer_id.nunique()
    assert json.loads((out / "embeddings.parquet.json").read_text())["rows"] == len(emb)

    second = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    for stage in ("prepare", "train", "embed"):
        assert f"[{stage}] up to date, skipped" in second.stdout

    forced = subprocess.run(cmd + ["--force"], capture_output=True, text=True, cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr[-3000:]
    assert "[train] running" in forced.stdout and "skipped" not in forced.stdout
