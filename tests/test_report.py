"""report.html from run files: one card per broad segment that says what was observed, every
chart drawn without a script error in a real browser, nothing fetched from outside, numbers
written for people, and a run without labels still renders."""

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from eventseg.embedding.embed import write_embeddings
from eventseg.report import (ReportInputs, build_report, visualize_calibration, visualize_gain, visualize_lift,
                             visualize_map, visualize_profile, visualize_sizes)
from eventseg.report.figures import OUTLIER_COLOR
from eventseg.report.format import days, integer, money, number, percent, ratio
from eventseg.segmentation.profiles import attach_names, build_customers, profile_segments
from test_segments import _inputs

LABELS = ("churn_30d", "purchase_within_30d")
MODELS = ("rfm_logistic", "aggregate_hgb", "heads", "stack")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _observed(segments: pd.DataFrame, rng) -> pd.DataFrame:
    """The columns another stage adds to segments.parquet: observed outcomes, rules, actions."""
    s = segments.copy()
    broad = s["level"] == "broad"
    s["observed_n"] = np.where(broad, (s["size"] * 0.1).round(), np.nan)
    for lab in LABELS:
        rate = rng.uniform(0.1, 0.6, len(s))
        s[f"observed_{lab}"], s[f"observed_{lab}_lo"], s[f"observed_{lab}_hi"] = rate, rate - 0.05, rate + 0.05
        s[f"observed_lift_{lab}"] = rate / 0.3
    s["observed_spend_30d"] = rng.uniform(5, 90, len(s))
    s["rule"] = np.where(broad, "visits_per_month >= 2 and recency_days < 30", None)
    s["rule_precision"], s["rule_recall"] = np.where(broad, 0.81, np.nan), np.where(broad, 0.74, np.nan)
    s["action"] = np.where(broad, "Send the loyalty offer before the next visit", None)
    s["top_values"] = np.where(broad, "category Toys 412 (1.8×), channel app 300 (1.5×)", None)
    s["timing"] = np.where(broad, "mostly evenings, weekends", None)
    return s


def _candidates(rng) -> dict:
    out = {}
    for m in MODELS:
        auc = rng.uniform(0.6, 0.8)
        out[m] = {"test": {"roc_auc": auc, "pr_auc": auc - 0.1, "top_decile_lift": 1.8, "brier": 0.2, "ece": 0.04, "n": 60},
                  "test_roc_auc_vs_rfm_logistic": {"difference": 0.01, "ci_low": -0.02, "ci_high": 0.04},
                  "description": f'what {m} is, "quoted"'}
    return out


def write_run(run, *, labels=True, observed=True, summary=True, n=300):
    """A small run folder with the files the pipeline writes (the labelled ones only with labels)."""
    run.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    clusters, scores, features = _inputs(n=n)
    customers = build_customers(clusters, scores if labels else None)
    segments = profile_segments(customers, features, "amount_sum")
    customers = attach_names(customers, segments)
    if labels and observed:
        segments = _observed(segments, rng)
    segments.to_parquet(run / "segments.parquet", index=False)
    customers.to_parquet(run / "customers.parquet", index=False)
    ids = customers["customer_id"].to_numpy()
    write_embeddings(ids, rng.normal(size=(len(ids), 8)).astype(np.float32), run / "embeddings.parquet", rows_per_part=None)
    selection = [{"k": k, "ari_resample_mean": 0.9, "ari_seed": 0.95, "largest_share": 0.4, "silhouette": 0.3,
                  "chosen": k == 3, "eligible": True} for k in (2, 3, 4)]
    (run / "cluster_metrics.json").write_text(json.dumps({"broad": {"stability": {
        "ari_resample_mean": 0.957, "ari_seed": 0.938, "largest_share": 0.3461}, "selection": selection}}))
    if summary:
        (run / "metrics.json").write_text(json.dumps({
            "data": {"name": "tiny", "customers": len(ids), "events": 123456, "cutoff": "2025-06-01", "horizon_days": 30,
                     "customers_truncated": 7, "events_truncated": 996, "max_len": 200},
            "training": {"objective": "future", "val_loss": 0.77, "constant_guess": 1.02, "vs_constant": 0.755,
                         "beats_constant_guess": True, "steps": 1000},
            "propensity": None, "representation": "embedding",
            "segments": {"n_broad": 3, "n_micro": 6, "coverage": 0.96, "outlier_share": 0.04},
            "verdict": "churn_30d: beats RFM by +0.021 [+0.004, +0.038]" if labels else None}))
    if not labels:
        return run
    (run / "propensity_metrics.json").write_text(json.dumps({
        "labels": {"binary": list(LABELS), "continuous": ["spend_30d"]},
        "selection": {"reference": "rfm_logistic"},
        "outcomes": {**{lab: {"kind": "binary", "selected": "heads", "verdict": "beats RFM by +0.021 [+0.004, +0.038]",
                              "candidates": _candidates(rng)} for lab in LABELS},
                     "spend_30d": {"kind": "continuous", "selected": "aggregate_hgb", "verdict": "published",
                                   "candidates": {"aggregate_hgb": {"test": {"r2": 0.1, "mae": 30.0, "rmse": 60.0, "mean": 27.4, "n": 60}}}}},
    }))
    split = np.where(np.arange(len(ids)) % 5 == 0, "test", "train")
    table = {"customer_id": ids, "split": split}
    for lab in LABELS:
        y = rng.random(len(ids)) < 0.3
        table[f"y__{lab}"] = y.astype(float)
        for m in MODELS:
            table[f"{m}__p_{lab}"] = np.clip(0.3 + 0.3 * (y - 0.3) + rng.normal(0, 0.2, len(ids)), 0, 1)
    pd.DataFrame(table).to_parquet(run / "propensity_scores.parquet", index=False)
    (run / "segment_metrics.json").write_text(json.dumps({"outcomes": {lab: {
        "eta2": {"eventseg": 0.2, "rfm_kmeans": 0.15, "limit": 0.24},
        "verdict": "explains more than rfm_kmeans (+0.05 [+0.01, +0.09])"} for lab in LABELS}}))
    return run


