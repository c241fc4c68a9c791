import json
import math

import numpy as np
import pandas as pd
import pytest

from eventseg.data.schema import EventSchema
from eventseg.run.config import CONFIG_DIR
from eventseg.features.aggregates import OTHER, AggregateFeatureBuilder, aggregate_features, rfm_features
from eventseg.data.labels import align_to_ids
from eventseg.propensity import PropensityHeads, choose_calibration, classification_metrics, evaluate_propensity, regression_metrics
from eventseg.propensity.metrics import expected_calibration_error
from conftest import make_events

AS_OF = pd.Timestamp("2025-01-11")


@pytest.fixture
def tiny():
    """Two customers, hand-checkable; the last row is at as_of and must be ignored."""
    schema = EventSchema(categorical=("event_type", "channel"), numeric=("amount",))
    events = pd.DataFrame(
        {
            "customer_id": [1, 1, 1, 2, 1],
            "ts": pd.to_datetime(["2025-01-01 02:00", "2025-01-01 08:00", "2025-01-04 14:00", "2025-01-10 20:00", "2025-01-11 00:00"]),
            "event_type": ["view", "purchase", "purchase", "view", "purchase"],
            "channel": ["web", "web", "app", "app", "store"],
            "amount": [np.nan, 10.0, 30.0, np.nan, 1000.0],
        }
    )
    return schema, events.sample(frac=1.0, random_state=0)  # row order must not matter


def test_aggregate_features_hand_example(tiny):
    schema, events = tiny
    f = aggregate_features(events, schema, as_of=AS_OF, top_k_categories=1)
    assert list(f.index) == [1, 2] and f.index.name == "customer_id"
    assert not f.isna().any().any()
    c1, c2 = f.loc[1], f.loc[2]
    # recency, frequency, tenure
    assert c1.recency_days == pytest.approx(6 + 10 / 24) and c2.recency_days == pytest.approx(4 / 24)
    assert c1.tenure_days == pytest.approx(9 + 22 / 24) and c1.n_events == 3 and c1.active_days == 2
    assert c1.events_per_30d == pytest.approx(3 / (9 + 22 / 24) * 30) and c2.events_per_30d == 30  # tenure floored at 1 day
    # numeric statistics (NaN amounts skipped; the post-as_of 1000 never seen)
    assert (c1.amount_n, c1.amount_sum, c1.amount_mean, c1.amount_min, c1.amount_max, c1.amount_std) == (2, 40, 20, 10, 30, 10)
    assert (c2.amount_n, c2.amount_sum, c2.amount_mean, c2.amount_max) == (0, 0, 0, 0)
    # gaps: 6 h and 78 h
    lg = np.log1p([6.0, 78.0])
    assert c1.gap_log_hours_mean == pytest.approx(lg.mean()) and c1.gap_log_hours_median == pytest.approx(lg.mean())
    assert c1.gap_log_hours_std == pytest.approx(lg.std())
    assert c2.gap_log_hours_mean == 0 and c2.gap_log_hours_std == 0
    # timing: 02 h night, 08 h morning, 14 h afternoon (Saturday); customer 2 Friday 20 h
    assert [c1.share_night, c1.share_morning, c1.share_afternoon, c1.share_evening] == pytest.approx([1 / 3, 1 / 3, 1 / 3, 0])
    assert c1.share_weekend == pytest.approx(1 / 3) and c2.share_evening == 1 and c2.share_weekend == 0
    # trend: everything in the last 30 days
    assert c1.events_last_30d == 3 and c1.events_prev_60d == 0 and c1.trend_log_ratio == pytest.approx(math.log(4))
    # top-1 categories; ties broken by text: purchase (2) vs view (2) -> purchase, app vs web -> app
    assert c1.share_event_type_purchase == pytest.approx(2 / 3) and c1[f"share_event_type_{OTHER}"] == pytest.approx(1 / 3)
    assert c2.share_channel_app == 1 and c1[f"share_channel_{OTHER}"] == pytest.approx(2 / 3)

    rfm = rfm_features(events, schema, as_of=AS_OF)
    assert list(rfm.columns) == ["recency", "frequency", "monetary", "tenure"]
    assert rfm.loc[1].tolist() == pytest.approx([6 + 10 / 24, 3, 40, 9 + 22 / 24])


def test_no_events_after_as_of_reach_the_features(tiny):
    schema, events = tiny
    before = events[events.ts < AS_OF]
    with_future = aggregate_features(events, schema, as_of=AS_OF)
    pd.testing.assert_frame_equal(with_future, aggregate_features(before, schema, as_of=AS_OF))
    # default as_of: one second after the last event
    default = rfm_features(events, schema)
    assert default.loc[1, "recency"] == pytest.approx(1 / 86400) and default.loc[1, "monetary"] == 1040


