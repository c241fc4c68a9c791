"""Embedding export and inference: file format, sidecar, atomicity, parity, edge cases, errors."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from eventseg.run.config import CONFIG_DIR
from hydra import compose, initialize_config_dir

from eventseg.run.artifacts import file_hash
from eventseg.training.checkpoint import CheckpointError
from eventseg.data.validate import EventDataError
from eventseg.embedding.embed import (
    Embedder,
    EmbeddingsFileError,
    embed_from_config,
    length_batches,
    load_embeddings,
    write_embeddings,
)
from eventseg.data.synthetic import generate_synthetic, write_synthetic
from eventseg.training.train import train
from test_train import compose_train, tiny_overrides

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = CONFIG_DIR
DIM, MAX_LEN = 8, 40  # tiny_overrides: model.embedding_dim=8, data.max_len=40
ATOL = 1e-5


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny trained model per module: (checkpoint, events file, events DataFrame)."""
    root = tmp_path_factory.mktemp("embed")
    write_synthetic(generate_synthetic(n_customers=300, seed=1), root / "data")
    events_path = root / "data" / "events.parquet"
    result = train(compose_train(tiny_overrides(root, events_path) + ["trainer.max_epochs=1", "callbacks.early_stopping=null"]))
    return result.checkpoint, events_path, pd.read_parquet(events_path)


@pytest.fixture(scope="module")
def embedder(trained):
    return Embedder.from_checkpoint(trained[0], device="cpu")


@pytest.fixture(scope="module")
def reference(embedder, trained):
    """The API's embeddings of every customer, computed once."""
    return embedder.embed(trained[2])


def compose_embed(overrides):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="embed", overrides=overrides)


def as_matrix(df: pd.DataFrame) -> np.ndarray:
    return np.stack(df["embedding"].to_numpy())