class _Page(HTMLParser):
    """The parts of a page the tests read: src/href attributes, cards and their text, the text
    outside scripts and styles."""

    def __init__(self, page: str):
        super().__init__()
        self.links, self.cards, self.text, self._stack, self._card = [], {}, [], [], None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.links += [v for k, v in attrs.items() if k in ("src", "href") and v]
        if "data-segment" in attrs:
            self._card = attrs["data-segment"]
            self.cards[self._card] = ""
        self._stack.append((tag, "data-segment" in attrs))

    def handle_endtag(self, tag):
        while self._stack:
            opened, was_card = self._stack.pop()
            if was_card:
                self._card = None
            if opened == tag:
                break

    def handle_data(self, data):
        if self._stack and self._stack[-1][0] in ("script", "style"):
            return
        self.text.append(data)
        if self._card is not None:
            self.cards[self._card] += data


def _report(run, **kw):
    inputs = ReportInputs.from_run(run, title="eventseg · tiny", representation="embedding")
    path = build_report(run / "report.html", inputs)
    return path, path.read_text(encoding="utf-8"), inputs


def _assert_no_external_links(page: str):
    parsed = _Page(page)
    assert parsed.links and all(not re.match(r"(https?:)?//", link) for link in parsed.links), parsed.links
    assert not re.search(r"<link\b|@import|url\(\s*['\"]?(https?:)?//", page.split("<script", 1)[0])


def test_every_broad_segment_has_a_card_that_says_what_was_observed(tmp_path):
    _, page, inputs = _report(write_run(tmp_path / "run"))
    parsed = _Page(page)
    broad = inputs.segments[inputs.segments["level"] == "broad"]
    assert sorted(parsed.cards) == sorted(str(s) for s in broad["segment"])
    for seg, text in parsed.cards.items():
        row = broad[broad["segment"] == int(seg)].iloc[0]
        assert "observed" in text.lower(), seg
        assert f"{int(row['size']):,} customers" in text and percent(row["share"]) in text
        assert "visits_per_month >= 2" in text and "precision 81%" in text and "recall 74%" in text
        assert "Send the loyalty offer" in text and "category Toys 412" in text and "evenings" in text
        assert f"observed on {int(row['observed_n']):,} held-out customers" in text
        rate = row["observed_churn_30d"]
        assert f"{percent(rate)} [{percent(rate - 0.05)}, {percent(rate + 0.05)}]" in text
        assert "predicted" in text.lower() and percent(row["mean_p_churn_30d"]) in text
    for seg in broad["segment"][broad["segment"] >= 0]:  # micro-segments open below their broad card
        card = page[page.index(f'data-segment="{seg}"'):]
        card = card[:card.index("</article>")]
        micro = inputs.segments[(inputs.segments["level"] == "micro") & (inputs.segments["parent"] == seg)]
        assert "<details>" in card and all(f"#{m} " in card for m in micro["segment"])


def test_page_is_self_contained_with_facts_verdict_and_charts(tmp_path):
    _, page, _ = _report(write_run(tmp_path / "run"))
    _assert_no_external_links(page)
    assert page.count("<script type=\"text/javascript\">") == 1  # plotly's bundle, once
    for chart in ("chart-map", "chart-sizes", "chart-profile", "chart-lift", "chart-gain-churn_30d",
                  "chart-calibration-churn_30d", "chart-gain-purchase_within_30d", "verdict"):
        assert f'id="{chart}"' in page, chart
    text = re.sub(r"\s+", " ", " ".join(_Page(page).text))
    assert "123,456" in text and "2025-06-01" in text and "30 days after the cutoff" in text
    assert "7 customers kept to their last 200 events (996 older events left out)" in text
    assert "beats the constant guess" in text and "24% lower" in text
    assert "Embeddings vs RFM: scores — churn 30d: beats RFM by +0.021 [+0.004, +0.038]" in text
    assert "true" not in re.sub(r"true propensity", "", text.lower().split("model quality")[0])
    assert "explains more than rfm_kmeans" in text and "0.957" in text  # segments vs RFM, stability
    assert not re.search(r"\b\d+\.000\b|\bnan\b|\bNone\b", text)  # no 996.000, nan or None for people
    assert '<span title="what stack is, &quot;quoted&quot;">' in page  # hovering a model name says what it is


