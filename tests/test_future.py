"""The future-summary objective: cut times, prefixes re-anchored to the cut, targets from
after the cut only, censoring, the loss falling, and the config wiring."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import lightning as L

from eventseg.data.batch import MISSING, RARE, UNSEEN, EventBatch, FeatureSpec
from eventseg.training.module import SequenceEncoderModule
from eventseg.objectives.future import (FutureSummaryHead, FutureTargets, constant_baseline, constant_guess,
                                    constant_term_losses, future_options, mix_lookup)
from eventseg.data.synthetic import generate_synthetic, write_synthetic
from eventseg.training.train import train
from test_contrastive import fit
from test_train import compose_train, tiny_overrides

# amount and age scaled with center 0, scale 1: the features are signed_log1p of raw values
SPEC = FeatureSpec(
    categorical={"kind": 4 + 3},
    numeric=["amount", "amount__missing", "time_log_age"],
    scalers={"amount": {"center": 0.0, "scale": 1.0, "clip": 50.0}, "time_log_age": {"center": 0.0, "scale": 1.0, "clip": 50.0}},
)
CARD = dict(SPEC.categorical)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest


def batch_of(histories: list[list[tuple[float, int, float]]]) -> EventBatch:
    """Histories as (age_days, kind code, amount or NaN) per event, oldest first."""
    width = max(len(h) for h in histories)
    cat = torch.zeros(len(histories), width, 1, dtype=torch.long)
    num = torch.zeros(len(histories), width, 3)
    for i, h in enumerate(histories):
        for j, (age, kind, amount) in enumerate(h):
            cat[i, j, 0] = kind
            missing = math.isnan(amount)
            num[i, j] = torch.tensor([0.0 if missing else math.copysign(math.log1p(abs(amount)), amount), float(missing), math.log1p(age)])
    return EventBatch(cat, num, torch.tensor([len(h) for h in histories]), torch.arange(len(histories)))


HAND = [(100.0, 4, 10.0), (80.0, 5, 20.0), (50.0, 6, 5.0), (45.0, 4, 7.0), (10.0, 5, float("nan"))]


def targets(history, cut_age: float, horizon: float) -> dict:
    batch = batch_of([history])
    k = torch.tensor([sum(age > cut_age for age, _, _ in history)])  # events strictly before the cut
    return FutureTargets(SPEC).compute(batch, torch.tensor([cut_age]), k, horizon, CARD)


def test_targets_by_hand():
    got = targets(HAND, 60.0, 12.0)  # cut 60 days before the anchor: the window is ages (48, 60]
    assert got["in_window"][0].tolist() == [False, False, True, False, False]
    assert got["n_window"].item() == 1 and got["count"].item() == pytest.approx(math.log1p(1))
    assert got["next_days"].item() == pytest.approx(math.log1p(10.0), rel=1e-5)  # the event at age 50
    assert bool(got["next_seen"].item())
    assert got["shares"]["kind"][0].tolist() == [0.0] * 6 + [1.0]  # the window's one event is kind 6
    assert got["sums"][0, 0].item() == pytest.approx(math.log1p(5.0), rel=1e-5)

    assert got["active_days"].item() == pytest.approx(math.log1p(1))

    wide = targets(HAND, 60.0, 20.0)  # ages (40, 60]: the events at 50 and 45
    assert wide["n_window"].item() == 2
    assert wide["shares"]["kind"][0, 4].item() == pytest.approx(0.5) and wide["shares"]["kind"][0, 6].item() == pytest.approx(0.5)
    assert wide["sums"][0, 0].item() == pytest.approx(math.log1p(12.0), rel=1e-5)
    assert wide["active_days"].item() == pytest.approx(math.log1p(2))


def test_active_days_count_visits_not_line_items():
    """A basket of three items is three events on one day; the day an event before the cut
    shares does not hide the window's first day."""
    basket = [(30.4, 4, 1.0), (20.6, 4, 1.0), (20.5, 5, 2.0), (20.4, 6, 3.0), (5.0, 4, 1.0)]
    got = targets(basket, 20.55, 18.0)  # cut inside day 20: the last two basket items are in the window
    assert got["n_window"].item() == 3  # ages 20.5, 20.4 and 5
    assert got["active_days"].item() == pytest.approx(math.log1p(2))  # day 20 and day 5


def test_missing_amounts_do_not_count_and_a_quiet_end_is_censored():
    got = targets(HAND, 20.0, 15.0)  # ages (5, 20]: the event at 10, whose amount is missing
    assert got["n_window"].item() == 1 and got["sums"][0, 0].item() == 0.0
    end = targets(HAND, 8.0, 5.0)  # after the last event: nothing follows before the anchor
    assert not bool(end["next_seen"].item()) and end["n_window"].item() == 0
    assert end["next_days"].item() == pytest.approx(math.log1p(8.0), rel=1e-5)  # at least the 8 days to the anchor
    assert end["shares"]["kind"].sum().item() == 0.0