def test_builder_gives_fixed_columns_on_new_customers(schema):
    builder = AggregateFeatureBuilder(schema, top_k_categories=5).fit(make_events(seed=0))
    fitted = builder.transform(make_events(seed=0))
    new = make_events(n_customers=7, seed=3)
    new["category"] = np.where(np.arange(len(new)) % 2 == 0, "never_seen_before", new["category"])
    out = builder.transform(new)
    assert list(out.columns) == list(fitted.columns) and len(out) == 7
    shares = out[[c for c in out.columns if c.startswith("share_category_")]]
    assert np.allclose(shares.sum(axis=1), 1.0)
    assert (out[f"share_category_{OTHER}"] >= 0.5 - 1e-9).all()
    restored = AggregateFeatureBuilder.from_dict(builder.to_dict())
    pd.testing.assert_frame_equal(restored.transform(new), out)


def test_classification_metrics_hand_example():
    y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    p = np.array([0.95, 0.85, 0.75, 0.35, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05])
    m = classification_metrics(y, p)
    assert m["n"] == 10 and m["positives"] == 2
    assert m["top_decile_lift"] == pytest.approx(1.0 / 0.2)  # the top row is positive: 100% vs 20%
    assert m["brier"] == pytest.approx((0.05**2 + 0.85**2 + 0.25**2 + 0.35**2 + 6 * 0.05**2) / 10)
    # ECE: bins 9 (0.95,y1), 8 (0.85,y0), 7 (0.75,y1), 3 (0.35,y0), 0 (6 x 0.05, y0)
    assert m["ece"] == pytest.approx((0.05 + 0.85 + 0.25 + 0.35 + 6 * 0.05) / 10)
    assert m["roc_auc"] == pytest.approx(15 / 16)  # 0.95 outranks all 8 negatives, 0.75 all but 0.85
    assert classification_metrics(y, np.full(10, 0.3))["top_decile_lift"] == pytest.approx(1.0)  # ties: no lift

    one_class = classification_metrics(np.zeros(5), np.full(5, 0.1))
    assert one_class["roc_auc"] is None and one_class["top_decile_lift"] is None and "one class" in one_class["reason"]
    assert one_class["brier"] == pytest.approx(0.01)

    r = regression_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    assert r["mae"] == pytest.approx(1 / 3) and r["r2"] == pytest.approx(1 - 1 / 2)


