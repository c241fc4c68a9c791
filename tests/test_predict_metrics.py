"""The paired bootstrap of ROC-AUC differences and the verdict sentences built on it."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from eventseg.propensity.fit import binary_verdict, regression_verdict
from eventseg.propensity.metrics import paired_auc_differences


def test_paired_interval_matches_a_hand_computed_bootstrap():
    """12 customers, 200 resamples: the same rows for both scores in every resample."""
    y = np.array([1, 0, 1, 1, 0, 0, 1, 0, 0, 1, 0, 0], dtype=float)
    a = np.array([0.9, 0.2, 0.7, 0.4, 0.5, 0.1, 0.8, 0.3, 0.6, 0.65, 0.35, 0.15])
    b = np.array([0.6, 0.5, 0.4, 0.7, 0.3, 0.2, 0.9, 0.8, 0.1, 0.45, 0.55, 0.25])
    n_boot, seed = 200, 7
    rows = np.random.default_rng(seed).integers(0, len(y), size=(n_boot, len(y)))  # one draw per resample, as documented
    diffs = [roc_auc_score(y[r], a[r]) - roc_auc_score(y[r], b[r]) for r in rows if 0 < y[r].sum() < len(r)]
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    out = paired_auc_differences(y, {"a": a, "b": b}, reference="b", n_boot=n_boot, seed=seed)["a"]
    assert out["difference"] == pytest.approx(roc_auc_score(y, a) - roc_auc_score(y, b))
    assert (out["ci_low"], out["ci_high"]) == pytest.approx((lo, hi), abs=1e-12)
    assert out["n_boot"] == n_boot and out["level"] == 0.95


def test_identical_scores_differ_by_exactly_zero_and_the_interval_covers_it():
    rng = np.random.default_rng(0)
    y = (rng.random(500) < 0.3).astype(float)
    p = rng.random(500)
    out = paired_auc_differences(y, {"rfm_logistic": p, "same": p.copy(), "better": p + y * 0.3}, "rfm_logistic", n_boot=300)
    assert out["same"]["difference"] == 0 and out["same"]["ci_low"] == 0 and out["same"]["ci_high"] == 0
    assert out["rfm_logistic"]["difference"] == 0
    assert out["better"]["ci_low"] > 0  # a real gain is separated from noise


def test_verdict_for_each_branch():
    def vs(d, lo, hi):
        return {"difference": d, "ci_low": lo, "ci_high": hi}

    assert binary_verdict("aggregate_hgb", vs(0.012, 0.004, 0.020)) == "beats RFM by +0.012 [+0.004, +0.020]"
    assert binary_verdict("heads", vs(0.004, -0.006, 0.013)) == "within noise of RFM: +0.004 [\u22120.006, +0.013]"
    assert binary_verdict("stack", vs(-0.010, -0.020, -0.002)) == "worse than RFM: \u22120.010 [\u22120.020, \u22120.002]"
    assert binary_verdict("rfm_logistic", vs(0.0, 0.0, 0.0)) == "no better than RFM here: scores come from RFM logistic"
    assert binary_verdict("heads", vs(0.004, 0.0, 0.01)).startswith("within noise")  # touching 0 is not above it
    assert "not comparable" in binary_verdict("heads", vs(None, None, None))
    assert regression_verdict("rep_hgb", -0.009, None) == "not published: validation R\u00b2 \u22120.009 \u2264 0"
    assert regression_verdict("rep_hgb", 0.0, None) == "not published: validation R\u00b2 0.000 \u2264 0"
    assert regression_verdict("rep_hgb", 0.07, "rep_hgb") == "published from rep_hgb: validation R\u00b2 0.070"
    assert regression_verdict(None, None, None).startswith("not published: validation R\u00b2 undefined")