def test_targets_use_only_events_after_the_cut():
    """Rewriting the history before the cut (kinds, amounts, times) leaves the target
    unchanged; rewriting an event in the window changes it."""
    base = targets(HAND, 55.0, 20.0)
    prefix_changed = [(300.0, 6, 999.0), (70.0, 6, -3.0), (56.0, 4, 1.0)] + HAND[2:]
    same = targets(prefix_changed, 55.0, 20.0)
    for key in ("count", "next_days", "sums"):
        assert torch.equal(base[key], same[key]), key
    assert torch.equal(base["shares"]["kind"], same["shares"]["kind"])
    future_changed = HAND[:3] + [(45.0, 6, 70.0)] + HAND[4:]
    other = targets(future_changed, 55.0, 20.0)
    assert not torch.equal(base["sums"], other["sums"]) and not torch.equal(base["shares"]["kind"], other["shares"]["kind"])


def test_cuts_leave_a_whole_window_and_prefixes_are_re_anchored():
    t = FutureTargets(SPEC)
    recent_only = [(5.0, 4, 1.0), (2.0, 4, 1.0)]  # the first event is within 30 days of the anchor
    batch = batch_of([HAND, recent_only])
    cuts = []
    for seed in range(200):
        cut_age, k, usable = t.sample_cuts(batch, 30.0, torch.Generator().manual_seed(seed))
        assert usable.tolist() == [True, False]
        assert 30.0 <= cut_age[0].item() < 100.0  # window inside the data, at least one event before the cut
        assert k[0].item() == sum(age > cut_age[0].item() for age, _, _ in HAND)
        cuts.append(cut_age[0].item())
    assert min(cuts) < 40.0 and max(cuts) > 90.0  # uniform over [30, 100) days
    prefix = t.prefix(batch, torch.tensor([60.0, 0.0]), torch.tensor([2, 2]))
    assert prefix.lengths.tolist() == [2, 2]
    ages = torch.expm1(prefix.numeric[0, :2, 2]).tolist()  # re-measured to the cut: 100 - 60, 80 - 60
    assert ages == pytest.approx([40.0, 20.0], rel=1e-5)
    assert torch.equal(prefix.numeric[..., :2], batch.numeric[..., :2])  # other features untouched


def test_options_are_checked():
    assert future_options(None)["horizon_days"] == 30.0
    with pytest.raises(ValueError, match="horizon_days"):
        future_options({"horizon_days": 0})
    with pytest.raises(ValueError, match="unknown future options"):
        future_options({"window": 3})
    with pytest.raises(ValueError, match="top_k"):
        future_options({"top_k": 0})
    with pytest.raises(ValueError, match="n_cuts"):
        future_options({"n_cuts": 0})
    assert future_options({"top_k": None})["top_k"] is None
    no_time = {"categorical": {"kind": 7}, "numeric": ["amount"]}  # a spec without scalers
    with pytest.raises(ValueError, match="re-run prepare"):
        SequenceEncoderModule(no_time, d_model=16, embedding_dim=8, objectives={"future": 1.0})


def structured_sequences(n: int, seed: int = 0) -> list:
    """Customers whose future follows from their past: a steady rhythm (gap), a favourite
    kind and a typical amount, so the window after any prefix is predictable from it."""
    rng = np.random.default_rng(seed)
    seqs = []
    for i in range(n):
        gap = rng.choice([2.0, 9.0, 25.0])
        length = int(rng.integers(8, 30))
        ages = (np.arange(length)[::-1] * gap + rng.uniform(0, 3)).tolist()
        kind = int(rng.integers(4, 7))
        amount = float(rng.choice([3.0, 40.0, 300.0]))
        b = batch_of([[(a, kind if rng.random() < 0.8 else 4, amount * rng.uniform(0.8, 1.2)) for a in ages]])
        seqs.append((b.categorical[0], b.numeric[0], i))
    return seqs


def test_future_objective_loss_falls():
    model = SequenceEncoderModule(SPEC.to_dict(), d_model=32, embedding_dim=16, objectives={"future": 1.0},
                                future={"horizon_days": 30}, lr=3e-3, warmup_steps=0)
    assert model.decoder is None and model.future_head is not None
    losses = fit(model, structured_sequences(64), steps=150, batch_size=16)
    start, end = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert end < 0.6 * start, (start, end)


