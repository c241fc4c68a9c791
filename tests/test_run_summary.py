"""metrics.json: the run's summary is read faithfully from the stage files, with or without labels."""

import json

from eventseg.report.summary import run_summary


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _run(tmp_path, labels: bool):
    _write(tmp_path / "prepared" / "prepare_report.json",
           {"n_customers": 120, "n_events_stored": 3400, "cutoff": "2017-10-01", "customers_truncated": 3,
            "events_truncated": 51, "max_len": 200})
    _write(tmp_path / "train_metrics.json", {"beats_constant_guess": False, "global_steps": 40, "best_val_loss": 1.2,
                                             "future_vs_constant": {"constant": 1.0, "val_loss": 1.2}})
    _write(tmp_path / "cluster_metrics.json", {"n_clusters": 5, "n_subsegments": 12, "coverage": 0.96, "outlier_share": 0.04,
                                               "largest_share": 0.3, "broad": {"space": "outcomes", "stability": {
                                                   "ari_resample_mean": 0.93, "ari_seed": 0.91, "silhouette": 0.4}}})
    if labels:
        _write(tmp_path / "propensity_metrics.json", {"outcomes": {
            "buy": {"kind": "binary", "selected": "heads", "verdict": "beats RFM by +0.030 [+0.010, +0.050]",
                    "candidates": {"heads": {"test": {"roc_auc": 0.78},
                                             "test_roc_auc_vs_rfm_logistic": {"difference": 0.03, "ci_low": 0.01, "ci_high": 0.05}},
                                   "rfm_logistic": {"test": {"roc_auc": 0.75}}}},
            "spend": {"kind": "continuous", "selected": None, "published": False, "verdict": "not published",
                      "candidates": {}}}})
        _write(tmp_path / "segment_metrics.json", {"outcomes": {"buy": {
            "eta2": {"eventseg": 0.2, "rfm_kmeans": 0.1, "limit": 0.25}, "diff_vs_rfm": {"estimate": 0.1, "lo": 0.05, "hi": 0.15},
            "verdict": "explains more than rfm_kmeans (+0.100 [+0.050, +0.150])"}}})
    return run_summary(tmp_path, data_name="shop", objective="future", representation="hybrid",
                       horizon_days=30 if labels else None)


def test_summary_with_labels_carries_intervals_and_verdicts(tmp_path):
    s = _run(tmp_path, labels=True)
    assert s["data"] == {"name": "shop", "customers": 120, "events": 3400, "cutoff": "2017-10-01", "horizon_days": 30,
                         "customers_truncated": 3, "events_truncated": 51, "max_len": 200}
    assert s["training"]["vs_constant"] == 1.2 and s["training"]["beats_constant_guess"] is False
    buy = s["propensity"]["buy"]
    assert (buy["test_roc_auc"], buy["rfm_roc_auc"]) == (0.78, 0.75)
    assert buy["diff_vs_rfm"] == {"estimate": 0.03, "lo": 0.01, "hi": 0.05}
    assert s["propensity"]["spend"]["published"] is False
    assert s["verdict"] == "buy: beats RFM by +0.030 [+0.010, +0.050]"  # binary labels only, in words
    seg = s["segments"]
    assert (seg["n_broad"], seg["n_micro"], seg["coverage"]) == (5, 12, 0.96)
    assert seg["stability"] == {"ari_resample_mean": 0.93, "ari_seed": 0.91}
    assert seg["eta2"]["buy"]["rfm_kmeans"] == 0.1 and seg["eta2"]["buy"]["verdict"].startswith("explains more")
    json.dumps(s, allow_nan=False)


def test_summary_without_labels_has_no_propensity_or_eta2(tmp_path):
    s = _run(tmp_path, labels=False)
    assert s["propensity"] is None and s["verdict"] is None and s["segments"]["eta2"] is None
    assert s["data"]["horizon_days"] is None and s["segments"]["n_broad"] == 5
