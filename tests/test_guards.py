"""Guards an audit showed the rest of the suite did not protect: each test here fails when its
guard is broken (checked by breaking the guard on purpose).

1. baseline features as of the cutoff, not the end of the table (no label-window leak);
2. the cutoff itself is exclusive for the history (`events_before` uses <);
3. event ages anchored to the cutoff, not to the last event;
4. `calibrate: auto` decides both ways;
5. vectorised placement walks the whole condensed tree (nested clusters);
6. write_json and report.html are written atomically;
7. DDP ranks split the batches between them (no rank trains on another's batches).
"""

import builtins
import io
import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from eventseg.data.schema import EventSchema
from conftest import make_events

# ---- 1. features and the RFM baseline as of the cutoff ------------------------------------


def test_features_as_of_cutoff_ignore_rows_after_it(schema):
    from eventseg.features.aggregates import AggregateFeatureBuilder, aggregate_features, rfm_features

    events = make_events(n_customers=80, seed=4)
    cutoff = pd.Timestamp("2025-07-01")
    # a customer whose only late events would change every RFM number: 5 big purchases after the cutoff
    late = pd.DataFrame({
        "customer_id": 7, "ts": pd.to_datetime(["2025-02-01", *pd.date_range("2025-08-01", periods=5, freq="D")]),
        "event_type": ["view"] + ["purchase"] * 5, "category": "cat1", "amount": [np.nan] + [500.0] * 5,
    })
    events = pd.concat([events, late], ignore_index=True).sample(frac=1.0, random_state=1)
    before = events[events.ts < cutoff]
    assert (events.ts >= cutoff).sum() > 100  # plenty of post-cutoff rows that would change features

    pd.testing.assert_frame_equal(aggregate_features(events, schema, as_of=cutoff), aggregate_features(before, schema, as_of=cutoff))
    rfm = rfm_features(events, schema, as_of=cutoff)
    pd.testing.assert_frame_equal(rfm, rfm_features(before, schema, as_of=cutoff))
    assert rfm.loc[7].tolist() == pytest.approx([150.0, 1.0, 0.0, 150.0])  # recency, frequency, monetary, tenure
    # the late rows matter when they are allowed in: the check above is not vacuous
    assert rfm_features(events, schema).loc[7, "frequency"] == 6
    builder = AggregateFeatureBuilder(schema, top_k_categories=3).fit(events, as_of=cutoff)
    pd.testing.assert_frame_equal(builder.transform(events, as_of=cutoff), builder.transform(before, as_of=cutoff))
    assert builder.categories_ == AggregateFeatureBuilder(schema, top_k_categories=3).fit(before, as_of=cutoff).categories_


def test_propensity_baselines_do_not_see_the_label_window():
    """Labels built from activity after the cutoff: a baseline built as of the end of the table
    sees that activity (recency < horizon exactly for the active) and scores ROC-AUC 1.000."""
    from sklearn.metrics import roc_auc_score

    from eventseg.data.labels import build_labels
    from eventseg.features.aggregates import rfm_features
    from eventseg.propensity.fit import evaluate_propensity
    from eventseg.data.synthetic import generate_synthetic

    data = generate_synthetic(n_customers=700, seed=3)
    schema = EventSchema(categorical=("event_type", "category", "channel"), numeric=("amount",))
    cutoff = data.cutoff - pd.Timedelta(days=30)  # the last 30 days of events are the label window
    labels = build_labels(data.events, schema, cutoff, 30)
    ids = labels["customer_id"].to_numpy()
    emb = np.random.default_rng(0).standard_normal((len(ids), 4))  # embeddings know nothing
    # purchases are purchase events: with every event counting, churn would be 1 - purchase (modelled once)
    out = evaluate_propensity(ids, emb, None, data.events, schema, {"kind": "logistic"}, seed=0, cutoff=cutoff,
                              horizon_days=30, split_fractions=(0.5, 0.2, 0.3), purchase_filter="event_type == purchase")
    assert out["metrics"]["features"]["as_of"] == str(cutoff)
    churn = out["metrics"]["test"]["churn_30d"]
    assert churn["rfm_logistic"]["n"] > 150 and 0 < churn["rfm_logistic"]["positives"] < churn["rfm_logistic"]["n"]
    # informative (recency predicts churn) but far from the leak's perfect separation
    assert 0.6 < churn["rfm_logistic"]["roc_auc"] < 0.95, churn["rfm_logistic"]
    assert churn["aggregate_hgb"]["roc_auc"] < 0.95, churn["aggregate_hgb"]
    assert out["metrics"]["test"]["purchase_within_30d"]["rfm_logistic"]["roc_auc"] < 0.95
    # what the leak looks like: recency as of the end of the table separates churners perfectly
    leaked = rfm_features(data.events, schema).reindex(ids)["recency"].to_numpy()
    assert roc_auc_score(labels["churn_30d"], leaked) > 0.99


