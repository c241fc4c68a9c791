"""Training: config composition, smoke runs per model, resume, self-contained checkpoints."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from eventseg.run.config import CONFIG_DIR
from hydra import compose, initialize_config_dir

from eventseg.training.checkpoint import CheckpointError, load_checkpoint
from eventseg.data.validate import EventDataError
from eventseg.training.train import train

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = CONFIG_DIR


def tiny_overrides(tmp_path: Path, events: Path) -> list[str]:
    """A small model on the tiny data, all outputs under tmp_path."""
    return [
        "data=events", f"data.path={events}", "data.categorical=[event_type,category,channel]", "data.numeric=[amount]",
        "data.max_len=40", f"paths.root_dir={tmp_path}", f"out_dir={tmp_path}/run",
        "model.d_model=32", "model.embedding_dim=8", "loader.batch_size=32", "loader.eval_batch_size=64",
        "trainer.enable_progress_bar=false", "trainer.accelerator=cpu", "logger=csv",
    ]


def compose_train(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["data=completejourney"],
        ["data=events", "data.path=x.parquet"],
        ["model=transformer_ae"],
        ["trainer=cpu"], ["trainer=gpu"], ["trainer=ddp"],
        ["logger=tensorboard"],
        ["debug=fast_dev_run"], ["debug=overfit"], ["debug=limit"],
        ["experiment=completejourney_transformer"],
        ["objective=reconstruction_future"],
    ],
)
def test_every_config_group_composes(overrides):
    cfg = compose_train(overrides)
    epochs = cfg.trainer.max_epochs  # null: the training budget chooses
    assert (epochs is None or epochs >= 1) and cfg.trainer_budget.min_steps >= 1 and cfg.model.embedding_dim == 64
    assert cfg.data.categorical and cfg.run_name


def test_groups_change_what_they_say():
    assert compose_train(["model=transformer_ae"]).model.encoder == "transformer"
    assert dict(compose_train(["objective=reconstruction_future"]).objective.weights) == {"reconstruction": 1.0, "future": 1.0}
    gpu = compose_train(["trainer=gpu"])
    assert gpu.trainer.precision == "bf16-mixed" and gpu.loader.pin_memory
    assert compose_train(["trainer=ddp"]).trainer.strategy == "ddp"
    exp = compose_train(["experiment=completejourney_transformer"])
    assert exp.data.name == "completejourney" and exp.model.name == "transformer_ae"
    assert compose_train(["debug=fast_dev_run"]).logger is None


@pytest.mark.parametrize("model", ["gru_ae", "transformer_ae"])
def test_fast_dev_run_for_each_model(tmp_path, tiny_events, model):
    cfg = compose_train(tiny_overrides(tmp_path, tiny_events) + [f"model={model}", "debug=fast_dev_run"])
    result = train(cfg)
    assert result.model.events_seen > 0
    assert "val/loss" in result.metrics


def test_training_learns_beyond_the_trivial_baseline(tmp_path, tiny_events):
    cfg = compose_train(tiny_overrides(tmp_path, tiny_events) + ["objective=reconstruction", "trainer.max_epochs=6", "callbacks.early_stopping=null"])
    result = train(cfg)
    m = result.metrics
    base = m["trivial_baseline"]
    assert m["val/acc_channel"] > base["acc_channel"] + 0.1  # customers keep to their channel: z knows it
    assert m["val/loss_time_hour_cos"] < 0.9 * base["loss_time_hour_cos"]  # and their time of day
    assert (tmp_path / "run" / "train_metrics.json").exists()
    assert result.checkpoint is not None and result.checkpoint.is_relative_to(tmp_path)


class Interrupt(Exception):
    pass


class InterruptAt(L.Callback):
    def __init__(self, step):
        self.step = step

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step:
            raise Interrupt


# explicit: the epochs and batch size set by hand; budget: both chosen by the training budget
# (2 epochs of 8 batches of 32 for the 240 training customers), early stopping on
RESUME_SCHEDULES = {
    "explicit": ["trainer.max_epochs=2", "callbacks.early_stopping=null"],
    "budget": ["trainer_budget.epochs=1", "trainer_budget.min_steps=16", "loader.batch_size=null"],
}


@pytest.mark.parametrize("schedule", sorted(RESUME_SCHEDULES))
def test_resume_mid_epoch_matches_an_uninterrupted_run(tmp_path, tiny_events, monkeypatch, schedule):
    common = [*RESUME_SCHEDULES[schedule], "model.dropout=0.2",
              "model.corruption.mask_prob=0.2", "+callbacks.model_checkpoint.every_n_train_steps=3"]
    full = train(compose_train(tiny_overrides(tmp_path / "a", tiny_events) + common))
    steps = full.datamodule.trainer.global_step
    per_epoch = steps // 2
    assert per_epoch > 4, "need several batches per epoch to stop mid-epoch"
    assert full.metrics["budget"]["epochs"] == 2 and full.metrics["budget"]["planned_steps"] == steps

    # checkpoints wait for a val/loss, so interrupt in the second epoch, one step after a
    # step checkpoint (a multiple of 3); the interrupt itself lands before that step's save
    saved_at = per_epoch + 3 - per_epoch % 3
    stop_at = saved_at + 1
    assert stop_at < 2 * per_epoch
    b = tiny_overrides(tmp_path / "b", tiny_events) + common
    import eventseg.training.train as train_module

    real_trainer = train_module.L.Trainer
    monkeypatch.setattr(train_module.L, "Trainer", lambda **kw: real_trainer(**{**kw, "callbacks": kw["callbacks"] + [InterruptAt(stop_at)]}))
    with pytest.raises(Interrupt):
        train(compose_train(b))
    monkeypatch.undo()
    last = tmp_path / "b" / "run" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == saved_at
    resumed = train(compose_train(b + [f"ckpt_path={last}"]))
    assert not last.exists() and resumed.checkpoint.parent.parent == (tmp_path / "b" / "checkpoints").resolve()
    assert resumed.datamodule.trainer.global_step == steps
    for (name, p), q in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6, msg=name)
    assert resumed.metrics["best_val_loss"] == pytest.approx(full.metrics["best_val_loss"], abs=1e-6)
    assert resumed.metrics["best_epoch"] == pytest.approx(full.metrics["best_epoch"], abs=1e-6)


def test_train_metrics_say_loudly_when_the_model_does_not_beat_its_constant_guess(tmp_path, tiny_events, capsys):
    """A model that cannot learn (lr 0) predicts worse than the constant: train_metrics.json says
    so per term and overall, the console summary prints the table, and a warning names the fix."""
    cfg = compose_train(tiny_overrides(tmp_path, tiny_events) + ["trainer.max_epochs=1", "model.lr=0.0"])
    with pytest.warns(UserWarning, match=r"does not beat its constant guess on validation: val/loss_future [\d.]+ vs [\d.]+.*trainer_budget\.min_steps"):
        train(cfg)
    saved = json.loads((tmp_path / "run" / "train_metrics.json").read_text())
    comparison = saved["future_vs_constant"]
    assert saved["beats_constant_guess"] is False and comparison["beats_constant_guess"] is False
    terms = {"future_count", "future_active_days", "future_next_days", "future_amount_sum",
             "future_event_type_mix", "future_category_mix", "future_channel_mix"}
    assert set(comparison["terms"]) == terms
    for row in comparison["terms"].values():
        assert {"val_loss", "constant", "beats_constant", "val_loss_abs", "constant_abs"} <= set(row)
        assert row["beats_constant"] == (row["val_loss"] < row["constant"])
    assert comparison["val_loss"] == pytest.approx(saved["best_epoch"]["val/loss_future"])
    assert comparison["constant"] == pytest.approx(saved["trivial_baseline"]["loss_future"])
    assert saved["budget"]["batch_size"] == 32 and saved["budget"]["batch_size_from"] == "loader.batch_size"
    out = capsys.readouterr().out
    assert "future objective vs its constant guess" in out and "beats_constant_guess: NO" in out
    assert "[train] budget: batch 32" in out


def test_checkpoint_is_self_contained_in_a_fresh_process(tmp_path, tiny_events):
    result = train(compose_train(tiny_overrides(tmp_path, tiny_events) + ["trainer.max_epochs=1"]))
    batch = result.prepared.store.batch([0, 1, 2])
    result.model.eval()
    with torch.no_grad():
        expected = result.model.encode(batch)
    torch.save({"batch": batch, "z": expected}, tmp_path / "probe.pt")
    # a fresh interpreter, no config, no prepared data, no run folder: only the checkpoint
    alone = tmp_path / "model.ckpt"
    shutil.copy(result.checkpoint, alone)
    shutil.rmtree(tmp_path / "run")
    code = f"""
