"""Supervised fine-tuning (propensity.finetune): the encoder learns from the labels, a zero encoder
rate keeps it frozen, the saved network reloads to the same logits and refuses pickles, the
`finetuned` candidate competes in the selection like any other (never under cross-validated
selection, where its training scores are in-sample), and score.py rescores a run that publishes it."""

import json
import pickle
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.utils.validation import check_is_fitted

from eventseg.training.checkpoint import load_checkpoint
from eventseg.training.store import run_checkpoint
from eventseg.data.store import SequenceStore
from eventseg.run.errors import ConfigError
from eventseg.propensity import PropensityModel
from eventseg.propensity.finetune import FINETUNE_DIR, FineTunedEncoder
from eventseg.propensity.persistence import HeadsFileError
from test_persistence import PickleBomb, refused_unrun
from test_predict_selection import planted


@pytest.fixture(scope="module")
def run_parts(finished_run):
    model = load_checkpoint(run_checkpoint(finished_run)).model
    store = SequenceStore.load(finished_run / "prepared" / "store")
    return model, store


def last_category_label(store: SequenceStore) -> np.ndarray:
    """1 when a customer's most recent event is in the store's most common category: something in
    the sequence that a label can ask for but the self-supervised z need not keep."""
    last = store.categorical[store.offsets[1:] - 1, 1]
    return (last == np.bincount(store.categorical[:, 1]).argmax()).astype(np.float32)


def test_finetuning_moves_the_encoder_learns_the_label_and_a_zero_encoder_rate_keeps_it(run_parts, one_thread):
    model, store = run_parts
    y = last_category_label(store)[:, None]
    rows = np.arange(store.n_customers)
    settings = dict(max_epochs=8, patience=8, batch_size=32, device="cpu", seed=0)
    tuned = FineTunedEncoder(encoder_lr=3e-3, **settings).fit(model, store, rows, y, labels=["last"])
    frozen = FineTunedEncoder(encoder_lr=0.0, **settings).fit(model, store, rows, y, labels=["last"])
    before = model.state_dict()
    moved = [k for k, v in tuned.network_.encoder.state_dict().items() if not torch.equal(v, before[k])]
    kept = [k for k, v in frozen.network_.encoder.state_dict().items() if not torch.equal(v, before[k])]
    assert moved and not kept
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items()), "the run's own model was changed"
    auc = {name: roc_auc_score(y[:, 0], t.decision_function(store)[:, 0]) for name, t in (("tuned", tuned), ("frozen", frozen))}
    assert auc["tuned"] > auc["frozen"] + 0.05, auc
    check_is_fitted(tuned, "network_")
    assert clone(tuned).get_params() == tuned.get_params()


def test_saved_fine_tuned_encoder_reloads_to_the_same_logits_and_refuses_pickles(run_parts, tmp_path, one_thread):
    model, store = run_parts
    side = np.random.default_rng(0).standard_normal((store.n_customers, 3)).astype(np.float32)
    y = np.stack([last_category_label(store), np.r_[np.zeros(150), np.ones(store.n_customers - 150)]], axis=1)
    y[:20, 1] = np.nan  # unknown labels are masked, not read as 0
    tuner = FineTunedEncoder(max_epochs=2, device="cpu").fit(model, store, np.arange(store.n_customers), y, side=side,
                                                              labels=["a", "b"])
    tuner.save(tmp_path / FINETUNE_DIR)
    again = FineTunedEncoder.load(tmp_path / FINETUNE_DIR, model)
    assert again.labels_ == ["a", "b"] and again.fit_info_ == tuner.fit_info_
    np.testing.assert_allclose(again.decision_function(store, side), tuner.decision_function(store, side), atol=1e-6)
    with pytest.raises(ValueError, match="fitted on 3"):
        again.decision_function(store, side[:, :2])

    marker = tmp_path / "marker"
    with open(tmp_path / FINETUNE_DIR / "network.pt", "wb") as f:
        pickle.dump(PickleBomb(marker), f)
    with refused_unrun(marker, HeadsFileError, "not a fine-tuned encoder"):
        FineTunedEncoder.load(tmp_path / FINETUNE_DIR, model)
    (tmp_path / FINETUNE_DIR / "network.pt").unlink()
    with pytest.raises(HeadsFileError, match="lacks network.pt"):
        FineTunedEncoder.load(tmp_path / FINETUNE_DIR, model)


@pytest.mark.parametrize("settings, match", [
    ({"enabled": True, "lr": 0.1}, r"unknown propensity.finetune setting\(s\) \['lr'\]"),
    ({"encoder_lr": -1.0}, "encoder_lr must be >= 0"),
    ({"batch_size": 0}, "batch_size must be > 0"),
    ({"validation_fraction": 1.0}, r"validation_fraction must be in \(0, 1\)"),
])
def test_bad_finetune_settings_are_one_line_errors(settings, match):
    with pytest.raises(ConfigError, match=match):
        FineTunedEncoder.from_config(settings)


def with_logits(inputs, logits):
    return type(inputs)(inputs.representation, inputs.aggregates, inputs.rfm, logits)


