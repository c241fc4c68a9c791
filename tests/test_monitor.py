"""Segments over time: drift and churn measures, sticky placement, alerts, backtests, and the
monitor job end to end on a finished tiny run (outputs, parity with score.py, bad input)."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from eventseg.segmentation.clusterer.broad import nearest_keeping_previous
from eventseg.data.schema import EventSchema
from eventseg.run.errors import ConfigError, RunError, UserError
from eventseg.apps.monitor import Thresholds, monitor_run
from eventseg.apps.monitor.alerts import period_alerts, refresh_verdict
from eventseg.apps.monitor.backtest import auc_drop, auc_standard_error, backtest
from eventseg.apps.monitor.drift import embedding_drift_auc, psi
from eventseg.apps.monitor.membership import membership_churn, size_changes, transitions
from eventseg.propensity.metrics import bootstrap_aucs
from eventseg.apps.score import score_customers
from eventseg.segmentation.predictiveness import RFMKMeans

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
CUTOFFS = ["2025-10-01", "2025-11-01", "2025-12-01"]  # inside the tiny run's year of history


# --- measures ---------------------------------------------------------------------------------


def test_psi_is_near_zero_for_the_same_population_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=20_000)
    assert psi(ref, rng.normal(size=20_000)) < 0.01
    assert psi(ref, rng.normal(0.8, 1, size=20_000)) > 0.2
    # a mostly-zero share: tied deciles merge instead of leaving empty bins
    zeros = np.where(rng.random(20_000) < 0.9, 0.0, rng.random(20_000))
    assert psi(zeros, zeros[::-1]) < 0.01
    assert psi(zeros, np.ones(100)) > 1.0
    assert psi(np.array([np.nan]), ref) is None


def test_embedding_drift_auc_tells_a_moved_space_from_the_same_one():
    rng = np.random.default_rng(1)
    before = rng.normal(size=(2_000, 8))
    assert embedding_drift_auc(before, rng.normal(size=(2_000, 8))) < 0.6
    assert embedding_drift_auc(before, rng.normal(size=(2_000, 8)) + 1.0) > 0.95
    assert embedding_drift_auc(before[:3], before[:3]) is None


def test_churn_transitions_and_sizes_on_a_hand_checked_example():
    before = pd.Series([0, 0, 1, -1], index=[10, 11, 12, 13])
    after = pd.Series([0, 1, 1, 0, 2], index=[10, 11, 12, 13, 14])  # 14 is new
    both, churn = membership_churn(before, after)
    assert both == 4 and churn == pytest.approx(0.5)  # 11 (0→1) and 13 (outlier → 0) moved
    flows = transitions(before, after).set_index(["from_segment", "to_segment"])["customers"]
    assert flows.to_dict() == {("-1", "0"): 1, ("0", "0"): 1, ("0", "1"): 1, ("1", "1"): 1, ("new", "2"): 1}
    sizes = {r["segment"]: r for r in size_changes(before, after)}
    assert sizes[0]["share_from"] == 0.5 and sizes[0]["share_to"] == 0.4 and sizes[0]["share_change"] == -0.2
    assert sizes[2]["share_change"] is None  # did not exist before: no ratio to report


def test_a_customer_near_a_boundary_keeps_their_segment_unless_another_is_clearly_closer():
    # distances to groups 0 and 1: row 0 barely nearer 1, row 1 far nearer 1, row 2 new
    d = np.array([[1.1, 1.0], [3.0, 1.0], [1.1, 1.0]])
    previous = np.array([0, 0, -2])
    assert nearest_keeping_previous(d, previous, 0.0).tolist() == [1, 1, 1]
    assert nearest_keeping_previous(d, previous, 0.25).tolist() == [0, 1, 1]


def test_smoothed_placement_scores_average_over_dates_and_leave_newcomers_alone():
    from eventseg.apps.monitor.api import _smoothed

    earlier = pd.DataFrame({"customer_id": [1, 2], "p_buy": [0.2, 0.8]})
    now = pd.DataFrame({"customer_id": [1, 2, 3], "p_buy": [0.6, 0.8, 0.5]})
    mixed = _smoothed(now, earlier, 0.5).set_index("customer_id")["p_buy"]
    assert mixed.to_dict() == pytest.approx({1: 0.4, 2: 0.8, 3: 0.5})
    assert _smoothed(now, earlier, 1.0) is now


def test_rfm_baseline_gets_the_same_stickiness_as_the_segments():
    rng = np.random.default_rng(2)
    rfm = pd.DataFrame({"recency": rng.exponential(30, 600), "frequency": rng.poisson(8, 600) + 1,
                        "monetary": rng.lognormal(4, 1, 600), "tenure": rng.uniform(30, 365, 600)})
    model = RFMKMeans(4, seed=0).fit(rfm)
    first = model.predict(rfm)
    moved = rfm.assign(recency=rfm["recency"] * rng.lognormal(0, 0.3, 600))  # a month of noise
    loose = (model.predict(moved) != first).mean()
    sticky = (model.predict(moved, first, 0.25) != first).mean()
    assert sticky < loose


def test_hanley_mcneil_error_matches_the_bootstrap():
    rng = np.random.default_rng(3)
    y = np.r_[np.ones(300), np.zeros(500)]
    p = np.r_[rng.normal(1.0, 1, 300), rng.normal(0, 1, 500)]
    from eventseg.propensity.metrics import roc_auc

    se = auc_standard_error(roc_auc(y, p), 300, 500)
    assert se == pytest.approx(np.nanstd(bootstrap_aucs(y, p, n_boot=2000)), rel=0.15)


def test_an_auc_drop_within_noise_does_not_alert_and_one_beyond_it_does():
    t = Thresholds()
    small = {"roc_auc": 0.70, "positives": 30, "n": 100}
    large = {"roc_auc": 0.70, "positives": 3_000, "n": 10_000}
    ref = {"roc_auc": 0.76, "positives": 3_000, "n": 10_000}
    noisy = {"backtest": {"labels": {"buy": {**small, "drop": auc_drop(ref, small)}}}}
    clear = {"backtest": {"labels": {"buy": {**large, "drop": auc_drop(ref, large)}}}}
    assert period_alerts(noisy, t) == []
    [alert] = period_alerts(clear, t)
    assert alert["kind"] == "backtest_auc_drop"
    periods = [{"alerts": [alert]}, {"alerts": []}]
    assert refresh_verdict(periods) == (True, [alert["message"]])
    assert refresh_verdict([{"alerts": []}]) == (False, [])


def test_size_alerts_use_shares_and_skip_tiny_segments():
    t = Thresholds(min_segment_customers=30)
    period = {"size_changes": [
        {"segment": 0, "customers_from": 100, "customers_to": 150, "share_from": 0.5, "share_to": 0.5, "share_change": 0.0},
        {"segment": 1, "customers_from": 100, "customers_to": 50, "share_from": 0.5, "share_to": 0.25, "share_change": -0.5},
        {"segment": 2, "customers_from": 5, "customers_to": 20, "share_from": 0.02, "share_to": 0.07, "share_change": 2.5},
    ]}
    assert [a["subject"] for a in period_alerts(period, t)] == ["segment 1"]
    with pytest.raises(ConfigError, match="thresholds.psy"):
        Thresholds.from_config({"psy": 0.1})


def _events(days_after_cutoff: int) -> tuple[pd.DataFrame, EventSchema, pd.DataFrame]:
    schema = EventSchema(categorical=("event_type",), numeric=("amount",))
    cutoff = pd.Timestamp("2025-06-01")
    rows = [(1, "2025-05-01", "purchase"), (2, "2025-05-02", "view"), (3, "2025-05-03", "view"),
            (1, "2025-06-05", "purchase"), (2, "2025-06-06", "view"),
            (3, str((cutoff + pd.Timedelta(days=days_after_cutoff)).date()), "view")]
    df = pd.DataFrame(rows, columns=["customer_id", "ts", "event_type"]).assign(ts=lambda d: pd.to_datetime(d.ts),
                                                                                amount=1.0)
    scored = pd.DataFrame({"customer_id": [1, 2, 3], "p_purchase_within_30d": [0.9, 0.2, 0.1],
                           "p_churn_30d": [0.1, 0.2, 0.9]})
    return df, schema, scored


def test_backtest_waits_for_the_horizon_and_then_scores_the_frozen_heads():
    df, schema, scored = _events(days_after_cutoff=10)  # events end 10 days into a 30-day horizon
    pending = backtest(df, schema, pd.Timestamp("2025-06-01"), scored, horizon_days=30,
                       purchase_filter="event_type == purchase")
    assert pending["status"] == "pending" and "ends" in pending["reason"]
    df, schema, scored = _events(days_after_cutoff=45)
    done = backtest(df, schema, pd.Timestamp("2025-06-01"), scored, horizon_days=30,
                    purchase_filter="event_type == purchase")
    assert done["status"] == "scored" and done["customers"] == 3
    assert done["labels"]["purchase_within_30d"]["roc_auc"] == 1.0  # only customer 1 bought
    assert done["labels"]["churn_30d"]["roc_auc"] == 1.0  # only customer 3 was silent


# --- the job on a finished run -----------------------------------------------------------------


@pytest.fixture(scope="module")
def monitored(finished_run, tiny_events, tmp_path_factory):
    run = tmp_path_factory.mktemp("monitored") / "run"
    shutil.copytree(finished_run, run)
    summary = monitor_run(run, tiny_events, CUTOFFS, purchase_filter="event_type == purchase", device="cpu")
    return run, summary


@pytest.mark.slow
def test_monitor_writes_the_contract_files(monitored):
    run, summary = monitored
    out = run / "monitor"
    assignments = pd.read_parquet(out / "assignments.parquet")
    assert list(assignments.columns[:4]) == ["customer_id", "cutoff", "segment", "subsegment"]
    assert {"p_purchase_within_30d", "p_churn_30d"} <= set(assignments.columns)
    assert sorted(assignments["cutoff"].dt.strftime("%Y-%m-%d").unique()) == CUTOFFS
    flows = pd.read_parquet(out / "transitions.parquet")
    assert list(flows.columns) == ["from_cutoff", "to_cutoff", "from_segment", "to_segment", "customers"]
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["refresh_recommended"] == summary["refresh_recommended"]
    assert len(on_disk["periods"]) == 2
    for period in on_disk["periods"]:
        assert {"from", "to", "customers_both", "membership_churn", "size_changes", "drift", "backtest",
                "alerts"} <= set(period)
        # every customer at the later date came from somewhere, "new" included
        later = flows[flows["to_cutoff"].dt.strftime("%Y-%m-%d") == period["to"]]
        assert later["customers"].sum() == period["customers_to"]
        assert later.loc[later["from_segment"] == "new", "customers"].sum() == period["new_customers"]
        assert period["backtest"]["status"] == "scored"  # a month of events follows each date
    report = (run / "report.html").read_text()
    assert 'id="monitoring"' in report and "chart-monitor-churn" in report


@pytest.mark.slow
def test_the_monitoring_section_draws_in_a_browser(monitored, tmp_path):
    from test_report import CHROMIUM, rendered_in_browser

    if CHROMIUM is None:
        pytest.skip("chromium is not installed")
    run, _ = monitored
    page = (run / "report.html").read_text()
    dom, drawn = rendered_in_browser(run / "report.html", tmp_path)
    assert drawn == page.count('class="plotly-graph-div"')  # every chart, the monitoring ones included
    assert 'id="chart-monitor-churn"' in dom and 'id="chart-monitor-flows"' in dom


@pytest.mark.slow
def test_the_first_date_is_exactly_what_score_py_gives(monitored, tiny_events):
    run, _ = monitored
    assignments = pd.read_parquet(run / "monitor" / "assignments.parquet")
    first = assignments[assignments["cutoff"] == pd.Timestamp(CUTOFFS[0])].set_index("customer_id")
    scored = score_customers(run, tiny_events, cutoff=CUTOFFS[0], device="cpu").set_index("customer_id")
    assert first.index.equals(scored.index)
    assert (first["segment"] == scored["segment"]).all()
    np.testing.assert_allclose(first["p_purchase_within_30d"], scored["p_purchase_within_30d"])
    # no event on or after a cutoff reaches its scores: nobody first seen later is there
    events = pd.read_parquet(tiny_events)
    seen = events.loc[events["ts"] < pd.Timestamp(CUTOFFS[0]), "customer_id"].unique()
    assert set(first.index) == set(seen)


@pytest.mark.slow
def test_a_sticky_weekly_refresh_with_score_py_matches_the_monitor(monitored, tiny_events):
    run, _ = monitored
    assignments = pd.read_parquet(run / "monitor" / "assignments.parquet")
    first, second = (assignments[assignments["cutoff"] == pd.Timestamp(c)] for c in CUTOFFS[:2])
    refreshed = score_customers(run, tiny_events, cutoff=CUTOFFS[1], device="cpu", previous=first, stickiness=0.25)
    pd.testing.assert_series_equal(refreshed.set_index("customer_id")["segment"],
                                   second.set_index("customer_id")["segment"], check_names=False)
    afresh = score_customers(run, tiny_events, cutoff=CUTOFFS[1], device="cpu").set_index("customer_id")["segment"]
    kept = first.set_index("customer_id")["segment"]
    both = kept.index.intersection(afresh.index)
    assert (refreshed.set_index("customer_id")["segment"][both] != kept[both]).mean() <= (afresh[both] != kept[both]).mean()
    with pytest.raises(ConfigError, match="previous scores lack"):
        score_customers(run, tiny_events, cutoff=CUTOFFS[1], previous=first.drop(columns="segment"), stickiness=0.25)
    with pytest.raises(ConfigError, match="stickiness must be in"):
        score_customers(run, tiny_events, cutoff=CUTOFFS[1], previous=first, stickiness=1.5)


@pytest.mark.slow
def test_a_failed_write_leaves_the_previous_monitoring_whole(monitored, tiny_events, tmp_path, monkeypatch):
    import eventseg.apps.monitor.api as api
    from eventseg.run.artifacts import file_hash

    run = tmp_path / "run"
    shutil.copytree(monitored[0], run)
    before = {p.name: file_hash(p) for p in (run / "monitor").iterdir()}

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(api, "write_json", fail)  # the summary is the last file written
    with pytest.raises(OSError, match="disk full"):
        monitor_run(run, tiny_events, CUTOFFS[1:], device="cpu", report=False)
    assert {p.name: file_hash(p) for p in (run / "monitor").iterdir()} == before
    assert [p.name for p in run.iterdir() if ".tmp-" in p.name] == []


@pytest.mark.slow
def test_a_run_without_labels_is_monitored_without_backtests(tiny_events, tmp_path):
    from test_train import tiny_overrides

    cmd = [sys.executable, str(ROOT / "scripts" / "pipeline.py"), *tiny_overrides(tmp_path, tiny_events),
           "trainer.max_epochs=1", "cluster.stability.n_resamples=0"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = monitor_run(tmp_path / "run", tiny_events, CUTOFFS, device="cpu", report=False)
    for period in summary["periods"]:
        assert period["membership_churn"] is not None and period["rfm_kmeans_churn"] is not None
        assert period["drift"]["scores"] == {} and period["drift"]["features"]
        assert period["backtest"]["status"] == "not comparable" and "no propensity heads" in period["backtest"]["reason"]
    assert json.loads((tmp_path / "run" / "monitor" / "summary.json").read_text())["periods"] == summary["periods"]


@pytest.mark.slow
def test_bad_input_fails_before_any_work(finished_run, tiny_events, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    events = pd.read_parquet(tiny_events)
    cases = [
        (["2025-11-01", "2025-10-01"], events, ConfigError, "cutoffs must increase"),
        (["2020-01-01", "2020-02-01"], events, ConfigError, "before every event"),
        (["2025-11-01", "2027-01-01"], events, ConfigError, "after every event"),
        (["2025-11-01"], events, ConfigError, "at least two cutoffs"),
        (["2025-11-01", "soon"], events, ConfigError, "'soon' is not a date"),
        (CUTOFFS, events, ConfigError, "stickiness must be in"),
        (CUTOFFS, events.drop(columns=["channel"]), UserError, "column 'channel'"),
        (CUTOFFS, events.assign(customer_id=events["customer_id"].astype(str)), UserError, "holds text .* are numbers"),
    ]
    for cutoffs, frame, error, message in cases:
        with pytest.raises(error, match=message):
            monitor_run(run, frame, cutoffs, device="cpu", stickiness=1.5 if "stickiness" in message else 0.25)
    assert not (run / "monitor").exists()  # nothing half-written

    manifest = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**manifest, "eventseg_version": "9.0.0"}))
    with pytest.raises(RunError, match="written by eventseg 9.0.0"):
        monitor_run(run, events, CUTOFFS, device="cpu")
    (run / "run.json").write_text(json.dumps({**manifest, "status": "running", "stage": "cluster"}))
    with pytest.raises(RunError, match="incomplete run"):
        monitor_run(run, events, CUTOFFS, device="cpu")


@pytest.mark.slow
def test_script_prints_the_verdict_and_refuses_bad_cutoffs_in_one_line(finished_run, tiny_events, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    base = [sys.executable, str(ROOT / "scripts" / "monitor.py"), f"run_dir={run}", "data=events",
            f"data.path={tiny_events}", f"paths.root_dir={tmp_path}", "report=false"]
    bad = subprocess.run(base + ["cutoffs=[2025-12-01,2025-11-01]"], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("error: cutoffs must increase"), bad.stderr[-2000:]
    assert "Traceback" not in bad.stderr
    ok = subprocess.run(base + ["cutoffs=[2025-11-01,2025-12-01]"], capture_output=True, text=True, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr[-3000:]
    printed = json.loads(ok.stdout[ok.stdout.index("{"):])
    assert printed["periods"][0]["from"] == "2025-11-01" and "refresh_recommended" in printed
