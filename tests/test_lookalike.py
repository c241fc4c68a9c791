"""Lookalike audiences: the scorer on planted clusters, exact vs approximate search, the seed
definitions, the held-out evidence, the outputs of a finished run, and every bad input refused
before any similarity is computed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from eventseg.run.errors import ConfigError, UserError
from eventseg.apps.lookalike import LookalikeScorer, find_lookalikes
from eventseg.apps.lookalike import api as lookalike_api
from eventseg.apps.lookalike.evidence import heldout_recall, holdout_split
from eventseg.apps.lookalike.index import ExactIndex, IVFIndex, build_index
from eventseg.apps.lookalike.seeds import parse_seed_spec, resolve_seeds
from eventseg.run.manifest import read_manifest, verify_files

REPO = Path(__file__).resolve().parents[1]


def planted(n_per: int = 400, k: int = 4, dim: int = 16, seed: int = 0):
    """k well-separated Gaussian clusters: (X, cluster label)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (k, dim))
    y = np.repeat(np.arange(k), n_per)
    return (centers[y] + rng.normal(0, 1, (len(y), dim))).astype(np.float32), y


@pytest.fixture()
def run(finished_run, tmp_path):
    """A writable copy of the shared finished run."""
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


@pytest.fixture()
def customers(finished_run):
    return pd.read_parquet(finished_run / "customers.parquet")


# --- scorer and index ------------------------------------------------------------------------------


@pytest.mark.parametrize("weight", [0.0, 0.75, 1.0])
def test_seeds_from_one_cluster_rank_that_cluster_first(weight):
    X, y = planted()
    seeds = np.flatnonzero(y == 2)[:30]
    rank = LookalikeScorer(centroid_weight=weight).fit(X[seeds]).rank(X)
    top = np.argsort(rank)[: int((y == 2).sum())]
    assert (y[top] == 2).mean() > 0.95


def test_knn_term_follows_a_seed_set_of_two_groups():
    """A centroid between two groups resembles neither; the nearest-seed term finds both."""
    X, y = planted(k=6)
    seeds = np.concatenate([np.flatnonzero(y == 0)[:20], np.flatnonzero(y == 3)[:20]])
    rank = LookalikeScorer(centroid_weight=0.0).fit(X[seeds]).rank(X)
    top = np.argsort(rank)[: int(np.isin(y, [0, 3]).sum())]
    assert np.isin(y[top], [0, 3]).mean() > 0.95


def test_exact_and_approximate_search_agree_on_a_small_set():
    X, _ = planted(n_per=1500, dim=16)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    queries = X[::37]
    _, want = ExactIndex(X).search(queries, 10)
    ann = IVFIndex(X, nprobe=16)
    _, got = ann.search(queries, 10)
    assert ann.nlist > ann.nprobe  # really approximate: not every cell is scanned
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, want)])
    assert recall >= 0.9


def test_index_is_chosen_by_size():
    X, _ = planted(n_per=500)
    assert build_index(X, n_queries=100).kind == "exact"
    assert build_index(X, n_queries=100, max_exact_pairs=1e3).kind == "ann"
    assert build_index(X[:50], n_queries=10**6, kind="ann").kind == "exact"  # too few to cut into cells
    with pytest.raises(ConfigError, match="index='fast'"):
        build_index(X, 10, kind="fast")


def test_scorer_follows_the_scikit_learn_contract():
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError

    X, _ = planted()
    scorer = LookalikeScorer(n_neighbors=5, centroid_weight=0.3)
    with pytest.raises(NotFittedError):
        scorer.score(X)
    assert clone(scorer).get_params() == scorer.get_params()
    scores = scorer.fit(X[:40]).score(X)
    assert scores.shape == (len(X),) and np.all(np.abs(scores) <= 1.0 + 1e-5)
    assert sorted(scorer.rank(X)) == list(range(1, len(X) + 1))
    with pytest.raises(ConfigError, match="centroid_weight"):
        LookalikeScorer(centroid_weight=2).fit(X[:40])


# --- evidence --------------------------------------------------------------------------------------


def test_holdout_split_is_disjoint_and_complete():
    fit, held = holdout_split(50, 0.2, seed=3)
    assert len(held) == 10 and not set(fit) & set(held) and sorted([*fit, *held]) == list(range(50))