def test_fast_dev_run_future_objectives(tmp_path, tiny_events):
    result = train(compose_train(tiny_overrides(tmp_path, tiny_events) + ["objective=contrastive_future", "debug=fast_dev_run"]))
    m = result.metrics
    assert result.model.decoder is None and result.model.hparams.future["horizon_days"] == 30
    assert {"val/loss_contrastive", "val/loss_future", "val/loss_future_count", "val/loss_future_amount_sum",
            "val/loss_future_category_mix", "val/loss_future_next_days", "val/loss_future_abs",
            "val/loss_future_category_mix_abs"} <= set(m)
    assert abs(m["val/loss"] - m["val/loss_contrastive"] - m["val/loss_future"]) < 1e-4
    base = m["trivial_baseline"]
    assert base["loss_future"] > 0 and {"loss_future_count", "loss_future_category_mix", "loss_future_count_abs"} <= set(base)


def test_future_beats_the_constant_guess(tmp_path):
    """On 2,000 synthetic customers (300 are too few: the objective then loses to the mean
    guess), a few seconds of training predict the next 30 days better than a constant."""
    write_synthetic(generate_synthetic(n_customers=2000, seed=0), tmp_path / "data")
    overrides = tiny_overrides(tmp_path, tmp_path / "data" / "events.parquet")
    m = train(compose_train(overrides + ["objective=future", "trainer.max_epochs=10", "callbacks.early_stopping=null"])).metrics
    base = m["trivial_baseline"]
    assert m["val/loss_future"] < 0.95 * base["loss_future"]
    for term in ("next_days", "amount_sum", "channel_mix", "active_days"):  # rhythm, spend, habits
        assert m[f"val/loss_future_{term}"] < base[f"loss_future_{term}"], term


def test_value_mix_is_over_the_top_values_plus_missing_and_other():
    """top_k=2 of five values: the two most frequent codes keep a class each, missing has one,
    and everything else — the three rarer values, the rare and unseen buckets — is "other"."""
    lut = mix_lookup(4 + 5, top_k=2)
    assert lut.tolist() == [0, 0, 0, 1, 2, 3, 0, 0, 0]  # pad, unseen, rare -> other; missing; codes 4, 5; 6-8 -> other
    assert mix_lookup(4 + 5, top_k=None) is None and mix_lookup(4 + 1, top_k=50).tolist() == [0, 0, 0, 1, 2]
    spec = FeatureSpec(categorical={"kind": 9}, numeric=SPEC.numeric, scalers=SPEC.scalers)
    head = FutureSummaryHead(spec, 8, 16, {"top_k": 2})
    assert head.classes == {"kind": 4} and head.values["kind"].out_features == 4
    window = [(59.0, 4, 1.0), (58.0, 5, 1.0), (57.0, 5, 1.0), (56.0, 6, 1.0), (55.0, 8, 1.0), (54.0, RARE, 1.0),
              (53.0, UNSEEN, 1.0), (52.0, MISSING, 1.0)]
    batch = batch_of([[(100.0, 4, 1.0)] + window])
    got = head.compute_targets(batch, torch.tensor([60.0]), torch.tensor([1]))
    assert got["n_window"].item() == 8
    # other: codes 6, 8, rare, unseen; missing: 1; code 4: 1; code 5: 2
    assert got["shares"]["kind"][0].tolist() == pytest.approx([4 / 8, 1 / 8, 1 / 8, 2 / 8])
    full = FutureSummaryHead(spec, 8, 16, {"top_k": None}).compute_targets(batch, torch.tensor([60.0]), torch.tensor([1]))
    assert full["shares"]["kind"].shape == (1, 9)  # top_k None: one class per code, as before


def random_batches(spec: FeatureSpec, sizes=(5, 9, 3), seed: int = 0) -> list[EventBatch]:
    """Batches of customers with differing history spans (so each batch has its own share of
    customers a cut can be drawn for) over every categorical field of `spec`."""
    rng = np.random.default_rng(seed)
    batches = []
    for size in sizes:
        histories = []
        for _ in range(size):
            n = int(rng.integers(2, 25))
            span = float(rng.choice([20.0, 200.0]))
            ages = np.sort(rng.uniform(0, span, n))[::-1]
            histories.append([(float(a), int(rng.integers(4, 4 + 3)), float(rng.lognormal(2, 1))) for a in ages])
        b = batch_of(histories)
        cards = list(spec.categorical.values())
        cat = torch.stack([torch.from_numpy(rng.integers(4, c, b.categorical.shape[:2])) for c in cards], -1)
        batches.append(EventBatch(cat.masked_fill(~b.mask.unsqueeze(-1), 0), b.numeric, b.lengths, b.customer_index))
    return batches


