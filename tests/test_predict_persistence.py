"""A saved PropensityModel (a run's heads/) gives the same scores after loading, for every
candidate kind, publishes each label's chosen candidate, and loads no code from its files."""

import json

import numpy as np
import pandas as pd
import pytest
import skops.io as sio

from eventseg.propensity import HeadsFileError, PropensityHeads, PropensityModel
from eventseg.propensity.persistence import ESTIMATORS_FILE, MODEL_FILE
from eventseg.propensity.selection import STACK
from test_persistence import SkopsBomb, refused_unrun
from test_predict_selection import planted


@pytest.fixture(scope="module")
def fitted():
    train, y_train, val, y_val = planted(n=1500, driver="representation")
    y_train, y_val = (y.assign(churn=(y["buy"] == 0) & (np.arange(len(y)) % 3 == 0)).astype(float) for y in (y_train, y_val))
    heads = {"kind": "mlp", "max_epochs": 4, "hidden": [8], "calibrate": True, "concat_rfm": True}
    model = PropensityModel(heads=heads, stack_folds=3).fit(train, y_train, val, y_val, kinds=(["buy", "churn"], ["spend"]))
    return model, val


def test_every_candidate_kind_round_trips_to_identical_scores(fitted, tmp_path):
    model, inputs = fitted
    before = model.candidate_scores(inputs)
    kinds = {c.split("__")[0] for c in before.columns}
    assert kinds == {"rfm_logistic", "aggregate_hgb", "rep_logistic", "rep_ridge", "rep_hgb", "heads", STACK}
    assert model.fits_["heads"].network_ is not None  # the MLP, its weights saved weights-only
    loaded = PropensityModel.load(model.save(tmp_path / "all", candidates="all"))
    pd.testing.assert_frame_equal(loaded.candidate_scores(inputs), before, check_exact=True)
    pd.testing.assert_frame_equal(loaded.scores(inputs), model.scores(inputs), check_exact=True)


def test_only_what_the_published_scores_need_is_saved_and_used(fitted, tmp_path):
    model, inputs = fitted
    before, original = model.candidate_scores(inputs), dict(model.selected_)
    for label, chosen in (("buy", "aggregate_hgb"), ("buy", STACK), ("buy", "rfm_logistic")):
        model.selected_[label] = chosen  # as if validation had chosen it
        path = model.save(tmp_path / chosen)
        saved = {p.name for p in path.iterdir() if p.is_dir()}
        assert saved == model.required_fits()
        assert (chosen in saved) if chosen != STACK else (saved >= set(model.stacks_["buy"].inputs_))
        loaded = PropensityModel.load(path)
        scores = loaded.scores(inputs)
        np.testing.assert_array_equal(scores["p_buy"], before[f"{chosen}__p_buy"])  # what score.py publishes
        np.testing.assert_array_equal(scores["p_churn"], before[f"{model.selected_['churn']}__p_churn"])
        assert ("pred_spend" in scores) == (model.published_["spend"] is not None)
    model.selected_ = original


def test_model_files_that_are_old_incomplete_or_crafted_are_refused(fitted, tmp_path):
    model, inputs = fitted
    path = model.save(tmp_path / "heads")
    meta = json.loads((path / MODEL_FILE).read_text())
    (path / MODEL_FILE).write_text(json.dumps({**meta, "fits": [*meta["fits"], "../../elsewhere"]}))
    with pytest.raises(HeadsFileError, match="model.json is corrupt .*unknown candidate"):
        PropensityModel.load(path)
    (path / MODEL_FILE).write_text(json.dumps(meta))
    first = sorted(meta["fits"])[0]
    estimators = path / first / ESTIMATORS_FILE
    if estimators.exists():
        marker = tmp_path / "marker"
        good = estimators.read_bytes()
        estimators.write_bytes(sio.dumps({"buy": SkopsBomb(marker)}))
        with refused_unrun(marker, HeadsFileError, "names types that eventseg never loads.*SkopsBomb"):
            PropensityModel.load(path)
        estimators.write_bytes(good)
    PropensityModel.load(path)  # restored: loads
    for sub in (path / first).iterdir():
        sub.unlink()
    (path / first).rmdir()
    with pytest.raises(HeadsFileError, match=rf"lacks the saved candidate\(s\) \['{first}'\]"):
        PropensityModel.load(path)
    old = PropensityHeads(kind="logistic").fit(inputs.representation[:200], pd.DataFrame({"buy": np.arange(200) % 2.0}),
                                               inputs.representation[200:300], pd.DataFrame({"buy": np.arange(100) % 2.0}))
    with pytest.raises(HeadsFileError, match="written by an older eventseg"):
        PropensityModel.load(old.save(tmp_path / "old"))