import torch
from eventseg.training.checkpoint import load_checkpoint
probe = torch.load({str(tmp_path / 'probe.pt')!r}, weights_only=False)
trained = load_checkpoint({str(alone)!r})
assert trained.encoders.schema.categorical == ('event_type', 'category', 'channel')
assert trained.max_len == 40
with torch.no_grad():
    z = trained.model.encode(probe["batch"])
torch.testing.assert_close(z, probe["z"], rtol=0, atol=1e-6)
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_bad_checkpoints_get_clear_errors(tmp_path, tiny_events):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(junk)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    with pytest.raises(CheckpointError, match="not an eventseg checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.ckpt")
    cfg = compose_train(tiny_overrides(tmp_path, tiny_events) + [f"ckpt_path={foreign}"])
    with pytest.raises(CheckpointError):
        train(cfg)


def test_config_naming_a_missing_field_is_a_clear_error(tmp_path, tiny_events):
    cfg = compose_train(tiny_overrides(tmp_path, tiny_events) + ["data.categorical=[event_type,colour]", "debug=fast_dev_run"])
    with pytest.raises(EventDataError, match="column 'colour'.*missing"):
        train(cfg)


def test_train_script_runs_from_the_command_line(tmp_path, tiny_events):
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), *tiny_overrides(tmp_path, tiny_events), "debug=fast_dev_run"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "training summary" in out.stdout
    assert not (tmp_path / "outputs").exists()  # hydra writes no run folders


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path, tiny_events):
    """trainer=ddp on CPU (gloo): two ranks each take half the batches."""
    import json

    import numpy as np

    from eventseg.data.datamodule import BucketBatchSampler
    from eventseg.data.split import TRAIN
    from eventseg.data.store import SequenceStore

    overrides = [*tiny_overrides(tmp_path, tiny_events), "trainer=ddp", "trainer.accelerator=cpu", "trainer.max_epochs=1"]
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), *overrides],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "training summary" in out.stdout
    assert list((tmp_path / "checkpoints").glob("*/best.ckpt")), "no model stored"

    # the ranks split the epoch: rank 0 (which writes the metrics) took every other batch of
    # the one shared batch order, so it ran half the steps and saw exactly those batches' events
    cfg = compose_train(overrides)
    run = Path(cfg.out_dir)
    store = SequenceStore.load(run / "prepared" / "store")
    train_idx = np.flatnonzero(np.load(run / "prepared" / "splits.npy") == TRAIN)
    ranks = [BucketBatchSampler(train_idx, store.lengths, cfg.loader.batch_size, shuffle=True, seed=cfg.seed,
                                pool_batches=cfg.loader.pool_batches, rank=r, world_size=2) for r in (0, 1)]
    whole = BucketBatchSampler(train_idx, store.lengths, cfg.loader.batch_size, shuffle=True, seed=cfg.seed,
                               pool_batches=cfg.loader.pool_batches)
    rank0 = [b for b in ranks[0]]
    assert len(rank0) == len(ranks[1]) == -(-len(whole) // 2) and len(whole) >= 4
    metrics = json.loads((run / "train_metrics.json").read_text())
    assert metrics["global_steps"] == len(rank0)  # not len(whole): each rank took only its share
    assert metrics["events_trained"] == int(sum(store.lengths[i] for b in rank0 for i in b))
    assert metrics["events_trained"] < 0.75 * int(store.lengths[train_idx].sum())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_bf16_training(tmp_path, tiny_events):
    cfg = compose_train(tiny_overrides(tmp_path, tiny_events) + ["trainer=gpu", "trainer.max_epochs=1", "loader.num_workers=2"])
    result = train(cfg)
    assert result.metrics["val/loss"] < float("inf")
