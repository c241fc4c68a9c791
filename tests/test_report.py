import re

import numpy as np
import pandas as pd

from eventseg.report import build_report
from eventseg.segments import build_customers, profile_segments
from test_segments import _inputs


def test_report_is_self_contained_and_has_every_chart(tmp_path):
    clusters, scores, features = _inputs()
    customers = build_customers(clusters, scores)
    segments = profile_segments(customers, features, "amount_sum")
    rng = np.random.default_rng(0)
    y = rng.random(100) < 0.3
    predictions = {lab: {"y": y, "scores": {"heads": rng.random(100), "baseline": rng.random(100)}}
                   for lab in ("churn_30d", "purchase_within_30d")}
    metrics = pd.DataFrame({"model": ["heads", "baseline"], "label": ["churn_30d"] * 2, "roc_auc": [0.7, 0.6]})
    path = build_report(
        tmp_path / "report.html", ids=customers["customer_id"].to_numpy(), matrix=rng.normal(size=(len(customers), 8)),
        customers=customers, segments=segments, cluster_metrics={"noise_share": 0.1, "stability": {"mean_ari": 0.9}},
        propensity={"labels": ["churn_30d", "purchase_within_30d"], "metrics": metrics, "predictions": predictions},
    )
    page = path.read_text()
    assert not re.search(r"(src|href)=[\"'](https?:)?//", page)  # nothing fetched from outside
    assert "http://" not in page and "https://" not in page
    for chart in ("chart-map", "chart-sizes", "chart-profile", "chart-lift", "chart-gain", "chart-calibration",
                  "table-segments", "table-models", "table-stability"):
        assert f'id="{chart}"' in page, chart
    assert page.count("data:image/png;base64,") == 6
    assert "Unsegmented" in page