def no_leftovers(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


# ---- API and file format -----------------------------------------------------------------


def test_embed_returns_one_float32_vector_per_customer(embedder, reference, trained):
    events = trained[2]
    assert list(reference.columns) == ["customer_id", "embedding"]
    assert reference["customer_id"].tolist() == sorted(events.customer_id.unique())
    m = as_matrix(reference)
    assert m.dtype == np.float32 and m.shape == (events.customer_id.nunique(), DIM) and np.isfinite(m).all()
    assert reference.attrs["customers_without_events"] == []
    ids, matrix = embedder.embed_store(embedder.encode(events))
    np.testing.assert_array_equal(ids, reference["customer_id"].to_numpy())
    np.testing.assert_allclose(matrix, m, atol=ATOL, rtol=0)
    assert embedder.embedding_dim == DIM and embedder.max_len == MAX_LEN


@pytest.mark.parametrize("kind", ["int", "string"])
def test_file_schema_keeps_the_id_type(tmp_path, embedder, reference, trained, kind):
    events = trained[2]
    if kind == "string":
        events = events.assign(customer_id="c" + events.customer_id.astype(str))
    out = embedder.embed_to_file(events, tmp_path / "embeddings.parquet")
    schema = pq.read_schema(out)
    assert schema.names == ["customer_id", "embedding"]
    assert schema.field("customer_id").type == (pa.int64() if kind == "int" else pa.string())
    assert schema.field("embedding").type == pa.list_(pa.float32(), DIM)  # fixed_size_list<float>[8]
    ids, matrix = load_embeddings(out)
    assert matrix.dtype == np.float32 and matrix.shape == (len(reference), DIM)
    assert ids.dtype == np.int64 if kind == "int" else ids.dtype.kind == "U"
    if kind == "string":
        order = np.argsort(ids)  # string ids sort differently; the vectors must not change
        ref = reference.set_index(reference.customer_id.map(lambda i: f"c{i}"))
        np.testing.assert_allclose(matrix[order], as_matrix(ref.loc[ids[order]]), atol=ATOL, rtol=0)
    else:
        np.testing.assert_array_equal(ids, reference.customer_id.to_numpy())
        np.testing.assert_allclose(matrix, as_matrix(reference), atol=ATOL, rtol=0)


def test_sidecar_says_what_produced_the_embeddings(tmp_path, embedder, trained):
    with pytest.warns(UserWarning, match="1 requested customer"):
        out = embedder.embed_to_file(trained[2], tmp_path / "embeddings.parquet", customer_ids=[trained[2].customer_id.iloc[0], -7])
    meta = json.loads((tmp_path / "embeddings.parquet.json").read_text())
    assert meta["checkpoint_sha256"] == file_hash(trained[0])
    assert meta["model_config"]["embedding_dim"] == DIM and meta["model_config"]["d_model"] == 32
    assert "data_state" not in meta["model_config"]
    assert meta["embedding_dim"] == DIM and meta["rows"] == 1 and meta["parts"] == 1
    assert meta["eventseg_version"] and meta["created_at"]
    assert meta["customers_without_events"] == [-7] and meta["n_customers_without_events"] == 1
    assert meta["id_col"] == "customer_id" and meta["id_dtype"] == "int64" and meta["max_len"] == MAX_LEN
    assert out == tmp_path / "embeddings.parquet"


def test_part_files_and_reading_without_eventseg(tmp_path, embedder, reference, trained):
    out = embedder.embed_to_file(trained[2], tmp_path / "embeddings.parquet", rows_per_part=120)
    assert out.is_dir()
    assert sorted(p.name for p in out.iterdir()) == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert json.loads((tmp_path / "embeddings.parquet.json").read_text())["parts"] == 3
    ids, matrix = load_embeddings(out)
    np.testing.assert_array_equal(ids, reference.customer_id.to_numpy())
    np.testing.assert_allclose(matrix, as_matrix(reference), atol=ATOL, rtol=0)
    np.save(tmp_path / "expected.npy", matrix)
    code = f"""
import sys
import numpy as np, pandas as pd, pyarrow.parquet as pq
expected = np.load({str(tmp_path / 'expected.npy')!r})
for path in ({str(out)!r}, {str(out / 'part-00000.parquet')!r}):
    df = pd.read_parquet(path)
    m = np.stack(df["embedding"].to_numpy())
    assert m.dtype == np.float32 and np.array_equal(m, expected[: len(m)]), path
    t = pq.read_table(path)
    m2 = t.column("embedding").combine_chunks().flatten().to_numpy().reshape(t.num_rows, -1)
    assert np.array_equal(m2, expected[: len(m2)]) and t.schema.field("customer_id").type == "int64"
assert "eventseg" not in sys.modules and "torch" not in sys.modules
print("ok")
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0 and "ok" in run.stdout, run.stderr


def test_duckdb_reads_a_float_array(tmp_path, embedder, reference, trained):
    # a dev dependency (pyproject [dev]): a missing duckdb fails here instead of silently skipping
    import duckdb

    out = embedder.embed_to_file(trained[2], tmp_path / "embeddings.parquet")
    assert pq.read_schema(out).field("embedding").type == pa.list_(pa.float32(), DIM)  # fixed-size list on disk
    con = duckdb.connect()
    # Parquet stores a fixed-size list as a LIST (the size is Arrow metadata DuckDB ignores):
    # DuckDB sees FLOAT[], and a cast gives the fixed-size FLOAT[dim] its array_* functions want
    typ, n = con.execute(f"SELECT typeof(embedding), len(embedding) FROM read_parquet('{out}') LIMIT 1").fetchone()
    assert typ in ("FLOAT[]", f"FLOAT[{DIM}]") and n == DIM
    rows, lengths = con.execute(f"SELECT count(*), list(DISTINCT len(embedding)) FROM read_parquet('{out}')").fetchone()
    assert rows == len(reference) and lengths == [DIM]
    cos = con.execute(f"SELECT min(array_cosine_similarity(embedding::FLOAT[{DIM}], embedding::FLOAT[{DIM}])) "
                      f"FROM read_parquet('{out}')").fetchone()[0]
    assert cos == pytest.approx(1.0, abs=1e-6)
    # every vector, in full, as written
    got = con.execute(f"SELECT customer_id, embedding FROM read_parquet('{out}') ORDER BY customer_id").fetchall()
    expected = reference.sort_values("customer_id")
    assert [r[0] for r in got] == expected.customer_id.tolist()
    np.testing.assert_allclose(np.array([r[1] for r in got], dtype=np.float32), as_matrix(expected), atol=1e-7)
    # DuckDB's array functions on the cast column agree with numpy
    first, second = as_matrix(expected)[:2]
    dot = con.execute(f"SELECT array_inner_product(a.embedding::FLOAT[{DIM}], b.embedding::FLOAT[{DIM}]) FROM "
                      f"read_parquet('{out}') a, read_parquet('{out}') b WHERE a.customer_id = {got[0][0]} AND b.customer_id = {got[1][0]}"
                      ).fetchone()[0]
    assert dot == pytest.approx(float(first @ second), rel=1e-5, abs=1e-6)


# ---- atomic writes -------------------------------------------------------------------------


@pytest.mark.parametrize("rows_per_part", [None, 100])
def test_a_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path, monkeypatch, rows_per_part):
    path = tmp_path / "embeddings.parquet"
    ids = np.arange(300)
    write_embeddings(ids, np.zeros((300, 4), np.float32), path, rows_per_part=rows_per_part, note="old")
    old_bytes = {p.name: p.read_bytes() for p in ([path] if path.is_file() else path.iterdir())}
    real_write = pq.write_table
    calls = []

    def failing(table, where, **kw):
        calls.append(where)
        if len(calls) == (1 if rows_per_part is None else 2):
            Path(where).write_bytes(b"PAR1 half a file")
            raise KeyboardInterrupt("interrupted mid-write")
        return real_write(table, where, **kw)

    monkeypatch.setattr(pq, "write_table", failing)
    with pytest.raises(KeyboardInterrupt):
        write_embeddings(ids, np.ones((300, 4), np.float32), path, rows_per_part=rows_per_part, note="new")
    assert no_leftovers(tmp_path)
    assert {p.name: p.read_bytes() for p in ([path] if path.is_file() else path.iterdir())} == old_bytes
    assert json.loads((tmp_path / "embeddings.parquet.json").read_text())["note"] == "old"
    monkeypatch.undo()

    fresh = tmp_path / "fresh" / "embeddings.parquet"
    monkeypatch.setattr(pq, "write_table", failing)
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        write_embeddings(ids, np.ones((300, 4), np.float32), fresh, rows_per_part=rows_per_part)
    assert list(fresh.parent.iterdir()) == []  # neither data, temp files nor sidecar


def test_embed_reads_a_runs_stored_model_and_refuses_a_changed_one(tmp_path, trained):
    """ckpt=<run folder>: the model its train_metrics.json names in the store, the same file as
    ckpt=<that checkpoint>; a store checkpoint whose bytes changed is refused before loading."""
    ckpt, events_path, _ = trained
    run = ckpt.parents[2] / "run"
    by_run, by_file = tmp_path / "by_run", tmp_path / "by_file"
    for ckpt_arg, out in ((run, by_run), (ckpt, by_file)):
        embed_from_config(compose_embed([f"ckpt={ckpt_arg}", "data=events", f"data.path={events_path}", f"out_dir={out}"]))
    assert pq.read_table(by_run / "embeddings.parquet").equals(pq.read_table(by_file / "embeddings.parquet"))

    entry = tmp_path / "store" / ckpt.parent.name  # a copy of the entry: the module's store stays intact
    shutil.copytree(ckpt.parent, entry)
    data = bytearray((entry / "best.ckpt").read_bytes())
    data[len(data) // 2] ^= 0x01
    (entry / "best.ckpt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="best.ckpt changed after it was stored .*force=true"):
        Embedder.from_checkpoint(entry / "best.ckpt")
    out = tmp_path / "tampered"
    with pytest.raises(CheckpointError, match="changed after it was stored"):
        embed_from_config(compose_embed([f"ckpt={entry / 'best.ckpt'}", "data=events", f"data.path={events_path}", f"out_dir={out}"]))
    assert not out.exists()


def test_errors_leave_no_output(tmp_path, embedder, trained):
    ckpt, events_path, events = trained
    out = tmp_path / "out"
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    for bad, message in ((tmp_path / "missing.ckpt", "not found"), (junk, "not a readable"), (foreign, "not an eventseg checkpoint")):
        with pytest.raises(CheckpointError, match=message):
            Embedder.from_checkpoint(bad)
        with pytest.raises(CheckpointError, match=message):
            embed_from_config(compose_embed([f"ckpt={bad}", "data=events", f"data.path={events_path}", f"out_dir={out}"]))

    with pytest.raises(EventDataError, match="column 'channel'.*missing") as err:
        embedder.embed(events.drop(columns="channel"))
    assert "trained on events with id column 'customer_id'" in str(err.value)
    no_channel = tmp_path / "no_channel.parquet"
    events.drop(columns="channel").to_parquet(no_channel)
    with pytest.raises(EventDataError, match="column 'channel'.*missing"):
        embed_from_config(compose_embed([f"ckpt={ckpt}", "data=events", f"data.path={no_channel}", f"out_dir={out}"]))
    with pytest.raises(EventDataError, match="empty"):
        embedder.embed(events.iloc[:0])
    with pytest.raises(EventDataError, match="no events before the cutoff"):
        embedder.embed(events, cutoff="2000-01-01")
    with pytest.raises(FileNotFoundError):
        embedder.embed(tmp_path / "nope.parquet")
    assert not out.exists()


def test_load_embeddings_rejects_other_files(tmp_path):
    pd.DataFrame({"customer_id": [1, 2], "x": [0.1, 0.2]}).to_parquet(tmp_path / "other.parquet")
    with pytest.raises(EmbeddingsFileError, match="no 'embedding' column"):
        load_embeddings(tmp_path / "other.parquet")
    ragged = pa.table({"customer_id": [1, 2], "embedding": pa.array([[0.1, 0.2], [0.3]], pa.list_(pa.float32()))})
    pq.write_table(ragged, tmp_path / "ragged.parquet")
    with pytest.raises(EmbeddingsFileError, match="ragged"):
        load_embeddings(tmp_path / "ragged.parquet")
    # a plain list<float> column with equal lengths (as Spark or pandas would write) is fine
    even = pa.table({"customer_id": ["a", "b"], "embedding": pa.array([[0.1, 0.2], [0.3, 0.4]], pa.list_(pa.float64()))})
    pq.write_table(even, tmp_path / "even.parquet")
    ids, m = load_embeddings(tmp_path / "even.parquet")
    assert ids.tolist() == ["a", "b"] and m.dtype == np.float32 and m.shape == (2, 2)
    (tmp_path / "text.parquet").write_text("hello")
    with pytest.raises(EmbeddingsFileError, match="not a readable Parquet"):
        load_embeddings(tmp_path / "text.parquet")


# ---- parity and edge cases ---------------------------------------------------------------


def test_script_api_batch_and_single_customer_agree(tmp_path, trained, reference):
    ckpt, events_path, events = trained
    overrides = [f"ckpt={ckpt}", "data=events", f"data.path={events_path}", f"out_dir={tmp_path}", "device=cpu"]
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "embed.py"), *overrides],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout)["rows"] == len(reference)
    assert not (tmp_path / "outputs").exists()
    ids, script = load_embeddings(tmp_path / "embeddings.parquet")
    np.testing.assert_array_equal(ids, reference.customer_id.to_numpy())
    api = as_matrix(reference)
    assert np.abs(script - api).max() < ATOL

    small = Embedder.from_checkpoint(ckpt, device="cpu", batch_size=7)  # other batch mates, other padding
    assert np.abs(as_matrix(small.embed(events)) - api).max() < ATOL
    # Ages are measured to one as-of time for everyone (the table's last event by default),
    # so a customer embedded alone matches the batch when both are given that time.
    as_of = events.ts.max() + pd.Timedelta(seconds=1)
    together = as_matrix(small.embed(events, cutoff=as_of))
    counts = events.customer_id.value_counts()
    picks = [counts.idxmin(), counts.idxmax(), counts.index[len(counts) // 2]]
    for cid in picks:
        alone = small.embed(events[events.customer_id == cid], cutoff=as_of)
        assert np.abs(as_matrix(alone)[0] - together[ids == cid][0]).max() < ATOL, cid


def test_recency_reaches_the_embedding(embedder, trained):
    """Two customers with the same history, one of them months earlier: the shared as-of
    anchor makes their embeddings differ (with per-customer anchors they would be equal)."""
    events = trained[2]
    cid = events.customer_id.value_counts().index[0]
    recent = events[events.customer_id == cid].copy()
    lapsed = recent.assign(customer_id=-1, ts=recent.ts - pd.Timedelta(days=120))
    both = as_matrix(embedder.embed(pd.concat([recent, lapsed], ignore_index=True)))
    assert np.abs(both[0] - both[1]).max() > 1e-3


def test_embed_from_config_reports_expected_customers_without_events(tmp_path, trained, reference):
    ckpt, events_path, events = trained
    expected = pd.DataFrame({"customer_id": [*reference.customer_id.iloc[:5], 11, 12]})
    expected.to_parquet(tmp_path / "expected.parquet")
    cfg = compose_embed([f"ckpt={ckpt}", "data=events", f"data.path={events_path}", f"paths.root_dir={tmp_path}",
                         f"customers={tmp_path / 'expected.parquet'}", "rows_per_part=2"])
    assert cfg.out_dir == f"{tmp_path}/runs/events"
    with pytest.warns(UserWarning, match="2 requested customer"):
        result = embed_from_config(cfg)
    assert result["rows"] == 5 and result["customers_without_events"] == 2
    ids, m = load_embeddings(result["embeddings"])
    np.testing.assert_array_equal(ids, expected.customer_id.iloc[:5].to_numpy())
    assert np.abs(m - as_matrix(reference)[:5]).max() < ATOL
    meta = json.loads(Path(result["sidecar"]).read_text())
    assert meta["customers_without_events"] == [11, 12] and meta["parts"] == 3


def test_edge_case_customers(embedder, trained):
    events = trained[2]
    counts = events.customer_id.value_counts()
    one = counts.index[counts == 1][0]
    long = counts.index[counts > MAX_LEN + 5][0]
    as_of = events.ts.max() + pd.Timedelta(seconds=1)  # one anchor for the batch and the singles
    ref = embedder.embed(events, cutoff=as_of).set_index("customer_id")

    # a one-event customer: finite, same alone as in the full batch
    alone = embedder.embed(events[events.customer_id == one], cutoff=as_of)
    assert np.isfinite(as_matrix(alone)).all()
    assert np.abs(as_matrix(alone)[0] - ref.loc[one, "embedding"]).max() < ATOL

    # more than max_len events: the last max_len are events, the older ones reach z through
    # the `earlier` summary, so dropping them changes the vector (nothing is silently lost)...
    hist = events[events.customer_id == long].sort_values("ts")
    assert len(hist) > MAX_LEN + 1
    tail = embedder.embed(hist.iloc[-(MAX_LEN + 1):], cutoff=as_of)
    assert np.abs(as_matrix(tail)[0] - ref.loc[long, "embedding"]).max() > 1e-3
    # ...while the same kept events with the same summary give the same vector
    again = embedder.embed(hist, cutoff=as_of)
    assert np.abs(as_matrix(again)[0] - ref.loc[long, "embedding"]).max() < ATOL
    head = embedder.embed(hist.iloc[: MAX_LEN + 1], cutoff=as_of)
    assert np.abs(as_matrix(head)[0] - ref.loc[long, "embedding"]).max() > 1e-3  # the oldest events are not the ones kept

    # only categories the model never saw: all map to the unseen bucket, so which ones is irrelevant
    unseen_a = hist.assign(customer_id=-1, event_type="teleport", category="antigravity", channel="pigeon")
    unseen_b = hist.assign(customer_id=-1, event_type="x1", category="x2", channel="x3")
    a, b = as_matrix(embedder.embed(unseen_a, cutoff=as_of))[0], as_matrix(embedder.embed(unseen_b, cutoff=as_of))[0]
    assert np.isfinite(a).all() and np.abs(a - b).max() < ATOL
    assert np.abs(a - ref.loc[long, "embedding"]).max() > 1e-4

    # a requested customer with no events is reported, not dropped silently
    with pytest.warns(UserWarning, match=r"1 requested customer.*424242"):
        got = embedder.embed(events, customer_ids=[long, 424242, one], cutoff=as_of)
    assert got.customer_id.tolist() == [long, one]  # the order asked for
    assert got.attrs["customers_without_events"] == [424242]
    # ...including customers whose events all fall after the cutoff
    one_ts = events.loc[events.customer_id == one, "ts"].iloc[0]
    with pytest.warns(UserWarning, match="requested customer"):
        got = embedder.embed(events, customer_ids=[long, one], cutoff=one_ts)
    assert one in got.attrs["customers_without_events"] and one not in got.customer_id.tolist()
    assert (long in got.customer_id.tolist()) == (hist.ts.iloc[0] < one_ts)
    # ids of the other type are compared as text: "0<id>" is not the customer <id>
    with pytest.warns(UserWarning, match="requested customer"):
        got = embedder.embed(events, customer_ids=[str(long), f"0{one}"], cutoff=as_of)
    assert got.customer_id.tolist() == [long] and got.attrs["customers_without_events"] == [f"0{one}"]


@pytest.mark.parametrize("encoder", ["gru", "transformer"])
def test_padding_invariance_of_both_encoders(embedder, trained, encoder):
    """Untrained weights are enough: batch mates and padding must not move a vector."""
    from eventseg.training.module import SequenceEncoderModule

    torch.manual_seed(0)
    model = SequenceEncoderModule(embedder.encoders.feature_spec.to_dict(), encoder=encoder, decoder="gru",
                                d_model=32, embedding_dim=DIM, num_layers=2)
    store = embedder.encode(trained[2])
    big = Embedder(model, embedder.encoders, MAX_LEN, device="cpu", batch_size=512)
    one = Embedder(model, embedder.encoders, MAX_LEN, device="cpu", batch_size=1)
    # shuffled batches of 37: every customer padded to someone else's length
    rng = np.random.default_rng(0)
    perm = rng.permutation(store.n_customers)
    _, z_big = big.embed_store(store)
    _, z_one = one.embed_store(store)
    model.eval()
    with torch.inference_mode():
        z_mixed = np.concatenate([model.encode(store.batch(perm[i:i + 37])).numpy() for i in range(0, len(perm), 37)])
    assert np.abs(z_big - z_one).max() < ATOL
    assert np.abs(z_mixed - z_big[perm]).max() < ATOL


def test_length_batches_cover_everyone_once_within_limits():
    lengths = np.random.default_rng(0).integers(1, 200, 1000)
    batches = length_batches(lengths, batch_size=64, max_batch_events=2000)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    assert np.all(np.diff(lengths[flat]) >= 0)
    assert all(len(b) <= 64 and len(b) * lengths[b].max() <= 2000 for b in batches)
    subset = length_batches(lengths, np.arange(0, 1000, 3), batch_size=10, max_batch_events=None)
    assert sorted(np.concatenate(subset).tolist()) == list(range(0, 1000, 3))


# ---- GPU -------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_bf16_agrees_with_cpu_fp32(trained, reference):
    """bf16-mixed runs the event encoder in bfloat16 (the GRU and the bottleneck stay fp32):
    vectors are not bit-identical, so the check is direction per customer: cosine > 0.99.
    GPU fp32 must match CPU fp32 to 1e-4 (cuDNN vs MKL summation order)."""
    ckpt, _, events = trained
    cpu = as_matrix(reference)
    fp32 = as_matrix(Embedder.from_checkpoint(ckpt, device="cuda").embed(events))
    bf16 = as_matrix(Embedder.from_checkpoint(ckpt, device="cuda", precision="bf16-mixed").embed(events))
    assert np.abs(fp32 - cpu).max() < 1e-4
    cos = (bf16 * fp32).sum(1) / (np.linalg.norm(bf16, axis=1) * np.linalg.norm(fp32, axis=1))
    assert cos.min() > 0.99, cos.min()