def _planted(n=3000, d=8, seed=0):
    """Embeddings with a known signal: label = Bernoulli(sigmoid(w.x))."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    truth = 1 / (1 + np.exp(-(X @ rng.normal(0, 0.8, d) - 0.5)))
    y = (rng.random(n) < truth).astype(float)
    return X, y, truth


@pytest.mark.parametrize("kind", ["mlp", "logistic"])
def test_heads_beat_chance_and_trivial_baseline(kind):
    X, y, truth = _planted()
    Y = pd.DataFrame({"buy": y})
    tr, va, te = slice(0, 2000), slice(2000, 2500), slice(2500, None)
    heads = PropensityHeads(kind=kind, max_epochs=20, seed=0).fit(X[tr], Y[tr], X[va], Y[va])
    m = classification_metrics(y[te], heads.predict_proba(X[te])[:, 0])
    oracle = classification_metrics(y[te], truth[te])
    trivial = classification_metrics(y[te], np.full(500, y[tr].mean()))
    assert m["roc_auc"] > 0.75 and m["roc_auc"] > oracle["roc_auc"] - 0.03
    assert m["brier"] < trivial["brier"] - 0.03 and m["top_decile_lift"] > 1.5


def test_platt_calibration_reduces_ece_on_miscalibrated_scores():
    rng = np.random.default_rng(0)
    z = rng.standard_normal(4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-z))).astype(float)
    overconfident = 1 / (1 + np.exp(-(3 * z + 1.0)))
    calibrator, info = choose_calibration(overconfident[:2000], y[:2000], "auto")
    assert info["applied"] and info["val_ece_calibrated_oof"] < info["val_ece_raw"]
    held_out = slice(2000, None)
    assert expected_calibration_error(y[held_out], calibrator.transform(overconfident[held_out])) < 0.5 * expected_calibration_error(y[held_out], overconfident[held_out])
    assert calibrator.a_ == pytest.approx(1 / 3, abs=0.08)
    assert choose_calibration(overconfident[:2000], y[:2000], False) == (None, {"method": "platt", "mode": "False", "applied": False})
    calibrator, info = choose_calibration(overconfident[:20], np.zeros(20), True)
    assert calibrator is None and "too few" in info["reason"]


@pytest.mark.parametrize("kind", ["mlp", "logistic"])
def test_save_load_round_trip_gives_identical_predictions(kind, tmp_path):
    X, y, _ = _planted(n=1200)
    Y = pd.DataFrame({"buy": y, "spend": y * np.exp(X[:, 0] + 2)})
    rfm = pd.DataFrame(np.abs(X[:, :4]) * 10, columns=["recency", "frequency", "monetary", "tenure"])
    heads = PropensityHeads(kind=kind, max_epochs=5, concat_rfm=True, calibrate=True)
    heads.fit(X[:900], Y[:900], X[900:], Y[900:], rfm=rfm[:900], rfm_val=rfm[900:])
    assert heads.binary_ == ["buy"] and heads.continuous_ == ["spend"] and heads.n_features_in_ == 12
    loaded = PropensityHeads.load(heads.save(tmp_path / "heads"))
    assert np.array_equal(loaded.predict_proba(X, rfm), heads.predict_proba(X, rfm))
    assert np.array_equal(loaded.predict(X, rfm), heads.predict(X, rfm))
    with pytest.raises(ValueError, match="concat_rfm"):
        loaded.predict_proba(X)


def test_multitask_mlp_masks_missing_labels():
    X, y, _ = _planted(n=2000)
    rng = np.random.default_rng(1)
    other = (rng.random(2000) < 1 / (1 + np.exp(-2 * X[:, 1]))).astype(float)
    other[rng.random(2000) < 0.4] = np.nan  # unknown for 40% of customers
    y = y.copy()
    y[:10] = np.nan
    other[:10] = np.nan  # and some customers have no label at all
    Y = pd.DataFrame({"buy": y, "other": other})
    heads = PropensityHeads(kind="mlp", max_epochs=15).fit(X[:1500], Y[:1500], X[1500:], Y[1500:])
    P = heads.predict_proba(X[1500:])
    assert np.isfinite(P).all() and P.shape == (500, 2)
    known = ~np.isnan(other[1500:])
    assert classification_metrics(other[1500:][known], P[known, 1])["roc_auc"] > 0.75


def test_align_labels_coerces_ids_and_reports_unknowns():
    ids = np.array([10, 11, 12, 13])
    labels = pd.DataFrame({"customer_id": ["10", "12", "99"], "buy": [1, 0, 1]})
    aligned, report = align_to_ids(ids, labels, "customer_id")
    assert np.array_equal(aligned["buy"].to_numpy(), [1.0, np.nan, 0.0, np.nan], equal_nan=True)
    assert report["unmatched_rows"] == 1 and report["customers_without_row"] == 2 and "compared as text" in report["id_coercion"]
    # text is never parsed as a number: '010' is not the customer 10
    aligned, _ = align_to_ids(ids, pd.DataFrame({"customer_id": ["010", "11"], "buy": [1, 0]}), "customer_id")
    assert np.array_equal(aligned["buy"].to_numpy(), [np.nan, 0.0, np.nan, np.nan], equal_nan=True)
    with pytest.raises(ValueError, match="no labels id matches"):
        align_to_ids(ids, pd.DataFrame({"customer_id": ["C10", "C11"], "buy": [1, 0]}), "customer_id")
    with pytest.raises(ValueError, match="duplicate"):
        align_to_ids(ids, pd.DataFrame({"customer_id": [10, 10], "buy": [1, 0]}), "customer_id")


def test_evaluate_propensity_end_to_end_on_synthetic_customers():
    from eventseg.data.synthetic import generate_synthetic

    data = generate_synthetic(n_customers=1500, seed=1)
    schema = EventSchema(categorical=("event_type", "category", "channel"), numeric=("amount",))
    ids = data.truth["customer_id"].to_numpy()
    rng = np.random.default_rng(0)
    # stand-in embeddings: noisy true log-odds plus noise dimensions
    p = data.truth[["p_purchase_within_30d", "p_churn_30d"]].to_numpy()
    emb = np.hstack([np.log(p / (1 - p)) + rng.normal(0, 0.5, p.shape), rng.standard_normal((len(ids), 6))])
    labels = data.labels.copy()
    labels["customer_id"] = labels["customer_id"].astype(str)  # other id dtype than the embeddings
    labels = pd.concat([labels.iloc[50:], pd.DataFrame({"customer_id": ["999"], "purchase_within_30d": [1], "churn_30d": [0], "spend_30d": [5.0]})])
    out = evaluate_propensity(ids, emb, labels, data.events, schema, {"kind": "logistic"}, seed=0, truth=data.truth, cutoff=data.cutoff)

    m = out["metrics"]
    assert m["labels"]["binary"] == ["purchase_within_30d", "churn_30d"] and m["labels"]["continuous"] == ["spend_30d"]
    assert m["labels"]["unmatched_rows"] == 1 and m["labels"]["unlabelled_customers"] == 50
    test = m["test"]["purchase_within_30d"]
    # heads=logistic: the logistic regression on the representation is the heads, not fitted twice
    assert set(test) == {"heads", "rep_hgb", "rfm_logistic", "aggregate_hgb", "stack", "oracle"}
    assert "same model as heads" in m["selection"]["notes"]["rep_logistic"]
    assert test["oracle"]["roc_auc"] > 0.6 and test["heads"]["roc_auc"] > 0.6 and test["aggregate_hgb"]["roc_auc"] > 0.55
    outcome = m["outcomes"]["purchase_within_30d"]
    for name, cand in outcome["candidates"].items():  # every candidate on validation and test, against RFM
        for split in ("validation", "test"):
            assert {"roc_auc", "pr_auc", "brier", "top_decile_lift", "ece"} <= set(cand[split]), (name, split)
        vs = cand["test_roc_auc_vs_rfm_logistic"]
        assert vs["ci_low"] <= vs["difference"] <= vs["ci_high"] and vs["n_boot"] == 1000
    assert outcome["candidates"]["rfm_logistic"]["test_roc_auc_vs_rfm_logistic"]["difference"] == 0
    assert outcome["selected"] in outcome["candidates"] and isinstance(outcome["verdict"], str)
    assert "heads_beat_baselines" not in json.dumps(m)  # no bare verdict booleans
    assert m["test"]["spend_30d"]["rep_hgb"]["mae"] is not None and "oracle" in m["test"]["spend_30d"]
    assert m["summary"]["churn_30d"]["metric"] == "roc_auc" and m["summary"]["churn_30d"]["verdict"]
    scores = out["scores"]
    assert len(scores) == len(ids) and scores["p_churn_30d"].notna().all()  # unlabelled customers are scored too
    assert set(scores["split"]) == {"train", "val", "test"}
    for label in ("purchase_within_30d", "churn_30d"):  # the published score is the chosen candidate's
        chosen = out["candidate_scores"][f"{m['outcomes'][label]['selected']}__p_{label}"]
        np.testing.assert_array_equal(scores[f"p_{label}"].to_numpy(), chosen.to_numpy())

    # labels built from the events: a cutoff 30 days before the end of the history, purchases are purchase events
    cutoff = data.cutoff - pd.Timedelta(days=30)
    built = evaluate_propensity(ids, emb, None, data.events, schema, {"kind": "logistic"}, seed=0, cutoff=cutoff,
                                horizon_days=30, purchase_filter="event_type == purchase")
    assert built["metrics"]["features"]["as_of"] == str(cutoff)
    assert built["metrics"]["labels"]["purchases"] == "events with event_type == purchase"
    assert built["metrics"]["test"]["churn_30d"]["aggregate_hgb"]["roc_auc"] > 0.6


@pytest.mark.parametrize("name", ["mlp", "logistic"])
def test_heads_config_group_builds_heads(name):
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(CONFIG_DIR / "heads" / f"{name}.yaml")
    heads = PropensityHeads.from_config(cfg)  # the group holds the heads' parameters and nothing else
    assert heads.kind == name and heads.config["calibrate"] == "auto" and heads.config["concat_rfm"] is False
    assert heads.get_params() == {**PropensityHeads().get_params(), "kind": name, "hidden": [64]}
    with pytest.raises(ValueError, match="unknown heads setting"):
        PropensityHeads.from_config({"kind": name, "hiden": [8]})


def test_pipeline_propensity_block_keeps_the_selection_and_finetune_defaults():
    from omegaconf import OmegaConf

    from eventseg.propensity.finetune import FineTunedEncoder
    from eventseg.propensity.fit import SELECTION_DEFAULTS

    cfg = OmegaConf.load(CONFIG_DIR / "pipeline.yaml").propensity
    assert OmegaConf.to_container(cfg.selection) == SELECTION_DEFAULTS
    assert cfg.finetune.enabled is False
    tuner = FineTunedEncoder.from_config(cfg.finetune)
    assert tuner.get_params() == {**FineTunedEncoder().get_params(), "hidden": [64]}