# ---- 2. an event exactly at the cutoff belongs to the label window, not the history -------


def _at_cutoff_events():
    cutoff = pd.Timestamp("2025-02-01 00:00:00")
    df = pd.DataFrame({
        "customer_id": [1, 1, 1, 2, 2, 3],
        "ts": pd.to_datetime(["2025-01-05 10:00", "2025-01-20 12:00", "2025-02-01 00:00",
                              "2025-01-10 09:00", "2025-02-20 09:00", "2025-02-01 00:00"]),
        "event_type": ["view", "purchase", "purchase", "view", "view", "purchase"],
        "category": ["a", "b", "a", "a", "b", "a"],
        "amount": [np.nan, 20.0, 999.0, np.nan, np.nan, 999.0],
    })
    return df, cutoff


def test_event_at_the_cutoff_is_not_history(schema):
    from eventseg.data.labels import build_labels, events_before
    from eventseg.features.aggregates import rfm_features
    from eventseg.data.prepare import encode_events, prepare_events

    df, cutoff = _at_cutoff_events()
    cut_s = cutoff.value // 10**9
    history = events_before(df, schema, cutoff)
    assert len(history) == 3 and history.ts.max() < cutoff and 999.0 not in history.amount.tolist()

    prepared = prepare_events(df, schema, cutoff=cutoff, split_fractions=(1, 0, 0))
    store = prepared.store
    assert store.customer_ids.tolist() == [1, 2]  # customer 3's only event is at the cutoff
    assert store.n_events == 3 and store.timestamps.max() < cut_s
    assert prepared.report["rows_after_cutoff_filter"] == 3
    scored = encode_events(df, prepared.encoders, max_len=store.max_len, cutoff=cutoff)
    assert scored.customer_ids.tolist() == [1, 2] and scored.n_events == 3 and scored.timestamps.max() < cut_s

    rfm = rfm_features(df, schema, as_of=cutoff)
    assert rfm.index.tolist() == [1, 2] and rfm.loc[1, "frequency"] == 2 and rfm.loc[1, "monetary"] == 20.0

    # ... and it counts in the label window [cutoff, cutoff + H)
    labels = build_labels(df, schema, cutoff, horizon_days=10, amount_col="amount",
                          purchase_col="event_type", purchase_values=("purchase",)).set_index("customer_id")
    assert labels.index.tolist() == [1, 2]
    assert labels.loc[1, "churn_10d"] == 0 and labels.loc[1, "purchase_within_10d"] == 1 and labels.loc[1, "spend_10d"] == 999.0
    assert labels.loc[2, "churn_10d"] == 1  # 2025-02-20 is after the 10-day horizon


# ---- 3. event ages are measured to the cutoff ---------------------------------------------


