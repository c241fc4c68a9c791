import numpy as np
import pytest

from conftest import make_events
from eventseg.data.datamodule import BucketBatchSampler, EventDataModule
from eventseg.data.prepare import PreparedData, prepare_events


def test_each_customer_once_per_epoch_and_new_order_each_epoch():
    lengths = np.random.default_rng(0).integers(1, 200, 1000)
    sampler = BucketBatchSampler(np.arange(1000), lengths, batch_size=32, shuffle=True, pool_batches=4)
    first = list(sampler)
    assert sorted(i for b in first for i in b) == list(range(1000))
    assert list(sampler) == first  # same epoch, same order
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_length_bucketing_cuts_padding():
    lengths = np.random.default_rng(0).integers(1, 200, 4000)
    sampler = BucketBatchSampler(np.arange(4000), lengths, batch_size=64, shuffle=True)
    padded = sum(len(b) * lengths[b].max() for b in sampler)
    random_batches = np.array_split(np.random.default_rng(1).permutation(4000), 4000 // 64)
    padded_random = sum(len(b) * lengths[b].max() for b in random_batches)
    assert padded < 0.7 * padded_random
    assert lengths.sum() / padded > 0.9  # over 90% of the computed positions are real events


def test_ranks_split_the_batches_between_them():
    lengths = np.ones(1000, dtype=int)
    ranks = [BucketBatchSampler(np.arange(1000), lengths, 32, True, rank=r, world_size=3) for r in range(3)]
    seen = [i for s in ranks for b in s for i in b]
    assert len({len(s) for s in ranks}) == 1  # equal step counts, or DDP would hang
    assert set(seen) == set(range(1000))


def test_resume_skips_the_batches_already_trained_on():
    lengths = np.random.default_rng(0).integers(1, 50, 300)
    full = BucketBatchSampler(np.arange(300), lengths, 16, True)
    full.set_epoch(2)
    expected = list(full)
    resumed = BucketBatchSampler(np.arange(300), lengths, 16, True)
    resumed.resume(epoch=2, batches_done=5)
    assert list(resumed) == expected[5:]
    assert list(resumed) == expected  # the skip applies to the interrupted epoch only
    at_end = BucketBatchSampler(np.arange(300), lengths, 16, True)
    at_end.resume(epoch=2, batches_done=len(expected))
    assert at_end.epoch == 3 and at_end.skip == 0


def test_worker_processes_read_the_memory_mapped_store(tmp_path, schema):
    prepare_events(make_events(n_customers=120), schema).save(tmp_path / "prep")
    prepared = PreparedData.load(tmp_path / "prep")
    in_process = EventDataModule(prepared.store, prepared.splits, batch_size=16, num_workers=0)
    workers = EventDataModule(prepared.store, prepared.splits, batch_size=16, num_workers=2)
    for a, b in zip(in_process.val_dataloader(), workers.val_dataloader()):
        assert a.customer_index.tolist() == b.customer_index.tolist()
        assert (a.categorical == b.categorical).all() and (a.numeric == b.numeric).all()


def test_empty_validation_split_is_a_clear_error(schema):
    prepared = prepare_events(make_events(n_customers=30), schema, split_fractions=(1.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="validation split has no customers"):
        EventDataModule(prepared.store, prepared.splits)
