"""Continuous targets: chosen like the binary labels, published only when the chosen regressor
beats the mean on validation (R² > 0)."""

import numpy as np
import pandas as pd

from eventseg.data.schema import EventSchema
from eventseg.propensity import PropensityModel, evaluate_propensity, verdict_lines

SCHEMA = EventSchema(categorical=("event_type",), numeric=("amount",))


def _run(spend_of, tmp_path=None):
    rng = np.random.default_rng(0)
    n = 2400
    ids = np.arange(n) + 1
    splits = np.repeat(np.array([0, 1, 2], dtype=np.int8), [1600, 400, 400])
    rep = rng.standard_normal((n, 4))
    events = pd.DataFrame({"customer_id": np.repeat(ids, 3), "ts": pd.Timestamp("2025-01-01") + pd.to_timedelta(
        rng.integers(0, 90 * 86400, 3 * n), unit="s"), "event_type": "purchase", "amount": rng.lognormal(3, 1, 3 * n)})
    labels = pd.DataFrame({"customer_id": ids, "buy": (rep[:, 0] + rng.standard_normal(n) > 0).astype(float),
                           "spend": spend_of(rep, splits, rng)})
    return evaluate_propensity(ids, rep, labels, events, SCHEMA, {"kind": "logistic"}, seed=0, splits=splits)


def test_a_target_with_validation_r2_at_most_0_is_not_published(tmp_path):
    # what training customers spent says nothing about validation customers: every regressor is worse than the mean
    out = _run(lambda rep, splits, rng: rng.gamma(2.0, 5.0, len(rep)) + np.where(splits == 1, 15.0, 0.0))
    spend = out["metrics"]["outcomes"]["spend"]
    r2 = spend["candidates"][spend["selected"]]["validation"]["r2"]
    assert r2 <= 0 and all(c["validation"]["r2"] <= 0 for c in spend["candidates"].values())
    assert spend["published"] is False and spend["published_as"] is None
    assert spend["verdict"] == f"not published: validation R\u00b2 {r2:.3f} \u2264 0".replace("-", "\u2212")
    assert "spend: " + spend["verdict"] in " | ".join(verdict_lines(out["metrics"]))
    assert "pred_spend" not in out["scores"] and not any("pred_" in c for c in out["candidate_scores"])
    assert "p_buy" in out["scores"]
    model = PropensityModel.load(out["model"].save(tmp_path / "heads"))
    assert model.published_ == {"spend": None}


def test_a_target_the_representation_predicts_is_published():
    out = _run(lambda rep, splits, rng: np.exp(1.0 + 0.8 * rep[:, 1]) + rng.gamma(1.0, 0.5, len(rep)))
    spend = out["metrics"]["outcomes"]["spend"]
    assert spend["published"] is True and spend["selected"] in ("rep_ridge", "rep_hgb")
    assert spend["verdict"].startswith(f"published from {spend['selected']}: validation R\u00b2 0.")
    assert out["scores"]["pred_spend"].notna().all()
