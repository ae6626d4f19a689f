"""deep_gradients/schedule.py: the learning-rate schedules and the per-epoch batches of every rank."""
import pytest
import torch

import schedule
import train


def test_onecycle_and_cosine_schedules():
    c = train.Config(learning_rate=0.4, warmup_frac=0.2)
    lrs = [schedule.lr_at(s, 100, c) for s in range(100)]
    assert max(lrs) == pytest.approx(0.4) and lrs.index(max(lrs)) == 19  # peak at the end of warm-up
    assert lrs[0] == pytest.approx(0.4 / 20) and lrs[-1] < 0.4 * 0.02
    assert all(a <= b for a, b in zip(lrs[:20], lrs[1:20])) and all(a >= b for a, b in zip(lrs[20:], lrs[21:]))
    c.schedule = "cosine"
    cos = [schedule.lr_at(s, 100, c) for s in range(100)]
    assert cos[20] == pytest.approx(0.4) and cos[60] == pytest.approx(0.2) and cos[-1] < 1e-3
    c.schedule = "constant"
    assert {schedule.lr_at(s, 100, c) for s in range(100)} == {0.4}


def test_epoch_batches_shard_the_global_batch():
    one = schedule.epoch_batches(100, 24, seed=0, epoch=3)  # (4, 24), last 4 images dropped
    assert one.shape == (4, 24) and len(set(one.flatten().tolist())) == 96
    shards = [schedule.epoch_batches(100, 24, seed=0, epoch=3, rank=r, world=3) for r in range(3)]
    assert all(s.shape == (4, 8) for s in shards)
    assert torch.equal(torch.cat(shards, dim=1), one)  # the ranks' slices make up exactly the global batch
    for a in range(3):
        for b in range(a + 1, 3):
            assert not set(shards[a].flatten().tolist()) & set(shards[b].flatten().tolist())  # disjoint
    assert not torch.equal(schedule.epoch_batches(100, 24, 0, 4), one)  # reshuffled every epoch
    assert torch.equal(schedule.epoch_batches(100, 24, 0, 3), one)  # ... reproducibly


def test_shift_offsets_are_seeded_per_epoch():
    a = schedule.shift_offsets(5, 8, 2, seed=0, epoch=1)
    assert a.shape == (5, 2, 8) and a.min() >= 0 and a.max() <= 4
    assert torch.equal(a, schedule.shift_offsets(5, 8, 2, seed=0, epoch=1))
    assert not torch.equal(a, schedule.shift_offsets(5, 8, 2, seed=0, epoch=2))