def test_event_ages_are_measured_to_the_cutoff_not_the_last_event(schema):
    from eventseg.data.encoders import signed_log1p
    from eventseg.data.prepare import encode_events, prepare_events

    events = make_events(n_customers=40, seed=3)
    cutoff = pd.Timestamp("2026-03-01")
    last = events.ts.max()
    assert (cutoff - last).days > 100  # the two anchors are months apart
    prepared = prepare_events(events, schema, cutoff=cutoff, max_len=1000, split_fractions=(1, 0, 0))
    store = prepared.store
    assert store.n_events == len(events)  # nothing cut off, nothing truncated

    # by hand: rows in (customer, time) order, age in days before the cutoff
    order = np.lexsort((events.ts.to_numpy(), events.customer_id.to_numpy()))
    ts_s = events.ts.to_numpy()[order].astype("datetime64[s]").astype(np.int64)
    np.testing.assert_array_equal(store.timestamps, ts_s)
    age_days = (cutoff.value // 10**9 - ts_s) / 86400.0
    assert age_days.min() > 100
    log_age = signed_log1p(age_days)
    q25, median, q75 = np.percentile(log_age, [25, 50, 75])
    scaler = prepared.encoders.time.age
    assert scaler.center == pytest.approx(median, abs=1e-9) and scaler.scale == pytest.approx(q75 - q25, abs=1e-9)
    expected = np.clip((log_age - median) / (q75 - q25), -scaler.clip, scaler.clip)
    stored = store.numeric[:, store.numeric_features.index("time_log_age")]
    np.testing.assert_allclose(stored, expected, atol=1e-5)

    # the scoring path anchors to the same cutoff: identical features for the same events
    scored = encode_events(events, prepared.encoders, max_len=1000, cutoff=cutoff)
    np.testing.assert_array_equal(scored.numeric, store.numeric)


# ---- 4. calibrate: auto ----------------------------------------------------------------------


def _calibrated_scores():
    """Scores whose validation ECE is exactly 0: each value's observed rate equals the value."""
    values = np.array([0.05, 0.25, 0.45, 0.65, 0.85])
    p = np.repeat(values, 100)
    y = np.concatenate([(np.arange(100) < round(v * 100)).astype(float) for v in values])
    perm = np.random.default_rng(0).permutation(len(p))
    return p[perm], y[perm]


def test_auto_calibration_leaves_well_calibrated_scores_alone():
    from eventseg.propensity.calibration import choose_calibration
    from eventseg.propensity.metrics import expected_calibration_error

    p, y = _calibrated_scores()
    assert expected_calibration_error(y, p) < 1e-12
    calibrator, info = choose_calibration(p, y, "auto")
    assert calibrator is None and info["applied"] is False, info
    assert info["val_ece_calibrated_oof"] >= info["val_ece_raw"]
    # forced, it is applied to the same scores
    forced, info_true = choose_calibration(p, y, True)
    assert forced is not None and info_true["applied"] is True


def test_auto_calibration_fixes_badly_miscalibrated_scores():
    from eventseg.propensity.calibration import choose_calibration
    from eventseg.propensity.metrics import expected_calibration_error

    rng = np.random.default_rng(1)
    z = rng.standard_normal(1500)
    y = (rng.random(1500) < 1 / (1 + np.exp(-z))).astype(float)
    p = 1 / (1 + np.exp(-(4 * z - 1.5)))  # overconfident and shifted
    calibrator, info = choose_calibration(p, y, "auto")
    assert calibrator is not None and info["applied"] is True
    assert info["val_ece_calibrated_oof"] < 0.5 * info["val_ece_raw"]
    assert expected_calibration_error(y, calibrator.transform(p)) < 0.5 * expected_calibration_error(y, p)


# ---- 5. vectorised placement on a nested (multi-level) condensed tree ---------------------


def _nested_blobs(n, seed, dim=4):
    """2 super-groups x 2 groups x 2 sub-blobs: a condensed tree three cluster levels deep."""
    rng = np.random.default_rng(seed)
    top = np.random.default_rng(1).normal(0, 40, (2, dim))
    mid = np.random.default_rng(2).normal(0, 8, (4, dim))
    low = np.random.default_rng(3).normal(0, 0.8, (8, dim))
    centers = top[np.arange(8) // 4] + mid[np.arange(8) // 2] + low
    return centers[rng.integers(0, 8, n)] + rng.normal(0, 0.4, (n, dim))


def _walk_steps(hdb, Z):
    """Per point, how many cluster levels hdbscan's approximate_predict walks up, and its label
    after one step only (pure Python, from hdbscan's own helpers)."""
    from hdbscan.prediction import _find_neighbor_and_lambda, get_tree_row_with_child

    pdata = hdb.prediction_data_
    raw = hdb.condensed_tree_._raw_tree
    ct = pdata.cluster_tree
    up = {int(c): (int(p), float(lam)) for p, c, lam in zip(ct["parent"], ct["child"], ct["lambda_val"])}
    root = int(ct["parent"].min())
    dist, idx = pdata.tree.query(Z, k=2 * hdb.min_samples)
    steps, one_step = [], []
    for d, i in zip(dist, idx):
        nn, lam = _find_neighbor_and_lambda(i, d, pdata.core_distances, hdb.min_samples)
        row = get_tree_row_with_child(raw, nn)
        node, s, first = int(row["parent"]), 0, int(row["parent"])
        if row["lambda_val"] > lam:
            while node > root and node in up and up[node][1] >= lam:
                node, s = up[node][0], s + 1
                if s == 1:
                    first = node
        steps.append(s)
        one_step.append(pdata.cluster_map.get(first, -1))
    return np.array(steps), np.array(one_step)


def test_placement_matches_hdbscan_on_nested_clusters():
    import hdbscan

    from eventseg.segmentation.clusterer import DenseGroupPlacer, SegmentClusterer

    X = _nested_blobs(1200, 0)
    sc = SegmentClusterer(reducer="none", scaler="none", min_cluster_size=30, min_samples=5, cluster_selection_method="eom",
                          n_resamples=0, n_jobs=1, silhouette_sample_size=500).fit(X)
    hdb = sc.hdbscan_
    ct = hdb.prediction_data_.cluster_tree
    # the tree is deep, and some selected segments have sub-clusters of their own
    depth = {int(ct["parent"].min()): 0}
    for p, c in sorted(zip(ct["parent"].astype(int), ct["child"].astype(int)), key=lambda pc: pc[1]):
        depth[c] = depth[p] + 1
    assert max(depth.values()) >= 3
    assert len(hdb.prediction_data_.cluster_map) > sc.n_dense_ >= 4

    # new customers: near the blobs, on shells 5-12 away from fitted points (beyond the birth
    # distance of some segments, yet nearest to a point deep inside one), and anywhere around
    rng = np.random.default_rng(5)
    direction = rng.normal(size=(500, 4))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    shell = X[rng.integers(0, len(X), 500)] + direction * rng.uniform(5, 12, (500, 1))
    lo, hi = X.min(axis=0) - 20, X.max(axis=0) + 20
    new = np.vstack([_nested_blobs(300, 9) + rng.normal(0, 1.0, (300, 4)), shell, rng.uniform(lo, hi, (200, 4))])
    Z = sc.transform(new)
    ref_labels, ref_prob = hdbscan.approximate_predict(hdb, Z)
    ref_scores = hdbscan.approximate_predict_scores(hdb, Z)
    steps, one_step = _walk_steps(hdb, Z)
    assert (steps >= 2).sum() > 50
    assert ((steps >= 2) & (one_step != ref_labels)).sum() >= 20  # stopping after one level would mislabel these
    assert (ref_labels >= 0).sum() > 200 and (ref_labels == -1).sum() > 200

    labels, prob, scores = DenseGroupPlacer(hdb).place(Z)
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_allclose(prob, ref_prob, rtol=0, atol=1e-12)
    np.testing.assert_allclose(scores, ref_scores, rtol=0, atol=1e-12)

    # the public API: hdbscan's core members are the core customers, with its strength; the
    # outlier scores are its scores, clipped; everyone else is placed at a nearest core point
    pred = sc.predict(new)
    core = ref_labels >= 0
    np.testing.assert_array_equal(pred.is_core, core)
    np.testing.assert_allclose(pred.membership_strength[core], ref_prob[core], atol=1e-6)
    np.testing.assert_allclose(pred.outlier_score, np.clip(ref_scores, 0, 1), atol=1e-6)
    assert (pred.subsegments[~pred.is_outlier] >= 0).all()


# ---- 6. atomic JSON and report writes -------------------------------------------------------


class _HalfWriter:
    """A file whose first write lands half its data, then fails (disk full mid-write)."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        self._f.write(data[: max(1, len(data) // 2)])
        self._f.flush()
        raise OSError(28, "No space left on device (simulated)")

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()
        return False


@pytest.fixture
def writes_fail_midway(monkeypatch, tmp_path):
    """Every file opened for writing under tmp_path fails after a partial write."""
    real_open = io.open
    root = tmp_path.resolve()

    def failing_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+") and Path(file).resolve().is_relative_to(root):
            return _HalfWriter(f)
        return f

    def arm():
        monkeypatch.setattr(io, "open", failing_open)
        monkeypatch.setattr(builtins, "open", failing_open)

    return arm


class _Unprintable:
    def __str__(self):
        raise RuntimeError("cannot serialise this")

    __repr__ = __str__


def test_write_json_failing_midway_keeps_the_old_file(tmp_path, writes_fail_midway, monkeypatch):
    from eventseg.run.artifacts import write_json

    path = tmp_path / "metrics.json"
    write_json({"old": True, "values": list(range(50))}, path)
    old = path.read_bytes()
    assert json.loads(old) == {"old": True, "values": list(range(50))}

    # serialisation fails part-way through the object
    with pytest.raises(RuntimeError, match="cannot serialise"):
        write_json({"a": list(range(1000)), "z": _Unprintable()}, path)
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]

    # the disk fills up half-way through the write
    writes_fail_midway()
    with pytest.raises(OSError, match="No space left"):
        write_json({"new": True, "values": list(range(5000))}, path)
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]

    write_json({"new": True}, path)  # and a write that succeeds replaces it whole
    assert json.loads(path.read_text()) == {"new": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_report_failing_midway_keeps_the_old_report(tmp_path, writes_fail_midway, monkeypatch):
    from eventseg.report import ReportInputs, build_report
    from eventseg.segmentation.profiles import build_customers, profile_segments
    from test_segments import _inputs

    clusters, scores, features = _inputs(n=90)
    customers = build_customers(clusters, scores)
    segments = profile_segments(customers, features, "amount_sum")
    matrix = np.random.default_rng(0).normal(size=(len(customers), 4))
    inputs = ReportInputs(segments=segments, customers=customers, ids=customers["customer_id"].to_numpy(), matrix=matrix,
                          cluster_metrics={"noise_share": 0.1})
    path = tmp_path / "report.html"
    old = "<!doctype html><html><body>the previous report</body></html>"
    path.write_text(old, encoding="utf-8")

    writes_fail_midway()
    with pytest.raises(OSError, match="No space left"):
        build_report(path, inputs)
    monkeypatch.undo()
    assert path.read_text(encoding="utf-8") == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]

    build_report(path, inputs)
    assert "chart-map" in path.read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


# ---- 7. DDP: each rank takes its own share of the batches -----------------------------------


def _rank_batches(dm, rank, world, loader="train_dataloader", epoch=0):
    dm.trainer = SimpleNamespace(global_rank=rank, world_size=world)
    sampler = getattr(dm, loader)().batch_sampler
    sampler.set_epoch(epoch)
    return [tuple(b) for b in sampler]


def test_ddp_ranks_take_disjoint_batches_covering_the_epoch(schema):
    from eventseg.data.datamodule import BucketBatchSampler, EventDataModule
    from eventseg.data.split import TRAIN, VAL
    from eventseg.data.prepare import prepare_events

    prepared = prepare_events(make_events(n_customers=400, seed=5), schema, max_len=40)
    train_idx = np.flatnonzero(prepared.splits == TRAIN)
    batch_size = 16
    n_batches = -(-len(train_idx) // batch_size)
    if n_batches % 2:  # an even number of batches: no padding batch, so the ranks are exactly disjoint
        batch_size = 17
        n_batches = -(-len(train_idx) // batch_size)
    assert n_batches % 2 == 0 and n_batches >= 10
    dm = EventDataModule(prepared.store, prepared.splits, batch_size=batch_size, eval_batch_size=8, seed=3, pool_batches=4)
    for epoch in (0, 1):
        single = _rank_batches(dm, 0, 1, epoch=epoch)
        r0, r1 = _rank_batches(dm, 0, 2, epoch=epoch), _rank_batches(dm, 1, 2, epoch=epoch)
        assert len(single) == n_batches and len(r0) == len(r1) == n_batches // 2
        assert not set(r0) & set(r1)  # no batch trained twice
        seen0 = [i for b in r0 for i in b]
        seen1 = [i for b in r1 for i in b]
        assert not set(seen0) & set(seen1)
        assert sorted(seen0 + seen1) == sorted(train_idx.tolist())  # every training customer once per epoch
        assert single[0::2] == r0 and single[1::2] == r1  # every world_size-th batch of the one epoch order

    # validation is sharded the same way (each rank evaluates its own customers)
    val_idx = np.flatnonzero(prepared.splits == VAL)
    v0, v1 = _rank_batches(dm, 0, 2, "val_dataloader"), _rank_batches(dm, 1, 2, "val_dataloader")
    assert len(v0) == len(v1)
    assert set(i for b in v0 + v1 for i in b) == set(val_idx.tolist())

    # an odd number of batches: the short rank repeats one batch so both ranks take equal steps
    odd = [BucketBatchSampler(np.arange(90), np.ones(90, int), 10, True, rank=r, world_size=2) for r in (0, 1)]
    b0, b1 = [tuple(b) for b in odd[0]], [tuple(b) for b in odd[1]]
    assert len(b0) == len(b1) == 5 and len(set(b0) | set(b1)) == 9 and len(set(b0) & set(b1)) <= 1
    assert sorted(set(i for b in b0 + b1 for i in b)) == list(range(90))
