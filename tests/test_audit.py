"""Fairness audit (scripts/audit.py, eventseg.apps.audit): a planted attribute is flagged where its
archetype sits and pure noise is not; the statistics agree with scipy and a hand-checked table;
cells under min_cell never leave the audit, not even by subtraction; the run is only read; and
each bad attribute file stops with a message saying what to fix, before any statistics run."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from eventseg.run.artifacts import file_hash
from eventseg.apps.audit import audit_run
from eventseg.apps.audit import api as audit_api
from eventseg.apps.audit.attributes import load_attributes
from eventseg.apps.audit.disclosure import COMPLEMENTARY, PRIMARY, suppression, trim
from eventseg.apps.audit.stats import adjust, association, four_fifths
from eventseg.run.errors import ConfigError, UserError
from eventseg.report.audit_section import audit_section, visualize_audit
from eventseg.run.manifest import verify_files

ROOT = Path(__file__).resolve().parents[1]
SEED = 20240611  # not the synthetic generator's seed: its uniforms picked the archetypes


def planted_attributes(truth: pd.DataFrame, archetype: str, inside=0.9, outside=0.05, seed=SEED) -> pd.DataFrame:
    """'A' = yes for `inside` of one archetype's customers and `outside` of the rest; 'noise'
    three values at random; 'age' a uniform number (banded by the audit)."""
    rng = np.random.default_rng(seed)
    hit = truth["archetype"].eq(archetype).to_numpy()
    return pd.DataFrame({
        "customer_id": truth["customer_id"].to_numpy(),
        "A": np.where(rng.random(len(truth)) < np.where(hit, inside, outside), "yes", "no"),
        "noise": rng.choice(["x", "y", "z"], len(truth)),
        "age": rng.integers(18, 90, len(truth)),
    })


@pytest.fixture(scope="module")
def run_and_truth(finished_run, tiny_events):
    customers = pd.read_parquet(finished_run / "customers.parquet")
    truth = pd.read_parquet(tiny_events.parent / "truth.parquet")
    return finished_run, customers.merge(truth[["customer_id", "archetype"]], on="customer_id")


def most_concentrated(joined: pd.DataFrame) -> tuple[str, int]:
    """The archetype with the largest over-representation in one broad segment, and that segment."""
    placed = joined[joined["segment"] >= 0]
    lift = pd.crosstab(placed["archetype"], placed["segment"], normalize="columns").div(
        placed["archetype"].value_counts(normalize=True), axis=0)
    counts = pd.crosstab(placed["archetype"], placed["segment"])
    lift = lift.where(counts >= 20)  # a handful of customers is no concentration
    archetype, segment = lift.stack().idxmax()
    return archetype, int(segment)


def test_planted_attribute_flagged_in_its_segment_and_noise_not(run_and_truth, tiny_events):
    run, joined = run_and_truth
    archetype, segment = most_concentrated(joined)
    truth = pd.read_parquet(tiny_events.parent / "truth.parquet")
    audit = audit_run(run, planted_attributes(truth, archetype), write=False)

    over = [f for f in audit["flags"] if f["kind"] == "representation" and f["attribute"] == "A"
            and f["grouping"] == "segment" and f["value"] == "yes" and f["direction"] == "over"]
    assert segment in {f["group"] for f in over}, (archetype, segment, audit["flags"])
    share = joined["archetype"].eq(archetype)
    for f in over:  # beyond chance, no segment without the archetype's excess is flagged
        assert share[joined["segment"] == f["group"]].mean() > share.mean(), f
    assert not [f for f in audit["flags"] if f["attribute"] in ("noise", "age")], audit["flags"]
    assert audit["attributes"][2]["kind"] == "numeric bands" and len(audit["attributes"][2]["bands"]) == 5

    html = audit_section(audit)
    assert 'data-attribute="A"' in html and 'data-attribute="noise"' in html
    assert "over-represented in segment" in html and "after Holm" in html
    assert visualize_audit(audit, "A", "segment").data[0].type == "heatmap"
    charts = []
    audit_section(audit, lambda fig, chart_id, caption: charts.append(chart_id) or "")
    assert charts == ["chart-audit-A"]  # a chart for the flagged attribute only


def test_noise_only_gives_no_flags_and_clean_json(run_and_truth, tiny_events):
    run, _ = run_and_truth
    truth = pd.read_parquet(tiny_events.parent / "truth.parquet")
    rng = np.random.default_rng(SEED + 1)
    noise = pd.DataFrame({"customer_id": truth["customer_id"],
                          **{f"n{i}": rng.choice(["a", "b"], len(truth)) for i in range(5)}})
    audit = audit_run(run, noise, write=False)
    assert audit["flags"] == [] and audit["n_tests"] > 50
    json.loads(json.dumps(audit, allow_nan=False))  # NaN never reaches audit.json
    assert "No flags" in audit_section(audit)


def test_four_fifths_against_the_most_favoured_value():
    # high-tier rates: a 20/50 = 0.4, b 10/50 = 0.2, c 30/50 = 0.6 -> c is the reference
    table = pd.DataFrame({"low": [20, 25, 10], "medium": [10, 15, 10], "high": [20, 10, 30]}, index=["a", "b", "c"])
    out = four_fifths(table).set_index("value")
    assert (out["reference"] == "c").all()
    np.testing.assert_allclose(out["rate"], [0.4, 0.2, 0.6])
    np.testing.assert_allclose(out["ratio"], [2 / 3, 1 / 3, 1.0])
    assert np.isnan(out.loc["c", "p"])
    assert out.loc["b", "p"] == pytest.approx(stats.fisher_exact([[10, 40], [30, 20]])[1])


def test_chi_square_and_cramers_v_agree_with_scipy():
    table = pd.DataFrame([[30, 10, 25], [12, 40, 18], [20, 22, 35]])
    got = association(table)
    chi2, p, dof, _ = stats.chi2_contingency(table.to_numpy(), correction=False)
    assert got["chi2"] == pytest.approx(chi2) and got["p"] == pytest.approx(p) and got["dof"] == dof
    assert got["cramers_v"] == pytest.approx(np.sqrt(chi2 / (table.to_numpy().sum() * 2)))


def test_holm_and_bh_adjustment():
    np.testing.assert_allclose(adjust([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(adjust([0.01, 0.04, np.nan, 0.03], "bh"), [0.03, 0.04, np.nan, 0.04])


def test_suppression_hides_small_cells_and_whatever_would_give_them_away():
    table = pd.DataFrame([[5, 20, 30], [40, 50, 60], [3, 4, 2]], index=["a", "b", "c"], columns=[0, 1, 2])
    trimmed, values, groups = trim(table, 10)
    assert values == ["c"] and groups == [] and list(trimmed.index) == ["a", "b"]  # every cell of c under 10
    reason = suppression(trimmed, 10)
    assert reason.at["a", 0] == PRIMARY and reason.at["a", 1] == COMPLEMENTARY  # 20 < 30: the smaller hides
    hidden = reason.to_numpy() != ""
    assert all(line.sum() != 1 for line in [*hidden, *hidden.T])  # no line gives its one hidden cell away


def test_audit_json_publishes_no_count_under_min_cell(run_and_truth, tiny_events):
    """A rare value makes cells under 10: none is published, and no row or column of a published
    table has exactly one hidden cell (which its total would reveal)."""
    run, joined = run_and_truth
    rng = np.random.default_rng(SEED + 2)
    attrs = pd.DataFrame({"customer_id": joined["customer_id"],
                          "R": np.where(rng.random(len(joined)) < 0.08, "rare", "common")})
    audit = audit_run(run, attrs, write=False)
    truth = attrs.merge(joined[["customer_id", "segment"]])
    counts = pd.crosstab(truth["R"], truth["segment"])
    seen_primary = 0
    for grouping, r in audit["results"]["R"].items():
        for c in r["cells"]:
            if grouping == "segment" and counts.at[c["value"], c["group"]] < 10:
                assert c["suppressed"] == PRIMARY and c.get("count") is None and c.get("ratio") is None
                seen_primary += 1
            if c["suppressed"]:
                assert not {"count", "share", "ratio", "ci_low", "ci_high", "p", "p_adjusted"} & set(c)
        hidden = pd.DataFrame(r["cells"]).pivot(index="value", columns="group", values="suppressed").notna()
        assert (hidden.sum(axis=0) != 1).all() and (hidden.sum(axis=1) != 1).all()
        for f in r.get("four_fifths") or []:
            assert (f["suppressed"] is None) == ("rate" in f)
    assert seen_primary, counts  # the test needs a small cell to mean anything
    assert "&lt;10" in audit_section(audit)


def test_audit_only_reads_the_run(finished_run, tmp_path, tiny_events):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    truth = pd.read_parquet(tiny_events.parent / "truth.parquet")
    before = {name: file_hash(run / name) for name in ("customers.parquet", "segments.parquet")}
    listed = json.loads((run / "run.json").read_text())["files"]
    audit_run(run, planted_attributes(truth, "weekly_regular"))
    assert {name: file_hash(run / name) for name in before} == before
    written = json.loads((run / "audit.json").read_text())
    assert written["format"] == "eventseg.audit"
    now_listed = json.loads((run / "run.json").read_text())["files"]
    assert written["run_files"]["customers.parquet"] == now_listed["customers.parquet"]
    # only the report was re-rendered (with the fairness section), and the manifest vouches for it
    assert {k for k in listed if listed[k] != now_listed[k]} == {"report.html"}
    assert 'id="audit"' in (run / "report.html").read_text()
    verify_files(run, ["customers.parquet", "segments.parquet", "report.html"])  # the run still verifies


def test_numeric_attributes_become_bands_or_levels():
    ids = pd.Series(np.arange(400, dtype=np.int64))
    table = pd.DataFrame({"customer_id": ids, "spend": np.linspace(0, 99, 400), "kids": ids % 4,
                          "member": ids % 3 == 0})
    attrs = {a.name: a for a in load_attributes(table, ids, bands=4).items}
    spend = attrs["spend"]
    assert spend.kind == "numeric bands" and spend.bands == pytest.approx([0, 24.75, 49.5, 74.25, 99])
    assert list(spend.levels.cat.categories) == ["0–24.75", "24.75–49.5", "49.5–74.25", "74.25–99"]
    assert spend.levels.value_counts().tolist() == [100] * 4
    assert attrs["kids"].kind == "numeric levels" and list(attrs["kids"].levels.cat.categories) == ["0", "1", "2", "3"]
    assert list(attrs["member"].levels.cat.categories) == ["False", "True"]


@pytest.mark.parametrize("case, message", [
    ("no_id", r"no id column: expected 'customer_id'.*rename"),
    ("text_ids", r"holds text .* run's customer ids are numbers .*astype\('int64'\)"),
    ("single_value", r"attribute 'A' has a single value \('yes'\).*columns="),
    ("no_match", r"0 of its 300 ids match a customer of the run"),
    ("unknown_column", r"columns=\['height'\] not in"),
])
def test_bad_attribute_files_fail_clearly_before_any_work(run_and_truth, tmp_path, monkeypatch, case, message):
    run, joined = run_and_truth
    ids = joined["customer_id"]
    table = pd.DataFrame({"customer_id": ids, "A": np.where(np.arange(len(ids)) % 2, "yes", "no")})
    columns = None
    if case == "no_id":
        table = table.rename(columns={"customer_id": "cust"})
    elif case == "text_ids":
        table["customer_id"] = ids.astype(str)
    elif case == "single_value":
        table["A"] = "yes"
    elif case == "no_match":
        table["customer_id"] = ids + 10**9
    else:
        columns = ["height"]
    path = tmp_path / "attributes.parquet"
    table.to_parquet(path)

    def no_statistics(*_a, **_k):
        raise AssertionError("statistics ran before the input was checked")

    monkeypatch.setattr(audit_api, "association", no_statistics)
    expected = ConfigError if case == "unknown_column" else UserError
    with pytest.raises(expected, match=message):
        audit_run(run, path, columns, write=False)  # the shared run is read-only


def test_script_writes_audit_json_and_reports_user_errors(finished_run, tmp_path, tiny_events):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    truth = pd.read_parquet(tiny_events.parent / "truth.parquet")
    good = tmp_path / "attributes.csv"
    planted_attributes(truth, "weekly_regular").to_csv(good, index=False)
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "audit.py"), f"run_dir={run}", f"attributes={good}",
                           "columns=[A,noise]"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert out["audit"] == str(run / "audit.json") and out["matched_customers"] == len(truth)
    assert [a["name"] for a in json.loads((run / "audit.json").read_text())["attributes"]] == ["A", "noise"]

    bad = tmp_path / "bad.csv"
    planted_attributes(truth, "weekly_regular").rename(columns={"customer_id": "id"}).to_csv(bad, index=False)
    failed = subprocess.run([sys.executable, str(ROOT / "scripts" / "audit.py"), f"run_dir={run}", f"attributes={bad}"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert failed.returncode == 2 and failed.stderr.startswith("error: ") and "no id column" in failed.stderr
