"""The contrastive objective: sub-sequence views, InfoNCE, objective weights, config wiring."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from eventseg.training.module import SequenceEncoderModule
from eventseg.objectives.contrastive import info_nce, subsequence_views
from eventseg.training.train import train
from test_models import SMALL, SPEC, collate, make_batch, make_sequences
from test_train import compose_train, tiny_overrides


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest


def make_model(**kwargs) -> SequenceEncoderModule:
    torch.manual_seed(0)
    return SequenceEncoderModule(SPEC, **{**SMALL, **kwargs})


def fit(model, seqs, steps: int, batch_size: int = 8, seed: int = 0) -> list[float]:
    """Train for `steps` steps; returns the training loss of every step."""
    losses: list[float] = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    L.seed_everything(seed, verbose=False)
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, max_steps=steps, callbacks=[Record()], limit_val_batches=0,
    )
    loader = DataLoader(seqs, batch_size=batch_size, collate_fn=collate, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    trainer.fit(model, train_dataloaders=loader)
    return losses


def test_views_are_contiguous_slices_of_their_own_customer():
    seqs = make_sequences(16, 30, seed=3)
    batch = collate(seqs, pad_to=34, pad_value=float("nan"))
    views, source = subsequence_views(batch, 2, 0.3, 0.9, generator=torch.Generator().manual_seed(0))
    assert len(views) == 32 and views.categorical.shape[1] == 34
    assert torch.equal(source, torch.arange(16).repeat(2))
    assert torch.equal(views.customer_index, batch.customer_index.repeat(2))
    for row in range(32):
        cat, num, _ = seqs[int(source[row])]
        n, k = len(cat), int(views.lengths[row])
        assert 1 <= k <= n and k >= min(n, max(1, round(0.3 * n) - 1)) and k <= max(1, round(0.9 * n) + 1)
        view_cat, view_num = views.categorical[row, :k], views.numeric[row, :k]
        assert (view_cat >= 4).all() and torch.isfinite(view_num).all()  # never padding
        starts = [s for s in range(n - k + 1) if torch.equal(cat[s : s + k], view_cat)]
        assert any(torch.equal(num[s : s + k], view_num) for s in starts), f"view {row} is no slice of its customer"
        # Past the view's length: still real events of the same customer (masked by the length).
        assert torch.isfinite(views.numeric[row]).all() and (views.categorical[row] >= 4).all()


def test_views_vary_and_stay_in_range():
    batch = make_batch(64, 40, seed=4)
    a, _ = subsequence_views(batch, 2, 0.5, 0.5)
    assert torch.equal(a.lengths, torch.round(0.5 * batch.lengths.repeat(2)).long().clamp_min(1))
    b, _ = subsequence_views(batch, 2, 0.3, 0.9)
    assert not torch.equal(b.lengths[:64], b.lengths[64:])  # two independent views
    one, _ = subsequence_views(make_batch(4, 1, seed=5), 2, 0.3, 0.9)
    assert (one.lengths == 1).all()


def test_info_nce_at_chance_and_when_aligned():
    z = torch.randn(2, 3, 8)
    assert abs(float(info_nce(torch.zeros(6, 8) + 1, 2, 0.1)) - math.log(5)) < 1e-5  # all equal: chance
    aligned = torch.cat([z[0], z[0]])
    assert float(info_nce(torch.eye(8)[:3].repeat(2, 1), 2, 0.1)) < 1e-3
    assert float(info_nce(aligned, 2, 0.1)) < float(info_nce(torch.cat([z[0], z[1]]), 2, 0.1))


def test_contrastive_only_has_no_decoder_and_logs_its_loss():
    model = make_model(objectives={"reconstruction": 0.0, "contrastive": 1.0})
    assert model.decoder is None and model.heads is None
    assert not any(name.startswith(("decoder", "heads")) for name, _ in model.named_parameters())
    batch = make_batch(8, 20)
    assert set(model(batch)) == {"z"}
    total, losses, accs = model.objective_losses(batch)
    assert set(losses) == {"contrastive"} and accs == {} and torch.equal(total, losses["contrastive"])
    hybrid = make_model(objectives={"reconstruction": 1.0, "contrastive": 0.5})
    total, losses, _ = hybrid.objective_losses(batch, generator=torch.Generator().manual_seed(0))
    assert {"reconstruction", "contrastive", "event_type"} <= set(losses)
    torch.testing.assert_close(total, losses["reconstruction"] + 0.5 * losses["contrastive"])


def test_bad_objectives_are_refused():
    with pytest.raises(ValueError, match="unknown objectives"):
        make_model(objectives={"reconstrution": 1.0})
    with pytest.raises(ValueError, match="at least one"):
        make_model(objectives={"reconstruction": 0.0})
    with pytest.raises(ValueError, match="unknown contrastive options"):
        make_model(objectives={"contrastive": 1.0}, contrastive={"temp": 0.1})
    with pytest.raises(ValueError, match="n_views must be >= 2"):
        make_model(objectives={"contrastive": 1.0}, contrastive={"n_views": 1})


def test_several_views_per_customer():
    """With n_views=4 every view is encoded, each carries its customer's index, and views of
    one customer that agree give a lower loss than unrelated ones."""
    model = make_model(objectives={"contrastive": 1.0}, contrastive={"n_views": 4})
    seen = []
    encode = model._encode
    model._encode = lambda views, corrupt: seen.append(views) or encode(views, corrupt)
    batch = make_batch(8, 20)
    loss = model.contrastive_loss(batch, torch.Generator().manual_seed(0))
    assert len(seen) == 1 and len(seen[0]) == 4 * 8 and torch.isfinite(loss)
    assert torch.equal(seen[0].customer_index, batch.customer_index.repeat(4))
    z = torch.nn.functional.one_hot(torch.arange(8), 16).float().repeat(4, 1)  # views of a customer agree
    assert float(info_nce(z, 4, 0.1)) < float(info_nce(torch.randn(32, 16), 4, 0.1))


def test_default_objective_trains_exactly_as_before():
    seqs = make_sequences(32, 20, seed=6)
    before = fit(make_model(), seqs, steps=6)
    explicit = fit(make_model(objectives={"reconstruction": 1}), seqs, steps=6)
    assert before == explicit  # bit for bit: no extra randomness, no extra terms


def test_contrastive_loss_falls_on_a_tiny_set():
    # Customers that differ in their event mix, so sub-sequences identify the customer.
    seqs = make_sequences(32, 30, seed=7)
    g = torch.Generator().manual_seed(7)
    seqs = [(torch.randint(4, 4 + 2 + i % 6, cat.shape, generator=g), num + i % 5, i) for i, (cat, num, _) in enumerate(seqs)]
    seqs = [(c, x, i) for c, x, i in seqs if len(c) >= 5]
    model = make_model(objectives={"contrastive": 1.0}, lr=3e-3, warmup_steps=0)
    losses = fit(model, seqs, steps=150, batch_size=16)
    start, end = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert end < 0.7 * start, (start, end)


@pytest.mark.parametrize("objective,weights", [
    ("reconstruction", {"reconstruction": 1.0}),
    ("contrastive", {"reconstruction": 0.0, "contrastive": 1.0}),
    ("reconstruction_contrastive", {"reconstruction": 1.0, "contrastive": 1.0}),
    ("future", {"reconstruction": 0.0, "future": 1.0}),
    ("contrastive_future", {"reconstruction": 0.0, "contrastive": 1.0, "future": 1.0}),
])
def test_objective_configs_compose(objective, weights):
    cfg = compose_train([f"objective={objective}"])
    assert dict(cfg.objective.weights) == weights
    assert cfg.objective.contrastive.temperature == 0.1 and cfg.objective.future.horizon_days == 30
    assert cfg.model.name == "gru_ae"
    assert compose_train([]).objective.name == "future"  # the default, chosen by scripts/evaluate.py evidence


def test_fast_dev_run_contrastive(tmp_path, tiny_events):
    cfg = compose_train(tiny_overrides(tmp_path, tiny_events) + ["objective=contrastive", "debug=fast_dev_run"])
    result = train(cfg)
    assert result.model.decoder is None and result.model.events_seen > 0
    assert result.model.hparams.objectives == {"reconstruction": 0.0, "contrastive": 1.0}
    assert "val/loss_contrastive" in result.metrics and math.isfinite(result.metrics["val/loss"])


def test_fast_dev_run_reconstruction_contrastive(tmp_path, tiny_events):
    cfg = compose_train(tiny_overrides(tmp_path, tiny_events) + ["objective=reconstruction_contrastive", "debug=fast_dev_run"])
    result = train(cfg)
    m = result.metrics
    assert {"val/loss_contrastive", "val/loss_reconstruction", "val/acc_channel"} <= set(m)
    assert abs(m["val/loss"] - m["val/loss_reconstruction"] - m["val/loss_contrastive"]) < 1e-4