TWO_FIELDS = FeatureSpec(categorical={"kind": 4 + 5, "item": 4 + 5000}, numeric=SPEC.numeric, scalers=SPEC.scalers)


def test_normalised_terms_score_one_for_the_constant_guess():
    """Divided by the constant guess's loss, the constant scores exactly 1.0 on every term — a
    5,000-value field like a 5-value one — and the total (their mean) is 1.0 too."""
    head = FutureSummaryHead(TWO_FIELDS, 8, 16, {"top_k": None})
    batches = random_batches(TWO_FIELDS)
    raw = constant_term_losses(head, batches)
    assert raw["future_item_mix"] > 2 * raw["future_kind_mix"]  # absolute: the big field dominates
    head.set_term_scale(raw)
    base = constant_baseline(head, batches)
    for name in head.term_names:
        assert base[f"loss_{name}"] == pytest.approx(1.0, rel=1e-5), name
        assert base[f"loss_{name}_abs"] == pytest.approx(raw[name], rel=1e-6), name
    assert base["loss_future"] == pytest.approx(1.0, rel=1e-5)
    assert base["loss_future_abs"] == pytest.approx(sum(raw.values()), rel=1e-5)
    unscaled = FutureSummaryHead(TWO_FIELDS, 8, 16, {"top_k": None, "normalise": False})
    assert constant_baseline(unscaled, batches)["loss_future"] == pytest.approx(sum(raw.values()), rel=1e-5)


def test_validation_scores_a_constant_model_exactly_as_the_constant_guess():
    """The model's validation terms are averaged over the same customers as the constant's (not
    per batch), so a model that predicts the constant matches the guess term for term: the
    comparison that early stopping and beats_constant_guess rest on is like for like."""
    model = SequenceEncoderModule(TWO_FIELDS.to_dict(), d_model=16, embedding_dim=8, objectives={"future": 1.0},
                                future={"horizon_days": 30, "top_k": 3})
    head = model.future_head
    batches = random_batches(TWO_FIELDS, sizes=(7, 4, 11, 2))
    guess = constant_guess(head, batches)
    head.set_term_scale(constant_term_losses(head, batches, guess=guess))
    with torch.no_grad():  # a head that ignores z and outputs the guess
        head.scalars.weight.zero_()
        head.scalars.bias.copy_(torch.cat([guess["count"].view(1), guess["active_days"].view(1), guess["next_days"].view(1), guess["sums"]]))
        for name, layer in head.values.items():
            layer.weight.zero_()
            layer.bias.copy_(torch.log(guess["mix", name] + 1e-8))
    base = constant_baseline(head, batches, guess=guess)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    got = trainer.validate(model, torch.utils.data.DataLoader(batches, batch_size=None), verbose=False)[0]
    for key, value in base.items():
        assert got[f"val/{key}"] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    assert got["val/loss"] == pytest.approx(base["loss_future"], rel=1e-4)


def test_training_draws_n_cuts_per_customer():
    model = SequenceEncoderModule(SPEC.to_dict(), d_model=16, embedding_dim=8, objectives={"future": 1.0},
                                future={"horizon_days": 30, "n_cuts": 3})
    seen = []
    encode = model._encode
    model._encode = lambda batch, corrupt: seen.append(len(batch)) or encode(batch, corrupt)
    batch = random_batches(SPEC, sizes=(6,))[0]
    model.train()
    model.future_loss(batch)
    model.eval()
    model.future_loss(batch, torch.Generator().manual_seed(0))
    assert seen == [18, 6]  # three cuts per customer in training, one (the constant's) in evaluation


def test_a_checkpoint_from_before_top_k_and_scales_still_loads():
    """A model trained before value mixes had top_k and terms had scales: its head is rebuilt
    as it was (every code a class, absolute terms) so its weights load and it predicts the same."""
    legacy = SequenceEncoderModule(TWO_FIELDS.to_dict(), d_model=16, embedding_dim=8, objectives={"future": 1.0},
                                 future={"horizon_days": 30, "top_k": None, "normalise": False})
    state = legacy.state_dict()
    assert not any(k.startswith("future_head.mix_lookup") or k == "future_head.term_scale" for k in state)
    current = SequenceEncoderModule(TWO_FIELDS.to_dict(), d_model=16, embedding_dim=8, objectives={"future": 1.0},
                                  future={"horizon_days": 30})  # today's defaults: top_k 50, normalised
    current.on_load_checkpoint({"state_dict": state})
    current.load_state_dict(state)
    assert current.future_head.classes["item"] == 4 + 5000 and not current.future_head.options["normalise"]
    z = torch.randn(3, 8)
    torch.testing.assert_close(current.future_head(z)["logits"]["item"], legacy.future_head(z)["logits"]["item"])
