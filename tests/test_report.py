import html
import re

import numpy as np
import pandas as pd

from eventseg.report import build_report
from eventseg.segments import build_customers, profile_segments
from test_segments import _inputs


def _report(tmp_path, monetary="amount_sum", **inputs):
    clusters, scores, features = _inputs(**inputs)
    customers = build_customers(clusters, scores)
    segments = profile_segments(customers, features, monetary)
    rng = np.random.default_rng(0)
    y = rng.random(100) < 0.3
    predictions = {lab: {"y": y, "scores": {"heads": rng.random(100), "baseline": rng.random(100)}}
                   for lab in ("churn_30d", "purchase_within_30d")}
    metrics = pd.DataFrame({"model": ["heads", "baseline"], "label": ["churn_30d"] * 2, "roc_auc": [0.7, 0.6]})
    path = build_report(
        tmp_path / "report.html", ids=customers["customer_id"].to_numpy(), matrix=rng.normal(size=(len(customers), 8)),
        customers=customers, segments=segments, cluster_metrics={"stability": {"mean_ari": 0.9}},
        propensity={"labels": ["churn_30d", "purchase_within_30d"], "metrics": metrics, "predictions": predictions},
    )
    return path.read_text(), customers, segments


def test_report_is_self_contained_and_has_every_chart(tmp_path):
    page, _, _ = _report(tmp_path)
    assert not re.search(r"(src|href)=[\"'](https?:)?//", page)  # nothing fetched from outside
    assert "http://" not in page and "https://" not in page
    for chart in ("chart-map", "chart-sizes", "chart-profile", "chart-lift", "chart-gain", "chart-calibration",
                  "table-segments", "table-models", "table-stability"):
        assert f'id="{chart}"' in page, chart
    assert page.count("data:image/png;base64,") == 6


def test_segments_table_nests_micro_rows_under_their_broad_segment(tmp_path):
    page, customers, segments = _report(tmp_path)
    table = page[page.index('id="table-segments"'):]
    table = table[:table.index("</table>")]
    rows = re.findall(r'<tr class="(broad|micro)"><td>(-?\d+)</td><td>(.*?)</td>', table)
    shown = [(level, int(seg), html.unescape(name)) for level, seg, name in rows]
    expected = []
    for _, b in segments[segments["level"] == "broad"].iterrows():
        expected.append(("broad", b["segment"], b["name"]))
        expected += [("micro", m["segment"], m["name"]) for _, m in segments[segments["parent"] == b["segment"]].iterrows()
                     if m["level"] == "micro"]
    assert shown == expected and len(shown) == len(segments)
    outliers, core = customers["is_outlier"].mean(), customers["is_core"].mean()
    assert f"{1 - outliers:.1%} placed in a segment, {outliers:.1%} outliers, {core:.1%} in a dense core" in page


def test_report_without_amounts_or_outliers(tmp_path):
    page, _, _ = _report(tmp_path, monetary=None, outlier_share=0.0)
    assert 'id="chart-profile"' in page and 'id="table-segments"' in page
    assert "Outliers" not in page and " basket" not in page and "0.0% outliers" in page