def test_heldout_recall_is_measured_on_seeds_not_used_to_fit():
    """Structureless vectors: unseen seeds rank like anyone (~10% in the top 10%); a seed that was
    used to fit would find itself as its nearest seed and rank near the top."""
    X = np.random.default_rng(0).normal(size=(3000, 16)).astype(np.float32)
    seeds = np.arange(0, 3000, 10)
    result = heldout_recall(X, seeds, LookalikeScorer(centroid_weight=0.0, n_neighbors=1), holdout=0.5, k=300)
    assert result["recall_in_top_share"] < 0.3
    assert result["held_out"] == 150 and result["fitted_on"] == 150
    clustered, y = planted()
    good = heldout_recall(clustered, np.flatnonzero(y == 1)[:100], LookalikeScorer(), holdout=0.2, k=400)
    assert good["recall_at_k"] > 0.9 and good["lift_at_k"] > 3


# --- seeds -----------------------------------------------------------------------------------------


def test_top_query_picks_exactly_the_top_share(finished_run, customers):
    column = next(c for c in customers.columns if c.startswith("p_"))
    seeds = resolve_seeds(parse_seed_spec(f"top:{column}:0.1"), finished_run, customers)
    chosen = np.zeros(len(customers), dtype=bool)
    chosen[seeds.positions] = True
    assert chosen.sum() == round(0.1 * len(customers))
    assert customers[column][chosen].min() >= customers[column][~chosen].max()
    assert seeds.definition["table"] == "customers.parquet" and seeds.definition["share"] == 0.1


def test_top_query_reads_an_aggregate_column(finished_run, customers):
    aggregates = pd.read_parquet(finished_run / "aggregates.parquet").set_index("customer_id")
    seeds = resolve_seeds(parse_seed_spec("top:amount_sum:20%"), finished_run, customers)
    values = aggregates["amount_sum"].reindex(customers["customer_id"]).to_numpy()
    chosen = np.zeros(len(customers), dtype=bool)
    chosen[seeds.positions] = True
    assert chosen.sum() == round(0.2 * len(customers)) and values[chosen].min() >= values[~chosen].max()
    assert seeds.definition["table"] == "aggregates.parquet"


@pytest.mark.parametrize("suffix", [".txt", ".csv", ".parquet"])
def test_seed_files(finished_run, customers, tmp_path, suffix):
    ids = customers["customer_id"].iloc[:20]
    path = tmp_path / f"vip{suffix}"
    if suffix == ".txt":
        path.write_text("# my best customers\n" + "\n".join(map(str, ids)) + f"\n\n{ids.iloc[0]}\n")
    elif suffix == ".csv":
        ids.to_frame().to_csv(path, index=False)
    else:
        ids.to_frame("whatever").to_parquet(path)  # a single column is taken as the ids
    seeds = resolve_seeds(parse_seed_spec(str(path)), finished_run, customers)
    assert list(customers["customer_id"].iloc[seeds.positions]) == list(ids)
    assert seeds.definition["kind"] == "file" and len(seeds.definition["file_sha256"]) == 64


# --- the API on a finished run ---------------------------------------------------------------------


def test_lookalikes_of_a_finished_run(run, customers):
    seeds = customers["customer_id"].iloc[:30].tolist()
    result = find_lookalikes(run, seeds, k=50, name="vip")
    out = pd.read_parquet(run / "lookalikes" / "vip.parquet")
    assert len(out) == 50 == result["rows"]
    assert {"customer_id", "similarity", "rank", "segment"} <= set(out.columns)
    published = {c for c in customers.columns if c.startswith(("p_", "pred_"))}
    assert published and published <= set(out.columns)
    assert list(out["rank"]) == list(range(1, 51)) and out["similarity"].is_monotonic_decreasing
    assert not out["customer_id"].isin(seeds).any() and not out["is_seed"].any()
    observed = result["evidence"]["observed_outcomes"]["per_label"]
    assert observed and all("lookalike_mean" in v and "random_mean" in v for v in observed.values())
    assert result["evidence"]["held_out_seeds"]["held_out"] == 6
    verify_files(run, ["customers.parquet"], read_manifest(run))  # the run stays verifiable

    everyone = find_lookalikes(run, seeds, k=None, name="all", include_seeds=True)
    out = pd.read_parquet(run / "lookalikes" / "all.parquet")
    assert everyone["rows"] == len(customers) and set(out["customer_id"]) == set(customers["customer_id"])
    assert out.loc[out["customer_id"].isin(seeds), "is_seed"].all() and out["is_seed"].sum() == 30


def test_sidecar_records_the_seed_definition(run, customers):
    column = next(c for c in customers.columns if c.startswith("p_"))
    find_lookalikes(run, f"top:{column}:0.1", k=20)
    name = f"top_{column}_0.1"
    side = json.loads((run / "lookalikes" / f"{name}.parquet.json").read_text())
    assert side["seeds"]["definition"] == f"top:{column}:0.1" and side["seeds"]["column"] == column
    assert side["seeds"]["seeds"] == round(0.1 * len(customers)) and side["seeds"]["threshold"] is not None
    assert side["space"]["name"] == "representation" and side["scorer"]["index_used"] == "exact"
    assert side["evidence"]["held_out_seeds"]["recall_at_k"] is not None and side["rows"] == 20


