"""The multi-task MLP behind the `mlp` heads: shared hidden layers, one logit per binary label,
binary cross-entropy masked where a label is unknown, early stopping on a held-out slice."""

from __future__ import annotations

import copy
import logging
import warnings
from contextlib import contextmanager

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping
from torch import nn
from torch.nn import functional as F


class MultiTaskMLP(L.LightningModule):
    """Shared hidden layers, one logit per binary label; BCE masked where a label is missing."""

    def __init__(
        self, n_inputs: int, n_labels: int, hidden=(64,), dropout: float = 0.1, lr: float = 1e-3, weight_decay: float = 1e-4
    ):
        super().__init__()
        self.save_hyperparameters()
        layers, width = [], n_inputs
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU(), nn.Dropout(dropout)]
            width = int(h)
        layers.append(nn.Linear(width, n_labels))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _loss(self, batch) -> torch.Tensor:
        x, y, mask = batch
        loss = F.binary_cross_entropy_with_logits(self(x), y, reduction="none")
        return (loss * mask).sum() / mask.sum().clamp_min(1.0)

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(batch[0]))
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self._loss(batch), on_step=False, on_epoch=True, batch_size=len(batch[0]))

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    def probabilities(self, X: np.ndarray, chunk: int = 65536) -> np.ndarray:
        """[rows, labels] sigmoid outputs for a float matrix, in chunks, without gradients."""
        with torch.no_grad():
            parts = [torch.sigmoid(self(torch.from_numpy(X[i : i + chunk].astype(np.float32)))).numpy()
                     for i in range(0, len(X), chunk)]  # fmt: skip
        return np.concatenate(parts).astype(np.float64) if parts else np.empty((0, self.hparams.n_labels))


class _BestWeights(Callback):
    """Keep the weights of the best held-out epoch (early stopping stops a few epochs later)."""

    def __init__(self):
        self.best, self.state, self.epoch = float("inf"), None, None

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        loss = float(trainer.callback_metrics["val/loss"])
        if loss < self.best:
            self.best, self.epoch = loss, trainer.current_epoch
            self.state = copy.deepcopy({k: v.detach().cpu() for k, v in pl_module.state_dict().items()})


@contextmanager
def _small_model_run():
    """Run a seconds-long fit of a tiny network quietly and on one CPU thread.

    Lightning's hardware banner, small-data advice and a torch/Lightning pytree deprecation
    notice are noise here. Intra-op threads buy nothing on matrices this small and, on a
    shared machine, spin against other processes (measured: 30 epochs of 2k rows took 1.5 s
    on one thread, 12 s on two busy cores), so the thread count is lowered for the fit only.
    """
    from lightning.fabric.utilities.warnings import PossibleUserWarning

    logger = logging.getLogger("lightning.pytorch")
    level, threads = logger.level, torch.get_num_threads()
    logger.setLevel(logging.WARNING)
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PossibleUserWarning)
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            yield
    finally:
        logger.setLevel(level)
        torch.set_num_threads(threads)


def _masked_tensors(X: np.ndarray, Y: np.ndarray) -> torch.utils.data.TensorDataset:
    """Inputs, labels with unknowns as 0, and the mask of known labels."""
    arrays = (X, np.nan_to_num(Y), ~np.isnan(Y))
    return torch.utils.data.TensorDataset(*(torch.from_numpy(a.astype(np.float32)) for a in arrays))


def fit_network(X: np.ndarray, Y: np.ndarray, X_stop: np.ndarray, Y_stop: np.ndarray, *, hidden, dropout: float,
                lr: float, weight_decay: float, max_epochs: int, batch_size: int, patience: int, accelerator: str,
                seed: int) -> tuple[MultiTaskMLP, dict]:
    """Train on (X, Y), early-stop on (X_stop, Y_stop) (NaN = unknown label), keep the best epoch."""
    L.seed_everything(seed, verbose=False)
    rows, stop_rows = ~np.isnan(Y).all(axis=1), ~np.isnan(Y_stop).all(axis=1)
    if not stop_rows.any():
        raise ValueError("no customer of the early-stopping slice has a binary label: early stopping needs some")
    network = MultiTaskMLP(X.shape[1], Y.shape[1], list(hidden), dropout, lr, weight_decay)
    best = _BestWeights()
    loader = torch.utils.data.DataLoader
    with _small_model_run():
        trainer = L.Trainer(
            accelerator=accelerator, devices=1, max_epochs=max_epochs, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            num_sanity_val_steps=0,
            callbacks=[EarlyStopping(monitor="val/loss", mode="min", patience=patience), best],
        )  # fmt: skip
        trainer.fit(
            network,
            loader(_masked_tensors(X[rows], Y[rows]), batch_size=batch_size, shuffle=True),
            loader(_masked_tensors(X_stop[stop_rows], Y_stop[stop_rows]), batch_size=8192),
        )
    network.load_state_dict(best.state)
    network = network.cpu().eval()
    return network, {"epochs_run": trainer.current_epoch, "best_epoch": best.epoch, "best_val_loss": best.best}
