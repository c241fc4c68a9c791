"""Tests for the sequence autoencoder and its parts, on small random data."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from eventseg.data.batch import UNSEEN, EventBatch
from eventseg.training.module import SequenceEncoderModule, TrainingDivergedError
from eventseg.training.module import drop_events
from eventseg.nn.event_encoder import embedding_dim_for

SPEC = {"categorical": {"event_type": 12, "category": 40}, "numeric": [f"x{i}" for i in range(5)]}
SMALL = dict(d_model=32, embedding_dim=16, n_heads=4)
ARCHS = [("gru", "gru"), ("transformer", "transformer")]
ALL_ARCHS = ARCHS + [("gru", "transformer"), ("transformer", "gru")]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: see conftest


def make_sequences(n: int, max_len: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    """n customers as (categorical [l, 2], numeric [l, 5], customer_index), lengths 1..max_len."""
    g = torch.Generator().manual_seed(seed)
    seqs = []
    for i in range(n):
        length = int(torch.randint(1, max_len + 1, (), generator=g)) if i else max_len
        cat = torch.stack(
            [torch.randint(4, card, (length,), generator=g) for card in SPEC["categorical"].values()], dim=-1
        )
        seqs.append((cat, torch.randn(length, len(SPEC["numeric"]), generator=g), i))
    return seqs


def collate(seqs, pad_to: int | None = None, pad_value: float = 0.0) -> EventBatch:
    """Right-pad to the longest sequence (or pad_to); padded numerics get pad_value."""
    lengths = torch.tensor([len(c) for c, _, _ in seqs])
    length = pad_to or int(lengths.max())
    cat = torch.zeros(len(seqs), length, seqs[0][0].shape[1], dtype=torch.long)
    num = torch.full((len(seqs), length, seqs[0][1].shape[1]), pad_value)
    for i, (c, x, _) in enumerate(seqs):
        cat[i, : len(c)] = c
        num[i, : len(x)] = x
    return EventBatch(cat, num, lengths, torch.tensor([idx for _, _, idx in seqs]))


def make_batch(n: int = 16, max_len: int = 30, seed: int = 0) -> EventBatch:
    return collate(make_sequences(n, max_len, seed))


def make_model(encoder: str = "gru", decoder: str = "gru", **kwargs) -> SequenceEncoderModule:
    torch.manual_seed(0)
    return SequenceEncoderModule(SPEC, encoder=encoder, decoder=decoder, **{**SMALL, **kwargs})


def trainer(**kwargs) -> L.Trainer:
    defaults = dict(
        accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )
    return L.Trainer(**{**defaults, **kwargs})


def loader(seqs, batch_size: int = 8) -> DataLoader:
    return DataLoader(seqs, batch_size=batch_size, collate_fn=collate)


@pytest.mark.parametrize("encoder,decoder", ALL_ARCHS)
def test_forward_shapes(encoder, decoder):
    model = make_model(encoder, decoder, num_layers=2)
    batch = make_batch(8, 30)
    out = model(batch)
    assert out["z"].shape == (8, 16)
    assert out["logits"]["event_type"].shape == (8, 30, 12)
    assert out["logits"]["category"].shape == (8, 30, 40)
    assert out["numeric"].shape == (8, 30, 5)
    assert model.encode(batch).shape == (8, 16)


def test_embedding_width_rule():
    assert embedding_dim_for(12) == round(1.6 * 12**0.56)
    assert embedding_dim_for(5000) == 64


@pytest.mark.parametrize(
    "encoder,options",
    [
        ("gru", {}),
        ("gru", {"pool": "last_mean"}),
        ("transformer", {}),
        ("transformer", {"pool": "cls", "positions": "learned"}),
    ],
)
def test_embedding_is_padding_invariant(encoder, options):
    model = make_model(encoder, encoder, num_layers=2, encoder_options=options).eval()
    seqs = make_sequences(12, 20, seed=1)
    target = seqs[5]
    with torch.no_grad():
        alone = model.encode(collate([target]))
        in_batch = model.encode(collate(seqs, pad_to=27, pad_value=float("nan")))
    assert len(target[0]) < 20  # the lone sequence really is padded inside the batch
    torch.testing.assert_close(in_batch[5], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("encoder,decoder", ARCHS)
def test_loss_ignores_padding(encoder, decoder):
    model = make_model(encoder, decoder).eval()
    seqs = make_sequences(8, 20, seed=2)
    clean = collate(seqs, pad_to=25)
    noisy = collate(seqs, pad_to=25, pad_value=float("nan"))
    noisy.categorical[~noisy.mask] = 7  # garbage codes where there are no events
    loss_clean, _, _ = model.loss_fn(model(clean), clean)
    loss_noisy, _, _ = model.loss_fn(model(noisy), noisy)
    torch.testing.assert_close(loss_noisy, loss_clean, atol=1e-5, rtol=1e-5)
    loss_noisy.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_loss_weights_scale_terms():
    batch = make_batch(8, 10)
    base = make_model().eval()
    weighted = make_model(loss_weights={"category": 0.0, "x0": 2.0}).eval()
    total, parts, _ = base.loss_fn(base(batch), batch)
    total_w, _, _ = weighted.loss_fn(weighted(batch), batch)
    torch.testing.assert_close(total_w, total - parts["category"] + parts["x0"])


@pytest.mark.parametrize("encoder,decoder", ARCHS)
def test_overfits_a_small_set(encoder, decoder):
    model = make_model(encoder, decoder, dropout=0.0)
    batch = make_batch(16, 20, seed=3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(120):
        loss, _, _ = model.loss_fn(model(batch), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert min(losses[-10:]) < 0.3 * losses[0], (losses[0], losses[-10:])


def test_gru_decoder_never_sees_the_event_it_predicts():
    model = make_model().eval()
    z, events, lengths = torch.randn(4, 16), torch.randn(4, 10, 32), torch.full((4,), 10)
    changed = events.clone()
    changed[:, 6:] = torch.randn(4, 4, 32)
    with torch.no_grad():
        before, after = model.decoder(z, events, lengths), model.decoder(z, changed, lengths)
    torch.testing.assert_close(after[:, :7], before[:, :7])  # step t sees events < t only
    assert not torch.allclose(after[:, 7:], before[:, 7:])


@pytest.mark.parametrize("encoder,decoder", ARCHS)
def test_fast_dev_run_fits(encoder, decoder):
    model = make_model(encoder, decoder, corruption={"mask_prob": 0.15, "drop_prob": 0.1})
    train, val = make_sequences(32, 30, seed=4), make_sequences(16, 30, seed=5)
    trainer(fast_dev_run=True).fit(model, loader(train), loader(val))
    assert model.events_seen == sum(len(c) for c, _, _ in train[:8])


def test_logs_per_field_metrics():
    model = make_model()
    fit = trainer(max_steps=2, limit_val_batches=1, num_sanity_val_steps=0, log_every_n_steps=1)
    fit.fit(model, loader(make_sequences(16, 10)), loader(make_sequences(8, 10, seed=1)))
    logged = set(fit.logged_metrics)
    assert {"train/loss", "train/loss_event_type", "train/loss_x4", "val/loss"} <= logged
    assert {"val/loss_category", "val/acc_event_type", "val/acc_category"} <= logged


def test_nan_loss_raises_a_clear_error():
    seqs = make_sequences(8, 10, seed=6)
    seqs[3][1][0, 2] = float("nan")
    with pytest.raises(TrainingDivergedError, match=r"epoch 0, batch 0.*x2") as info:
        trainer(fast_dev_run=True).fit(make_model(), loader(seqs))
    assert isinstance(info.value, FloatingPointError)
    assert "data preparation" in str(info.value)


def test_corruption_only_in_training():
    model = make_model(corruption={"mask_prob": 0.5, "drop_prob": 0.3}, dropout=0.0)
    batch = make_batch(8, 20)
    model.train()
    assert not torch.equal(model(batch)["z"], model(batch)["z"])
    model.eval()
    torch.testing.assert_close(model.encode(batch), model.encode(batch), atol=0, rtol=0)
    torch.testing.assert_close(model(batch)["z"], model.encode(batch), atol=0, rtol=0)


def test_drop_events_keeps_order_and_one_event():
    events = torch.arange(2 * 6, dtype=torch.float).view(2, 6, 1)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    kept, lengths = drop_events(events, mask, drop_prob=1.0)
    assert lengths.tolist() == [1, 1]
    assert kept[:, 0, 0].tolist() == [3.0, 11.0]  # each sequence's most recent event
    torch.manual_seed(0)
    kept, lengths = drop_events(events, mask, drop_prob=0.5)
    for row in range(2):
        values = kept[row, : lengths[row], 0]
        assert torch.all(values[1:] > values[:-1])  # chronological order survives
        assert set(values.tolist()) <= set(events[row][mask[row]].squeeze(-1).tolist())


def test_masked_codes_become_unseen():
    model = make_model(corruption={"mask_prob": 1.0}).train()
    seen = {}
    model.event_encoder.register_forward_hook(lambda m, args, out: seen.update(cat=args[0], num=args[1]))
    batch = make_batch(4, 10)
    model(batch)
    assert torch.all(seen["cat"][batch.mask] == UNSEEN) and torch.all(seen["cat"][~batch.mask] == 0)
    assert torch.all(seen["num"] == 0)


def test_checkpoint_round_trip(tmp_path):
    from omegaconf import OmegaConf

    data_state = {"schema": {"id_col": "customer_id"}, "vocab": {"event_type": ["view", "buy"]}, "version": 1}
    model = SequenceEncoderModule(
        OmegaConf.create(SPEC), encoder="transformer", decoder="gru",
        encoder_options=OmegaConf.create({"pool": "cls"}), data_state=data_state, **SMALL,
    )
    fit = trainer(max_steps=2, logger=CSVLogger(tmp_path, name="logs", version=0))
    fit.fit(model, loader(make_sequences(16, 12)))
    logged_hparams = (tmp_path / "logs" / "version_0" / "hparams.yaml").read_text()
    assert "encoder: transformer" in logged_hparams and "data_state" not in logged_hparams
    path = tmp_path / "model.ckpt"
    fit.save_checkpoint(path)
    loaded = SequenceEncoderModule.load_from_checkpoint(path)
    assert loaded.hparams.data_state == data_state
    assert loaded.hparams.encoder_options == {"pool": "cls"}
    batch = make_batch(8, 12, seed=7)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval().encode(batch), model.eval().encode(batch))


def test_predict_returns_ids_and_float_embeddings():
    seqs = make_sequences(12, 10)
    out = trainer().predict(make_model(), loader(seqs, batch_size=5))
    ids = torch.cat([o["customer_index"] for o in out])
    emb = torch.cat([o["embedding"] for o in out])
    assert ids.tolist() == list(range(12))
    assert emb.shape == (12, 16) and emb.dtype == torch.float32


def test_lr_warms_up_then_decays():
    model = make_model(warmup_steps=0.25)
    lrs = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer(max_steps=8, callbacks=[Record()]).fit(model, loader(make_sequences(64, 5)))
    assert lrs[0] < lrs[1] == pytest.approx(2e-3)  # warm-up is 2 of the 8 steps
    assert all(a > b for a, b in zip(lrs[2:], lrs[3:])) and lrs[-1] < 0.1 * lrs[1]
    groups = model.trainer.optimizers[0].param_groups
    no_decay = {id(p) for p in groups[1]["params"]}
    assert id(model.event_encoder.embeddings[0].weight) in no_decay
    assert id(model.bottleneck.bias) in no_decay and id(model.bottleneck.weight) not in no_decay


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"encoder": "lstm"}, "unknown encoder"),
        ({"decoder": "mlp"}, "unknown decoder"),
        ({"loss_weights": {"amount": 2.0}}, "unknown fields"),
        ({"corruption": {"mask_rate": 0.1}}, "unknown corruption"),
    ],
)
def test_bad_config_is_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_model(**kwargs)


@pytest.mark.parametrize("encoder,decoder", ARCHS)
def test_bf16_mixed_on_cpu(encoder, decoder):
    model = make_model(encoder, decoder)
    seqs = make_sequences(16, 20)
    trainer(precision="bf16-mixed", fast_dev_run=True).fit(model, loader(seqs), loader(seqs))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = model.eval().encode(make_batch(4, 10))
    assert z.dtype == torch.float32  # the embedding is never computed in bf16


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("encoder,decoder", ARCHS)
def test_bf16_mixed_on_gpu(encoder, decoder):
    model = make_model(encoder, decoder)
    seqs = make_sequences(32, 30)
    trainer(accelerator="gpu", devices=1, precision="bf16-mixed", fast_dev_run=True).fit(
        model, loader(seqs), loader(seqs)
    )
    out = L.Trainer(accelerator="gpu", devices=1, precision="bf16-mixed", logger=False).predict(
        model, loader(seqs)
    )
    emb = torch.cat([o["embedding"] for o in out])
    assert emb.dtype == torch.float32 and math.isfinite(emb.sum().item())