def test_a_run_without_labels_still_renders(tmp_path):
    _, page, inputs = _report(write_run(tmp_path / "run", labels=False))
    cards = _Page(page).cards
    assert len(cards) == int((inputs.segments["level"] == "broad").sum())
    assert all("observed outcomes: none (no labels)" in text for text in cards.values())
    assert "not measured: this run has no labels" in page and "chart-gain" not in page and "chart-lift" not in page
    assert 'id="chart-map"' in page and 'id="chart-sizes"' in page


def test_an_older_run_without_summary_or_observed_columns_renders(tmp_path):
    _, page, _ = _report(write_run(tmp_path / "run", observed=False, summary=False))
    cards = _Page(page).cards
    assert cards and all("observed outcomes: not measured" in text for text in cards.values())
    assert "beats RFM by +0.021" in page  # the verdict from propensity_metrics.json instead


def test_visualize_functions_return_figures_and_the_map_is_sampled(tmp_path):
    inputs = ReportInputs.from_run(write_run(tmp_path / "run"))
    rng = np.random.default_rng(0)
    ids = np.concatenate([inputs.ids] * 20)  # 6,000 points: more than the map draws
    fig = visualize_map(ids, rng.normal(size=(len(ids), 8)), inputs.customers)
    assert isinstance(fig, go.Figure) and sum(len(t.x) for t in fig.data) == 5_000
    outliers = [t for t in fig.data if t.name == "Outliers"]
    assert outliers and outliers[0].marker.color == OUTLIER_COLOR
    name = inputs.customers["segment_name"][inputs.customers["segment"] == 0].iloc[0]
    assert any(name.split(" · ")[0] in t.hovertemplate and "customers" in t.hovertemplate for t in fig.data)
    for fig in (visualize_sizes(inputs.segments), visualize_profile(inputs.segments), visualize_lift(inputs.segments),
                visualize_gain(*_label(inputs)), visualize_calibration(*_label(inputs))):
        assert isinstance(fig, go.Figure) and fig.data


def _label(inputs):
    scores = inputs.predictions["churn_30d"]
    return scores.y, scores.scores


def test_numbers_are_written_for_people():
    assert integer(996.0) == "996" and integer(1234567) == "1,234,567"
    assert percent(0.2338) == "23%" and percent(0.05) == "5.0%" and percent(None) == "—"
    assert ratio(1.7054) == "1.7×" and ratio(0.4479) == "0.45×" and number(9.96, 2) == "10"
    assert money(9.9596) == "$10" and money(4.53) == "$4.5" and money(1234.5) == "$1,234"
    assert days(311.9) == "312 days" and days(7.23) == "7.2 days" and number(float("nan")) == "—"


def test_report_for_20k_customers_stays_under_10_mb(tmp_path):
    path, _, _ = _report(write_run(tmp_path / "run", n=20_000))
    assert path.stat().st_size <= 10 * 1024 * 1024


def rendered_in_browser(path, tmp_path) -> tuple[str, int]:
    """(the DOM after headless Chromium ran the page's scripts, charts drawn); fails on a script error."""
    out = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom",
                          path.as_uri()], capture_output=True, text=True, timeout=120)
    dom = out.stdout
    assert "<html" in dom, out.stderr[-2000:]
    root = re.search(r"<html[^>]*>", dom).group(0)
    assert "data-js-errors" not in root, re.search(r'id="js-errors"[^>]*>([^<]*)', dom).group(1)
    return dom, int(re.search(r'data-charts="(\d+)"', root).group(1))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_report_renders_in_a_browser_without_script_errors(tmp_path):
    path, page, inputs = _report(write_run(tmp_path / "run"))
    dom, drawn = rendered_in_browser(path, tmp_path)
    assert drawn == page.count('class="plotly-graph-div"') and drawn >= 7  # every chart was drawn
    assert dom.count('class="main-svg"') >= drawn
    cards = _Page(dom).cards
    broad = inputs.segments[inputs.segments["level"] == "broad"]["segment"]
    assert sorted(cards) == sorted(str(s) for s in broad)
    assert all("observed" in text.lower() for text in cards.values())
    _assert_no_external_links(dom)  # nor did a chart add a link out once drawn
