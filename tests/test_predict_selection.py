"""Choosing a candidate per label on validation: the baseline when it is better (or as good),
the representation's model when that is better, the stack scored out of sample, and the
scikit-learn estimator contract of every fitted object."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score
from sklearn.utils.validation import check_is_fitted

from eventseg.data.schema import EventSchema
from eventseg.propensity import CandidateInputs, PlattCalibrator, PropensityHeads, PropensityModel
from eventseg.propensity.selection import BASELINES, BINARY_ORDER, STACK, LogitStack, select

SCHEMA = EventSchema(categorical=("event_type",), numeric=("amount",))


def planted(n=4000, d=8, driver="recency", seed=0):
    """Train/validation inputs and labels where the outcome depends on recency only (the
    representation is noise) or on the representation only (the aggregates are noise)."""
    rng = np.random.default_rng(seed)
    rep = rng.standard_normal((n, d)).astype(np.float32)
    recency = rng.exponential(30.0, n)
    aggregates = pd.DataFrame({
        "recency_days": recency, "n_events": rng.poisson(20, n).astype(float), "amount_sum": rng.lognormal(4, 1, n),
        "tenure_days": 200 + rng.exponential(100, n), "share_web": rng.random(n),
    })
    z = 3.0 - 1.3 * np.log1p(recency) if driver == "recency" else rep[:, :4] @ np.array([1.2, -1.0, 0.8, 0.6])
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(float)
    spend = np.where(y > 0, np.exp(1 + 0.5 * rep[:, 0] if driver != "recency" else 3 - 0.3 * np.log1p(recency)), 0.0)
    labels = pd.DataFrame({"buy": y, "spend": spend})
    inputs = CandidateInputs.build(rep, aggregates, SCHEMA)
    tr, va = np.arange(n) < int(0.7 * n), np.arange(n) >= int(0.7 * n)
    return inputs.take(tr), labels[tr].reset_index(drop=True), inputs.take(va), labels[va].reset_index(drop=True)


def _fit(driver, heads=None, seed=0, **kw):
    train, y_train, val, y_val = planted(driver=driver, seed=seed)
    model = PropensityModel(heads=heads or {"kind": "logistic"}, **kw)
    return model.fit(train, y_train, val, y_val, kinds=(["buy"], ["spend"])), val, y_val


def test_selection_picks_the_baseline_when_the_outcome_is_a_function_of_recency():
    model, _, _ = _fit("recency")
    auc = {name: m["roc_auc"] for name, m in model.validation_["buy"].items()}
    assert auc["rfm_logistic"] > max(auc["rep_hgb"], auc["heads"]) + 0.1, auc  # the representation is noise
    assert model.selected_["buy"] == "rfm_logistic", auc
    assert model.selected_["spend"] == "aggregate_hgb"  # the representation's regressors see noise


def test_selection_picks_the_representation_model_when_it_is_better():
    model, _, _ = _fit("representation")
    auc = {name: m["roc_auc"] for name, m in model.validation_["buy"].items()}
    assert max(auc["heads"], auc["rep_hgb"]) > max(auc[b] for b in BASELINES) + 0.1, auc
    assert model.selected_["buy"] not in BASELINES, auc
    assert model.selected_["spend"] in ("rep_ridge", "rep_hgb") and model.published_["spend"] == model.selected_["spend"]


def test_near_ties_go_to_the_simpler_candidate():
    order = BINARY_ORDER
    assert select({"rfm_logistic": 0.740, "heads": 0.7419, "stack": 0.7415}, order) == "rfm_logistic"  # within 0.002
    assert select({"rfm_logistic": 0.740, "heads": 0.7421}, order) == "heads"  # beyond it
    assert select({"rfm_logistic": 0.740, "aggregate_hgb": 0.740, "rep_hgb": 0.740}, order) == "rfm_logistic"  # a tie
    assert select({"aggregate_hgb": 0.740, "rep_hgb": 0.7415, "stack": 0.745}, order) == "stack"
    assert select({"aggregate_hgb": 0.74, "heads": 0.75}, order, tolerance=0.02) == "aggregate_hgb"
    assert select({"heads": None}, order) is None


def test_the_stack_competes_on_out_of_fold_validation_scores():
    """A stack of pure-noise scores looks good in sample and is judged on its cross-fitted scores."""
    rng = np.random.default_rng(0)
    P, y = rng.random((300, 6)), (rng.random(300) < 0.4).astype(float)
    stack = LogitStack(folds=5, seed=0)
    in_sample = roc_auc_score(y, stack.fit(P, y).predict_proba(P))
    out_of_fold = roc_auc_score(y, stack.cross_fit_predict(P, y))
    assert in_sample > 0.56 and out_of_fold < in_sample - 0.04, (in_sample, out_of_fold)

    model, val, y_val = _fit("representation")
    stacked = model.stacks_["buy"]
    assert stacked.inputs_ == [n for n in BINARY_ORDER if n in model.validation_["buy"] and n != STACK]
    raw = {n: model.fits_[n].predict_proba(val.matrix(c), val.rfm if n == "heads" else None, calibrated=False)[:, 0]
           for n, c in (("rfm_logistic", "rfm"), ("aggregate_hgb", "aggregates"), ("rep_hgb", "representation"),
                        ("heads", "representation"))}
    oof = LogitStack(folds=5, seed=0).cross_fit_predict(np.column_stack([raw[n] for n in stacked.inputs_]), y_val["buy"].to_numpy())
    assert model.validation_["buy"][STACK]["roc_auc"] == pytest.approx(roc_auc_score(y_val["buy"], oof), abs=1e-12)


@pytest.mark.parametrize("make", [
    lambda: PropensityHeads(kind="logistic", hidden=(8,), calibrate=True, seed=3),
    lambda: PlattCalibrator(C=10.0),
    lambda: LogitStack(C=0.5, folds=3, seed=1),
    lambda: PropensityModel(heads={"kind": "logistic"}, tolerance=0.01, stack_folds=3, seed=2),
])
def test_fitted_objects_follow_the_estimator_contract(make):
    est = make()
    params = est.get_params()
    twin = clone(est)  # refuses an __init__ that changes or does not store its arguments
    assert type(twin) is type(est) and twin.get_params() == params
    with pytest.raises(NotFittedError):
        check_is_fitted(est)
    rng = np.random.default_rng(0)
    if isinstance(est, PlattCalibrator):
        fitted = est.fit(rng.random(200), rng.random(200) < 0.5)
    elif isinstance(est, LogitStack):
        fitted = est.fit(rng.random((200, 3)), rng.random(200) < 0.5)
    elif isinstance(est, PropensityHeads):
        X = rng.standard_normal((300, 4))
        y = pd.DataFrame({"buy": (X[:, 0] + rng.standard_normal(300) > 0).astype(float)})
        fitted = est.fit(X[:200], y[:200], X[200:], y[200:])
    else:
        train, y_train, val, y_val = planted(n=800)
        fitted = est.fit(train, y_train, val, y_val)
    assert fitted is est
    check_is_fitted(est)
    assert est.get_params() == params  # fitting changes no parameter
    fresh = clone(est)
    with pytest.raises(NotFittedError):
        check_is_fitted(fresh)


def test_evaluate_publishes_the_chosen_baseline_and_says_so():
    """Outcomes driven by recency, a noise representation: RFM is chosen, p_<label> is RFM's score,
    and the verdict says the scores come from RFM (what score.py then reproduces)."""
    from eventseg.propensity import evaluate_propensity

    rng = np.random.default_rng(1)
    n = 3000
    ids = np.arange(n) + 1
    recency = rng.exponential(30.0, n)
    end = pd.Timestamp("2025-06-01")
    ages = np.stack([recency, recency + rng.exponential(20, n), recency + 40 + rng.exponential(60, n)], axis=1)
    events = pd.DataFrame({"customer_id": np.repeat(ids, 3), "ts": end - pd.to_timedelta(ages.ravel(), unit="D"),
                           "event_type": "purchase", "amount": rng.lognormal(3, 1, 3 * n)})
    buy = (rng.random(n) < 1 / (1 + np.exp(-(3.0 - 1.3 * np.log1p(recency))))).astype(float)
    labels = pd.DataFrame({"customer_id": ids, "buy": buy})
    out = evaluate_propensity(ids, rng.standard_normal((n, 6)), labels, events, SCHEMA, {"kind": "logistic"}, seed=0,
                              split_fractions=(0.6, 0.2, 0.2))
    outcome = out["metrics"]["outcomes"]["buy"]
    assert outcome["selected"] == "rfm_logistic", {k: c["validation"]["roc_auc"] for k, c in outcome["candidates"].items()}
    assert outcome["verdict"] == "no better than RFM here: scores come from RFM logistic"
    np.testing.assert_array_equal(out["scores"]["p_buy"], out["candidate_scores"]["rfm_logistic__p_buy"])
    assert out["metrics"]["summary"]["buy"]["selected"] == "rfm_logistic"


def _pooled(driver, n, seed=0):
    train, y_train, val, y_val = planted(n=n, driver=driver, seed=seed)
    pooled = CandidateInputs(np.vstack([train.representation, val.representation]),
                             pd.concat([train.aggregates, val.aggregates], ignore_index=True),
                             pd.concat([train.rfm, val.rfm], ignore_index=True))
    return train, y_train, val, y_val, pooled, pd.concat([y_train, y_val], ignore_index=True)


@pytest.mark.parametrize("driver, expect_baseline", [("recency", True), ("representation", False)])
def test_cross_validated_choice_scores_every_labelled_customer_out_of_fold(driver, expect_baseline):
    """Each non-stack candidate gets one out-of-fold ROC-AUC per fold over train + validation, and the
    choice follows the same simplest-within-tolerance rule on their means."""
    train, y_train, val, y_val, pooled, y_all = _pooled(driver, n=1500)
    model = PropensityModel(heads={"kind": "logistic"}).fit(train, y_train, val, y_val, kinds=(["buy"], []))
    result = model.reselect_by_cross_validation(pooled, y_all, np.ones(len(y_all), dtype=bool), folds=3)["buy"]
    cv = result["cv_roc_auc"]
    assert STACK not in cv and set(cv) == set(model.validation_["buy"]) - {STACK}
    assert result["selected"] == model.selected_["buy"] == select(cv, BINARY_ORDER, model.tolerance)
    assert (model.selected_["buy"] in BASELINES) == expect_baseline, cv


def test_evaluate_chooses_by_cross_validation_only_for_small_labelled_sets():
    from eventseg.propensity import evaluate_propensity

    rng = np.random.default_rng(2)
    n = 800
    ids = np.arange(n) + 1
    end = pd.Timestamp("2025-06-01")
    recency = rng.exponential(30.0, n)
    events = pd.DataFrame({"customer_id": np.repeat(ids, 2), "ts": end - pd.to_timedelta(np.r_[recency, recency + 30], unit="D"),
                           "event_type": "purchase", "amount": rng.lognormal(3, 1, 2 * n)})
    labels = pd.DataFrame({"customer_id": ids, "buy": (rng.random(n) < 1 / (1 + np.exp(-(2.0 - np.log1p(recency))))).astype(float)})
    args = (ids, rng.standard_normal((n, 4)), labels, events, SCHEMA)
    small = evaluate_propensity(*args, {"kind": "logistic"}, seed=0, selection_cfg={"cv_folds": 3})["metrics"]["selection"]
    assert set(small["cross_validation"]["buy"]["cv_roc_auc"]) >= set(BASELINES)
    assert small["rule"].startswith("highest mean ROC-AUC over 3-fold refits")
    large = evaluate_propensity(*args, {"kind": "logistic"}, seed=0,
                                selection_cfg={"cv_max_customers": 100})["metrics"]["selection"]
    assert large["cross_validation"] is None and large["rule"].startswith("highest validation ROC-AUC")
