"""The training budget scales with the data (small sets: smaller batches, more passes), the
user's explicit settings win, the schedule follows the real number of steps, and early stopping
never stops while the model is no better than its constant guess."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from eventseg.training.callbacks import BaselineEarlyStopping
from eventseg.run.errors import ConfigError
from eventseg.training.train import train, training_budget, world_size
from test_train import compose_train, tiny_overrides

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_small_data_set_gets_smaller_batches_and_more_epochs_than_a_big_one():
    cfg = compose_train([])  # the defaults: loader.batch_size and trainer.max_epochs left to the budget
    assert cfg.loader.batch_size is None and cfg.trainer.max_epochs is None
    small, big = training_budget(cfg, 2_640), training_budget(cfg, 160_000)
    # the real retail set: 2,640 training customers ran 77 steps at batch 256 before
    assert small["batch_size"] < 64 and small["steps_per_epoch"] >= cfg.trainer_budget.min_batches_per_epoch
    assert small["planned_steps"] >= cfg.trainer_budget.min_steps and small["epochs"] > big["epochs"]
    assert big["batch_size"] == cfg.trainer_budget.batch_size == 256 and big["epochs"] == cfg.trainer_budget.epochs
    tiny = training_budget(cfg, 300)  # floors and caps: batch no smaller than min_batch_size, epochs capped
    assert tiny["batch_size"] == cfg.trainer_budget.min_batch_size and tiny["epochs"] == cfg.trainer_budget.max_epochs
    ddp = compose_train(["trainer=ddp", "trainer.accelerator=cpu"])
    assert world_size(ddp.trainer) == 2 and world_size(cfg.trainer) == 1
    shared = training_budget(ddp, 2_640, world=2)  # each rank takes every other batch: 83 batches, 42 steps per epoch
    assert shared["batch_size"] == 32 and shared["steps_per_epoch"] == 42 and shared["planned_steps"] >= 1000


def test_explicit_settings_win():
    fixed = training_budget(compose_train(["loader.batch_size=128", "trainer.max_epochs=3"]), 2_640)
    assert (fixed["batch_size"], fixed["epochs"]) == (128, 3)
    assert fixed["batch_size_from"] == "loader.batch_size" and fixed["epochs_from"] == "trainer.max_epochs"
    batch_only = training_budget(compose_train(["loader.batch_size=512"]), 2_640)
    assert batch_only["batch_size"] == 512 and batch_only["epochs"] == 100  # the epochs still scale, up to the cap
    off = training_budget(compose_train(["trainer_budget.auto=false"]), 2_640)
    assert (off["batch_size"], off["epochs"]) == (256, 10)  # the fixed schedule of before


@pytest.mark.parametrize("override,message", [
    ("trainer_budget.min_steps=-1", "trainer_budget.min_steps=-1 must be an integer >= 0"),
    ("trainer_budget.batch_size=0", "trainer_budget.batch_size=0 must be an integer >= 1"),
    ("trainer_budget.auto=maybe", "trainer_budget.auto='maybe' must be true or false"),
    ("+trainer_budget.epoch=3", "unknown trainer_budget keys"),
])
def test_bad_budget_settings_fail_before_any_work(tmp_path, override, message):
    cfg = compose_train([f"out_dir={tmp_path}/run", "data=events", f"data.path={tmp_path}/missing.parquet", override])
    with pytest.raises(ConfigError, match=message):
        train(cfg)  # before the (missing) data is read
    assert not (tmp_path / "run" / "prepared").exists()


@pytest.mark.filterwarnings("ignore:the trained model does not beat")  # 40 steps on 240 customers
def test_training_runs_the_budget_and_the_schedule_ends_at_its_last_step(tmp_path, tiny_events):
    overrides = [o for o in tiny_overrides(tmp_path, tiny_events) if not o.startswith("loader.batch_size")]
    result = train(compose_train(overrides + ["trainer_budget.epochs=1", "trainer_budget.min_steps=40",
                                              "callbacks.early_stopping=null"]))
    budget, trainer = result.metrics["budget"], result.datamodule.trainer
    assert budget["batch_size"] == 32 and budget["steps_per_epoch"] == 8 and budget["epochs"] == 5  # 240 customers
    assert result.metrics["global_steps"] == budget["planned_steps"] == trainer.estimated_stepping_batches == 40
    assert trainer.optimizers[0].param_groups[0]["lr"] < 1e-9  # cosine reached 0 at the real last step


class Scripted(L.LightningModule):
    """Logs a scripted val/loss and val/loss_future per epoch; trains nothing."""

    def __init__(self, losses):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.losses = losses

    def training_step(self, batch, batch_idx):
        return self.w.sum() * 0.0

    def validation_step(self, batch, batch_idx):
        value = self.losses[self.current_epoch]
        self.log("val/loss", value)
        self.log("val/loss_future", value)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)

    def train_dataloader(self):
        return DataLoader([torch.zeros(1)] * 2)

    def val_dataloader(self):
        return DataLoader([torch.zeros(1)])


def run_scripted(losses, baseline):
    stop = BaselineEarlyStopping(monitor="val/loss", mode="min", patience=2, min_delta=0.0, baseline=baseline)
    trainer = L.Trainer(accelerator="cpu", max_epochs=len(losses), callbacks=[stop], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(Scripted(losses))
    return trainer.current_epoch  # epochs run


SLOW_START = [1.30, 1.20, 1.22, 1.21, 1.23, 1.24, 1.10, 0.95, 0.96, 0.97, 0.98, 0.99]


def test_early_stopping_waits_while_the_model_is_no_better_than_its_constant_guess():
    assert run_scripted(SLOW_START, baseline=None) == 4  # plain patience: stops on the plateau above the guess
    assert run_scripted(SLOW_START, baseline=1.0) == 10  # waits for 0.95 (< 1.0, epoch 8), then 2 epochs of patience
    assert run_scripted(SLOW_START, baseline=0.5) == len(SLOW_START)  # never beats the guess: runs to the cap
    assert run_scripted([0.9, 0.8, 0.85, 0.86, 0.7], baseline=1.0) == 4  # below the guess: plain early stopping