def test_finetuned_candidate_publishes_only_where_it_wins_on_validation(tmp_path):
    train, y_train, val, y_val = planted(driver="recency")
    rng = np.random.default_rng(1)
    informative = lambda y: (2 * y - 1 + 0.3 * rng.standard_normal(len(y)))[:, None]  # noqa: E731
    noise = lambda y: rng.standard_normal((len(y), 1))  # noqa: E731
    models, val_logits = {}, {}
    for name, make in (("informative", informative), ("noise", noise)):
        val_logits[name] = make(y_val["buy"].to_numpy())
        models[name] = PropensityModel(heads={"kind": "logistic"}).fit(
            with_logits(train, make(y_train["buy"].to_numpy())), y_train, with_logits(val, val_logits[name]), y_val,
            kinds=(["buy"], []))
        assert "finetuned" in models[name].validation_["buy"]
    assert {name: m.selected_["buy"] for name, m in models.items()} == {"informative": "finetuned", "noise": "rfm_logistic"}

    model, logits = models["informative"], val_logits["informative"]
    model.save(tmp_path / "heads")
    loaded = PropensityModel.load(tmp_path / "heads")
    np.testing.assert_allclose(loaded.scores(with_logits(val, logits)), model.scores(with_logits(val, logits)))
    with pytest.raises(ValueError, match="no fine-tuned logits"):
        loaded.scores(val)


def test_cross_validated_selection_never_chooses_in_sample_fine_tuned_scores():
    """Logits fitted to the training labels look perfect on every fold of train + validation; the
    fold refits must not see them, or the in-sample candidate always wins."""
    train, y_train, val, y_val = planted(driver="recency", n=1500)
    in_sample = np.r_[2 * y_train["buy"].to_numpy() - 1, np.random.default_rng(2).standard_normal(len(y_val))][:, None]
    inputs = with_logits(type(train)(np.vstack([train.representation, val.representation]),
                                     pd.concat([train.aggregates, val.aggregates], ignore_index=True),
                                     pd.concat([train.rfm, val.rfm], ignore_index=True)), in_sample)
    labels = pd.concat([y_train, y_val], ignore_index=True)
    n_train = len(y_train)
    model = PropensityModel(heads={"kind": "logistic"}).fit(inputs.take(np.arange(n_train)), y_train,
                                                            inputs.take(np.arange(n_train, len(labels))), y_val,
                                                            kinds=(["buy"], []))
    cv = model.reselect_by_cross_validation(inputs, labels, np.ones(len(labels), bool), folds=3)
    assert "finetuned" not in cv["buy"]["cv_roc_auc"] and cv["buy"]["selected"] != "finetuned"
    assert "in-sample" in model.notes_["finetuned"]


def test_a_run_that_publishes_fine_tuned_scores_is_rescored_exactly(finished_run, tmp_path, monkeypatch, one_thread):
    """Force the choice to the fine-tuned candidate, then score.py must give the run's own scores."""
    from hydra import compose, initialize_config_dir

    import eventseg.propensity.selection as selection
    from eventseg.pipeline import run_pipeline
    from eventseg.run.manifest import RunError
    from eventseg.apps.score import score_customers
    from test_train import CONFIGS

    original = selection.select
    monkeypatch.setattr(selection, "select", lambda values, order, tolerance=selection.TOLERANCE: (
        "finetuned" if "finetuned" in values else original(values, order, tolerance)))
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)  # the trained model and earlier stages are reused as they are
    config = json.loads((run / "run.json").read_text())["config"]
    overrides = ["data=events", f"data.path={config['data']['path']}", "data.categorical=[event_type,category,channel]",
                 "data.numeric=[amount]", "data.max_len=40", f"paths.root_dir={tmp_path}", f"out_dir={run}",
                 "model.d_model=32", "model.embedding_dim=8", "loader.batch_size=32", "loader.eval_batch_size=64",
                 "trainer.accelerator=cpu", "logger=csv", "trainer.max_epochs=1", "objective=future",
                 f"labels.path={config['labels']['path']}", "heads=logistic", "cluster.stability.n_resamples=0",
                 "propensity.finetune.enabled=true", "propensity.finetune.max_epochs=2",
                 "propensity.selection.cv_max_customers=0"]
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="pipeline", overrides=overrides)
    monkeypatch.chdir(tmp_path)
    run_pipeline(cfg)
    metrics = json.loads((run / "propensity_metrics.json").read_text())
    assert {o["selected"] for o in metrics["outcomes"].values() if o["kind"] == "binary"} == {"finetuned"}
    assert metrics["finetune"]["epochs_run"] >= 1
    ours = pd.read_parquet(run / "customers.parquet").set_index("customer_id")
    scored = score_customers(run, config["data"]["path"], device="cpu").set_index("customer_id").loc[ours.index]
    for column in [c for c in ours.columns if c.startswith("p_")]:
        np.testing.assert_allclose(scored[column], ours[column], atol=1e-5)
    weights = run / FINETUNE_DIR / "network.pt"
    weights.write_bytes(weights.read_bytes()[:-1] + bytes([weights.read_bytes()[-1] ^ 1]))
    with pytest.raises(RunError, match="network.pt"):
        score_customers(run, config["data"]["path"], device="cpu")
