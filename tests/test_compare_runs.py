"""scripts/compare_runs.py: two runs are the same result only when every table and metric agrees
bit for bit; clocks and paths do not count."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_runs.py"


def make_run(path: Path) -> Path:
    path.mkdir()
    rng = np.random.default_rng(0)
    pd.DataFrame({"customer_id": np.arange(50), "p_buy": rng.random(50), "segment": rng.integers(0, 4, 50)}).to_parquet(
        path / "customers.parquet")
    (path / "propensity_metrics.json").write_text(json.dumps({"test": {"buy": {"roc_auc": 0.71}}, "seconds": 3.2}))
    return path


def compare(a: Path, b: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(a), str(b)], capture_output=True, text=True)


def test_identical_runs_pass_and_clocks_do_not_count(tmp_path):
    a = make_run(tmp_path / "a")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    metrics = json.loads((b / "propensity_metrics.json").read_text())
    (b / "propensity_metrics.json").write_text(json.dumps({**metrics, "seconds": 99.0}))
    done = compare(a, b)
    assert done.returncode == 0 and done.stdout.strip() == "identical"


def test_one_changed_bit_or_metric_is_a_difference(tmp_path):
    a = make_run(tmp_path / "a")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    table = pd.read_parquet(b / "customers.parquet")
    table.loc[7, "p_buy"] = np.nextafter(table.loc[7, "p_buy"], 2.0)  # one unit in the last place
    table.to_parquet(b / "customers.parquet")
    (b / "propensity_metrics.json").write_text(json.dumps({"test": {"buy": {"roc_auc": 0.72}}, "seconds": 3.2}))
    done = compare(a, b)
    assert done.returncode == 1
    assert "customers.parquet: p_buy differs" in done.stdout
    assert "propensity_metrics.json.test.buy.roc_auc: 0.71 vs 0.72" in done.stdout


def test_a_table_only_one_run_has_is_a_difference(tmp_path):
    a, b = make_run(tmp_path / "a"), make_run(tmp_path / "b")
    pd.DataFrame({"customer_id": [1]}).to_parquet(a / "segments.parquet")
    done = compare(a, b)
    assert done.returncode == 1 and "segments.parquet: only in" in done.stdout
