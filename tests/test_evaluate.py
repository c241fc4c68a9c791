"""The evaluation: bootstrap intervals, every row of the table, the CJ demographic labels, the script."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from sklearn.metrics import roc_auc_score

from eventseg.data.io import read_events
from eventseg.data.schema import EventSchema
from eventseg.data.sources import completejourney_demographic_labels
from eventseg.experiments.evaluate import evaluate_from_config, evaluate_probes, render_markdown
from eventseg.propensity.metrics import bootstrap_aucs, percentile_interval, roc_auc
from test_train import CONFIGS, ROOT, tiny_overrides

SCHEMA = EventSchema(categorical=("event_type", "category", "channel"), numeric=("amount",))


def scored(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(float)
    return y, np.round(y * 0.6 + rng.random(n), 1)  # rounded: ties on purpose


def test_point_auc_is_sklearns_with_ties():
    y, p = scored(500)
    assert roc_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)


def test_bootstrap_interval_contains_the_auc_and_narrows_with_data():
    widths = []
    for n in (100, 1600):
        y, p = scored(n, seed=n)
        samples = bootstrap_aucs(y, p, n_boot=1000, seed=0)
        lo, hi = percentile_interval(samples)
        assert lo < roc_auc(y, p) < hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2  # ~ 1/sqrt(n): 4x the data, half the width


def test_bootstrap_is_seeded_and_paired():
    y, p = scored(200)
    a = bootstrap_aucs(y, p, 300, seed=1)
    assert np.array_equal(a, bootstrap_aucs(y, p, 300, seed=1))
    assert not np.array_equal(a, bootstrap_aucs(y, p, 300, seed=2))
    chunked = bootstrap_aucs(y, p, 300, seed=1, chunk_cells=1000)  # chunking changes nothing
    assert np.array_equal(a, chunked)
    assert np.allclose(bootstrap_aucs(y, 2 * p + 1, 300, seed=1), a)  # same ranks, same resamples


@pytest.fixture(scope="module")
def tiny(tiny_events):
    events = read_events(str(tiny_events), SCHEMA)
    labels = pd.read_parquet(tiny_events.parent / "labels.parquet")
    truth = pd.read_parquet(tiny_events.parent / "truth.parquet")
    rng = np.random.default_rng(0)
    ids = labels["customer_id"].to_numpy()
    y = labels["purchase_within_30d"].to_numpy()
    embeddings = {
        "random": (ids, rng.normal(size=(len(ids), 8))),
        "informed": (ids, np.c_[y + rng.normal(0, 0.5, len(ids)), rng.normal(size=(len(ids), 7))]),
    }
    return events, labels, truth, embeddings


def test_table_has_every_row(tiny):
    events, labels, truth, embeddings = tiny
    result = evaluate_probes(events, SCHEMA, embeddings, labels, truth=truth, split_fractions=(0.5, 0.1, 0.4),
                             n_boot=200, threads=1)  # fmt: skip
    reps = ["aggregates", "random", "random+aggregates", "informed", "informed+aggregates"]
    assert result["representations"] == reps
    assert set(result["results"]) == {"purchase_within_30d", "churn_30d"}
    assert "spend_30d" in result["labels"]["skipped"]  # continuous: reported, not probed
    md = render_markdown(result)
    for label, r in result["results"].items():
        rows = {(row["representation"], row["probe"]) for row in r["rows"]}
        assert rows == {(rep, kind) for rep in reps for kind in ("logistic", "hgb")} | {("oracle", None)}
        for rep in reps:
            for kind in ("logistic", "hgb"):
                assert f"| {rep} | {kind} |" in md
        assert {(d["embeddings"], d["probe"]) for d in r["deltas"]} == {(e, k) for e in embeddings for k in ("logistic", "hgb")}
        for row in r["rows"]:
            lo, hi = row["roc_auc_ci"]
            assert lo <= row["roc_auc"] <= hi and row["n_test"] == r["n_test"]
    assert md.count("| oracle | — |") == 2 and md.count("## ") == 3  # two labels + skipped
    auc = {(row["representation"], row["probe"]): row["roc_auc"] for row in result["results"]["purchase_within_30d"]["rows"]}
    for kind in ("logistic", "hgb"):
        assert auc["informed", kind] > auc["random", kind] + 0.15
    json.dumps(result)  # JSON-ready as it is


def test_unlabelled_customers_and_one_class_labels(tiny):
    events, labels, _, embeddings = tiny
    extra = labels[["customer_id"]].copy()
    extra["half_known"] = np.where(np.arange(len(extra)) % 2 == 0, labels["purchase_within_30d"], np.nan)
    extra["constant"] = 1
    result = evaluate_probes(events, SCHEMA, {"informed": embeddings["informed"]}, [labels, extra],
                             kinds=["logistic"], n_boot=50, threads=1)  # fmt: skip
    assert result["results"]["half_known"]["n_test"] < result["results"]["purchase_within_30d"]["n_test"]
    assert "only one class" in result["labels"]["skipped"]["constant"]
    assert "1 - purchase_within_30d" not in json.dumps(result["labels"]["skipped"])  # churn is not purchase's complement here


def test_clear_errors(tiny):
    events, labels, _, embeddings = tiny
    with pytest.raises(ValueError, match="no binary"):
        evaluate_probes(events, SCHEMA, embeddings, labels[["customer_id", "spend_30d"]], n_boot=10)
    with pytest.raises(ValueError, match="probe kinds"):
        evaluate_probes(events, SCHEMA, embeddings, labels, kinds=["svm"])
    with pytest.raises(ValueError, match="no embeddings 'x' id matches"):
        evaluate_probes(events, SCHEMA, {"x": (np.array(["a", "b"]), np.zeros((2, 3)))}, labels, n_boot=10)


def compose_evaluate(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="evaluate", overrides=overrides)


def test_completejourney_experiment_sets_cutoff_horizon_and_demographics():
    cfg = compose_evaluate(["experiment=completejourney_evaluate"])
    assert (cfg.data.name, str(cfg.data.cutoff)) == ("completejourney", "2017-10-01")
    assert OmegaConf.to_container(cfg.labels, resolve=True) == {"path": None, "truth_path": None, "horizon_days": 92, "demographics": "auto"}
    assert compose_evaluate([]).labels.horizon_days == 30


def test_config_errors_come_before_any_training(tmp_path, tiny_events):
    base = tiny_overrides(tmp_path, tiny_events) + ["objectives=[]"]
    with pytest.raises(FileNotFoundError, match="embeddings 'mine': file not found"):
        evaluate_from_config(compose_evaluate(base + [f"+embeddings.mine={tmp_path}/nope.parquet"]))
    with pytest.raises(ValueError, match="no labels"):
        evaluate_from_config(compose_evaluate(base + ["objectives=[reconstruction]"]))  # neither labels.path nor data.cutoff
    assert not (tmp_path / "run" / "prepared").exists()


def test_completejourney_demographic_labels(tmp_path):
    pd.DataFrame({
        "household_id": ["1", "2", "3", "4", "5"],
        "age": pd.Categorical(["65+", "35-44", "45-54", None, "19-24"]),
        "income": pd.Categorical(["Under 15K", "50-74K", "35-49K", "250K+", None]),
        "home_ownership": ["Homeowner"] * 5,
    }).to_parquet(tmp_path / "demographics.parquet")  # fmt: skip
    out = completejourney_demographic_labels(tmp_path)
    assert out["household_id"].tolist() == ["1", "2", "3", "4", "5"]
    assert out["age_45_plus"].tolist()[:3] == [1.0, 0.0, 1.0] and np.isnan(out["age_45_plus"][3]) and out["age_45_plus"][4] == 0.0
    assert out["income_over_50k"].tolist()[:4] == [0.0, 1.0, 0.0, 1.0] and np.isnan(out["income_over_50k"][4])

    pd.DataFrame({"household_id": ["1"], "age": ["45+"], "income": ["50-74K"]}).to_parquet(tmp_path / "demographics.parquet")
    with pytest.raises(ValueError, match="unknown bracket"):
        completejourney_demographic_labels(tmp_path)


@pytest.mark.slow
def test_evaluate_script_end_to_end(tmp_path, tiny_events):
    cmd = [sys.executable, str(ROOT / "scripts" / "evaluate.py"), *tiny_overrides(tmp_path, tiny_events),
           f"out_dir={tmp_path}/eval", "objectives=[reconstruction]", "trainer.max_epochs=1",
           f"labels.path={tiny_events.parent / 'labels.parquet'}", f"labels.truth_path={tiny_events.parent / 'truth.parquet'}",
           "data.split.fractions=[0.5,0.1,0.4]", "probes.n_boot=100", "probes.threads=1"]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / "eval"
    assert (out / "reconstruction" / "embeddings.parquet").exists()
    result = json.loads((out / "evaluation.json").read_text())
    md = (out / "evaluation.md").read_text(encoding="utf-8")
    for label in ("purchase_within_30d", "churn_30d"):
        rows = {(r["representation"], r["probe"]) for r in result["results"][label]["rows"]}
        reps = ("aggregates", "reconstruction", "reconstruction+aggregates")
        assert rows == {(rep, kind) for rep in reps for kind in ("logistic", "hgb")} | {("oracle", None)}
    assert md.count("| reconstruction+aggregates | hgb |") == 2

    again = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "[train_reconstruction] up to date, skipped" in again.stdout
    assert json.loads((out / "evaluation.json").read_text())["results"] == result["results"]  # same split, same seeds


def test_a_target_is_met_only_when_the_whole_interval_clears_it():
    from eventseg.experiments.evaluate import _target_status

    assert _target_status(0.031, 0.012, 0.01) == "met"
    assert _target_status(0.031, -0.033, 0.01) == "within noise of the target"
    assert _target_status(-0.005, -0.02, 0.01) == "missed"
