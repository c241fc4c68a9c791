"""LightningDataModule over a prepared dataset: length-bucketed, resumable, DDP-aware batches."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, Dataset, Sampler

from eventseg.data.batch import EventBatch
from eventseg.data.split import TEST, TRAIN, VAL
from eventseg.data.store import SequenceStore


class CustomerSequences(Dataset):
    """Customers of a store; fetched a whole batch at a time through `__getitems__`."""

    def __init__(self, store: SequenceStore):
        self.store = store

    def __len__(self) -> int:
        return self.store.n_customers

    def __getitem__(self, index: int) -> EventBatch:
        return self.store.batch([index])

    def __getitems__(self, indices: list[int]) -> EventBatch:
        return self.store.batch(indices)


def keep_batch(batch: EventBatch) -> EventBatch:
    """collate_fn: `__getitems__` already returns a padded batch."""
    return batch


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of customers with similar history lengths, so little compute goes to padding.

    Training: shuffle, cut into pools of `pool_batches` batches, sort each pool by length,
    batch, shuffle the batches: random yet compact. Evaluation: sorted by length. The batch
    list depends only on (seed, epoch); each DDP rank takes every world_size-th batch.
    """

    def __init__(self, indices, lengths, batch_size: int, shuffle: bool, seed: int = 0,
                 pool_batches: int = 50, rank: int = 0, world_size: int = 1):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.indices = np.asarray(indices, dtype=np.int64)
        self.lengths = np.asarray(lengths)[self.indices]
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.pool = pool_batches * batch_size
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.skip = 0  # batches already consumed in this epoch (mid-epoch resume)
        self.sampler = self  # Lightning calls set_epoch on `batch_sampler.sampler` before each epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume(self, epoch: int, batches_done: int) -> None:
        """Continue an interrupted epoch: its order again, minus the batches already trained on."""
        self.epoch, self.skip = epoch, batches_done
        if batches_done >= len(self):  # saved at the very end of the epoch: start the next one
            self.epoch, self.skip = epoch + 1, 0

    def _all_batches(self) -> list[np.ndarray]:
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            return [self.indices[order[i : i + self.batch_size]] for i in range(0, len(order), self.batch_size)]
        rng = np.random.default_rng([self.seed, self.epoch])
        perm = rng.permutation(len(self.indices))
        batches = []
        for start in range(0, len(perm), self.pool):
            pool = perm[start : start + self.pool]
            pool = pool[np.argsort(self.lengths[pool], kind="stable")]
            batches += [pool[i : i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
        return [self.indices[batches[i]] for i in rng.permutation(len(batches))]

    def _rank_batches(self) -> list[np.ndarray]:
        batches = self._all_batches()
        per_rank = math.ceil(len(batches) / self.world_size)
        batches += batches[: per_rank * self.world_size - len(batches)]  # equal count on every rank
        return batches[self.rank :: self.world_size]

    def __iter__(self):
        batches, self.skip = self._rank_batches()[self.skip :], 0
        for b in batches:
            yield b.tolist()

    def __len__(self) -> int:
        return len(self._rank_batches())


class EventDataModule(L.LightningDataModule):
    """Serves the train/val/test customers of a prepared dataset (see `PreparedData`)."""

    def __init__(self, store: SequenceStore, splits: np.ndarray, batch_size: int = 256,
                 eval_batch_size: int | None = None, num_workers: int = 0, pin_memory: bool = False,
                 seed: int = 0, pool_batches: int = 50):
        super().__init__()
        self.store, self.splits = store, np.asarray(splits)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.seed, self.pool_batches = seed, pool_batches
        self._resume: dict = {}
        self._train_sampler: BucketBatchSampler | None = None
        for code, name in ((TRAIN, "training"), (VAL, "validation")):
            if not (self.splits == code).any():
                raise ValueError(f"the {name} split has no customers: use more customers or change data.split.fractions")

    @classmethod
    def from_prepared(cls, prepared_dir: str | Path, **kwargs) -> "EventDataModule":
        from eventseg.data.prepare import PreparedData

        prepared = PreparedData.load(prepared_dir)
        return cls(prepared.store, prepared.splits, **kwargs)

    def _loader(self, split: int, shuffle: bool) -> DataLoader:
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        sampler = BucketBatchSampler(
            np.flatnonzero(self.splits == split), self.store.lengths,
            self.batch_size if shuffle else self.eval_batch_size,
            shuffle=shuffle, seed=self.seed, pool_batches=self.pool_batches, rank=rank, world_size=world,
        )
        if shuffle:
            # Lightning may build this loader before it restores the loops from a checkpoint,
            # so the sampler takes the epoch and position from our own saved state.
            self._train_sampler = sampler
            if self._resume:
                sampler.resume(int(self._resume["epoch"]), int(self._resume["batches_done"]))
                self._resume = {}
        return DataLoader(
            CustomerSequences(self.store), batch_sampler=sampler, collate_fn=keep_batch,
            num_workers=self.num_workers, pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def eval_dataloader(self, split: int = TRAIN) -> DataLoader:
        """Every customer of `split` once, sorted by length, in eval-size batches, whatever the
        rank: for statistics computed before training (the future objective's constant guess)."""
        sampler = BucketBatchSampler(np.flatnonzero(self.splits == split), self.store.lengths, self.eval_batch_size,
                                     shuffle=False, seed=self.seed, pool_batches=self.pool_batches)
        return DataLoader(CustomerSequences(self.store), batch_sampler=sampler, collate_fn=keep_batch)

    def train_dataloader(self) -> DataLoader:
        return self._loader(TRAIN, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(VAL, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(TEST, shuffle=False)

    def state_dict(self) -> dict:
        """Where the training epoch stands, so a mid-epoch resume skips what was already seen."""
        if self.trainer is None or self._train_sampler is None:
            return {}
        progress = self.trainer.fit_loop.epoch_loop.batch_progress.current
        return {"epoch": self.trainer.current_epoch, "batches_done": progress.processed}

    def load_state_dict(self, state: dict) -> None:
        self._resume = dict(state)