def test_embedding_space_on_request(run, customers):
    result = find_lookalikes(run, customers["customer_id"].iloc[:20].tolist(), k=10, name="emb", space="embedding")
    side = json.loads((run / "lookalikes" / "emb.parquet.json").read_text())
    assert result["space"] == "embedding" == side["space"]["name"] and side["space"]["file"] == "embeddings.parquet"


def test_labels_file_gone_is_a_note_not_an_error(run, customers):
    manifest = json.loads((run / "run.json").read_text())
    manifest["config"]["labels"]["path"] = str(run / "no_such_labels.parquet")
    (run / "run.json").write_text(json.dumps(manifest))
    result = find_lookalikes(run, customers["customer_id"].iloc[:20].tolist(), k=10, name="x")
    assert "not reachable" in result["evidence"]["observed_outcomes"]["note"]


# --- bad input: one clear error before any work ----------------------------------------------------


def _text_ids(tmp_path, ids) -> str:
    path = tmp_path / "seeds.txt"
    path.write_text("\n".join(map(str, ids)) + "\n")
    return str(path)


BAD = {
    "not in run": (lambda c, t: _text_ids(t, [*c["customer_id"].iloc[:10], 1, 2, 3]), {},
                   r"seed file .*seeds\.txt: 3 of 13 seed ids are not customers of the run, e\.g\. \[1, 2, 3\]"),
    "too few": (lambda c, t: c["customer_id"].iloc[:4].tolist(), {}, r"gives 4 seed customer\(s\).*min_seeds=10"),
    "another type": (lambda c, t: [f"C{i}" for i in c["customer_id"].iloc[:20]], {},
                     r"holds text .* customer ids are numbers"),
    "missing column": (lambda c, t: "top:spend_90d:0.10", {},
                       r"no numeric column 'spend_90d'.*customers\.parquet: .*p_.*aggregates\.parquet: .*amount_sum"),
    "bad share": (lambda c, t: "top:amount_sum:1.5", {}, r"share '1\.5' must be a fraction"),
    "bad query": (lambda c, t: "top:amount_sum", {}, r"not a query of the form top:<column>:<share>"),
    "null ids": (lambda c, t: pd.Series([1.0, None] * 10), {}, r"10 null id\(s\) of 20"),
    "bad k": (lambda c, t: "top:amount_sum:0.1", {"k": 0}, r"k=0 must be a positive"),
    "bad name": (lambda c, t: "top:amount_sum:0.1", {"name": "../escape"}, r"name='\.\./escape'"),
    "bad space": (lambda c, t: "top:amount_sum:0.1", {"space": "pixels"}, r"space='pixels'"),
    "few from query": (lambda c, t: "top:amount_sum:0.01", {}, r"gives 3 seed customer\(s\)"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_refused_before_any_work(run, customers, tmp_path, monkeypatch, case):
    make, kwargs, message = BAD[case]
    seeds = make(customers, tmp_path)

    def no_work(*a, **k):
        raise AssertionError("vectors were loaded before the input was checked")

    monkeypatch.setattr(lookalike_api, "load_space", no_work)
    with pytest.raises(UserError, match=message):
        find_lookalikes(run, seeds, **kwargs)
    assert not (run / "lookalikes").exists()


def test_seed_file_not_found(run):
    with pytest.raises(FileNotFoundError, match="seed file not found"):
        find_lookalikes(run, "/nonexistent/seeds.csv")


def test_missing_ids_can_be_dropped(run, customers, tmp_path):
    path = _text_ids(tmp_path, [*customers["customer_id"].iloc[:12], 1, 2])
    find_lookalikes(run, path, k=5, on_missing="drop")
    side = json.loads((run / "lookalikes" / "seeds.parquet.json").read_text())
    assert side["seeds"]["not_in_run_dropped"] == 2 and side["seeds"]["seeds"] == 12


# --- the script ------------------------------------------------------------------------------------


def test_script_writes_the_audience_and_reports_errors_in_one_line(run, customers):
    column = next(c for c in customers.columns if c.startswith("p_"))
    cmd = [sys.executable, str(REPO / "scripts" / "lookalike.py"), f"run_dir={run}"]
    done = subprocess.run([*cmd, f"seeds=top:{column}:0.2", "k=25", "name=cli"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["rows"] == 25 and Path(summary["lookalikes"]) == run / "lookalikes" / "cli.parquet"
    bad = subprocess.run([*cmd, "seeds=top:nope:0.2"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and "no numeric column 'nope'" in bad.stderr
