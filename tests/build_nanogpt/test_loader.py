"""build_nanogpt/loader.py: disjoint ranks, seeded per-epoch shuffling, every token once per epoch."""
import numpy as np
import pytest

import loader as L

EOT = 50256
B, T = 2, 4


@pytest.fixture
def shards(tmp_path):
    """3 train shards of documents whose tokens are all distinct (so we can count them), + a val shard.
    113 train tokens = 7 * (2 ranks * B*T) + 1: an epoch is exactly 7 batches plus the last target token."""
    rng = np.random.default_rng(0)
    next_id = 0
    sizes = [40, 40, 33]
    for i, n in enumerate(sizes):
        toks = np.arange(next_id, next_id + n, dtype=np.uint16)
        next_id += n
        toks[rng.choice(n, size=6, replace=False)] = EOT  # document starts
        np.save(tmp_path / f"train_{i + 1:06d}.npy", toks)
    np.save(tmp_path / "val_000000.npy", np.arange(30000, 30100, dtype=np.uint16))
    return tmp_path


def epoch_inputs(loader_cls, path, world, seed, epochs=1):
    """Every rank's inputs, batch by batch, for `epochs` epochs."""
    loaders = [loader_cls(str(path), "train", B, T, rank=r, world=world, seed=seed) for r in range(world)]
    per_epoch = (113 - 1) // (B * T * world)
    return [[loader.next_batch() for _ in range(per_epoch * epochs)] for loader in loaders]


def test_ranks_disjoint_and_every_token_once_per_epoch(shards):
    everything = np.concatenate([np.load(p) for p in sorted(shards.glob("train_*.npy"))])
    runs = epoch_inputs(L.ShardLoader, shards, world=2, seed=3, epochs=2)
    per_epoch = len(runs[0]) // 2
    for e in range(2):
        seen = [np.concatenate([x.flatten().numpy() for x, _ in r[e * per_epoch:(e + 1) * per_epoch]]) for r in runs]
        non_eot = [s[s != EOT] for s in seen]
        assert not set(non_eot[0]) & set(non_eot[1])  # the two ranks never share a token
        last_y = runs[1][(e + 1) * per_epoch - 1][1].flatten().numpy()[-1]
        got = np.sort(np.concatenate(seen + [np.array([last_y], dtype=np.int64)]))
        np.testing.assert_array_equal(got, np.sort(everything.astype(np.int64)))  # each token exactly once
    # targets are the inputs shifted by one
    x, y = runs[0][0]
    np.testing.assert_array_equal(x.flatten()[1:].numpy(), y.flatten()[:-1].numpy())


def test_shuffle_is_seeded_and_changes_each_epoch(shards):

    def stream(seed, epochs=2):
        return np.concatenate([x.flatten().numpy() for x, _ in epoch_inputs(L.ShardLoader, shards, 1, seed, epochs)[0]])

    a, b, c = stream(0), stream(0), stream(1)
    n = len(a) // 2
    np.testing.assert_array_equal(a, b)  # reproducible from the seed
    assert not np.array_equal(a[:n], c[:n])  # another seed, another order
    assert not np.array_equal(a[:n], a[n:])  # epoch 2 is not epoch 1 again
    unshuffled = np.concatenate([np.load(p) for p in sorted(shards.glob("train_*.npy"))])[:n]
    assert not np.array_equal(a[:n], unshuffled)
    # the shard order itself is drawn anew each epoch (3 shards: 6 orders), not fixed for the whole run
    loader = L.ShardLoader(str(shards), "train", B, T, seed=0)
    orders = [tuple(loader.shard_order(e)) for e in range(12)]
    assert len(set(orders)) > 2 and all(sorted(o) == [0, 1, 2] for o in orders)


def test_state_dict_resumes_mid_epoch(shards):
    a = L.ShardLoader(str(shards), "train", B, T, seed=5)
    for _ in range(11):  # into the second epoch, across shard boundaries with carried tokens
        a.next_batch()
    state = a.state_dict()
    b = L.ShardLoader(str(shards), "train", B, T, seed=5)
    b.load_state_dict(state)
    for _ in range(20):
        (xa, ya), (xb, yb) = a.next_batch(), b.next_batch()
        assert xa.equal(xb) and ya.equal(yb)


def test_val_loader_is_fixed(shards):
    v = L.ShardLoader(str(shards), "val", B, T, shuffle=False)
    first = v.next_batch()[0].clone()
    v.next_batch()
    v.reset()
    assert v.next_batch()[0].equal(first) and first[0, 0] == 30000


def test_reset_reads_the_first_shard_again_only_after_leaving_it(shards, monkeypatch):
    """The val loader resets before every evaluation: while it stays on its first shard, nothing is re-read."""
    reads, real_open = [], L.open_shard
    monkeypatch.setattr(L, "open_shard",
                        lambda path, mmap_mode="r": reads.append(mmap_mode) or real_open(path, mmap_mode))
    v = L.ShardLoader(str(shards), "val", B, T, shuffle=False)
    loads = reads.count(None)  # full reads (check_shard memory-maps)
    first = v.next_batch()[0].clone()
    v.reset()
    v.reset()
    assert reads.count(None) == loads == 1 and v.next_batch()[0].equal(first)
    t = L.ShardLoader(str(shards), "train", B, T, seed=1)
    start = t.next_batch()[0].clone()
    for _ in range(6):  # past the first shard (40 tokens): the reset loads it again
        t.next_batch()
    assert t.cursor > 0
    before = reads.count(None)
    t.reset()
    assert reads.count(None) == before + 1 and t.next_batch()[0].equal(start)
