"""Batching: padding and batch-size independence, bucket plans, out-of-memory halving."""

from __future__ import annotations

import numpy as np
import pytest

from embedcache.checkpoints import load_checkpoint
from embedcache.request import BuildRequest, RunOptions
from embedcache.engine import Embedder, Planner, bucket_lengths
from embedcache.errors import InputError, SequenceTooLongError
from embedcache.families.nt.forward import forward, prepare_params

LAYERS = (1, 2)
MAPS = [(1, 3), (2, 1)]


@pytest.fixture(scope="module")
def ckpt(tiny_v2_checkpoint):
    return load_checkpoint(tiny_v2_checkpoint)


@pytest.fixture(scope="module")
def token_arrays(ckpt):
    rng = np.random.default_rng(7)
    lengths = [1, 0, 5, 6, 7, 40, 95, 100, 200, 300, 330, 64, 17, 250, 33]
    seqs = ["".join(rng.choice(list("ACGTN"), p=[0.24, 0.24, 0.24, 0.24, 0.04], size=n)) for n in lengths]
    arrays = [a for a in ckpt.tokenizer().encode_batch(seqs) if len(a) <= 64]
    # lengths across several buckets, up to the model's limit
    assert len(arrays) >= 12 and max(len(a) for a in arrays) > 48
    return arrays


def _collect(embedder, arrays):
    pooled, maps = {}, {}
    seen = []
    for b in embedder.embed(arrays):
        seen.extend(b.index.tolist())
        for key, v in b.pooled.items():
            pooled.setdefault(key, [None] * len(arrays))
            for r, i in enumerate(b.index):
                pooled[key][i] = v[r]
        for key, v in b.attention.items():
            maps.setdefault(key, [None] * len(arrays))
            for r, i in enumerate(b.index):
                n = b.n_tokens[r]
                # zeros past the row's tokens, in both axes
                assert not v[r, n:, :].any() and not v[r, :, n:].any()
                maps[key][i] = v[r, :n, :n]
    assert sorted(seen) == list(range(len(arrays)))
    return pooled, maps


def test_outputs_do_not_depend_on_batching(ckpt, token_arrays):
    kwargs = dict(layers=LAYERS, attention=MAPS, max_tokens=64)
    together = _collect(Embedder(ckpt, BuildRequest(**kwargs)), token_arrays)
    alone = _collect(Embedder(ckpt, BuildRequest(**kwargs), run=RunOptions(batch_size=1)), token_arrays)
    small_budget = _collect(Embedder(ckpt, BuildRequest(**kwargs), run=RunOptions(token_budget=64)), token_arrays)
    for other in (alone, small_budget):
        for key in together[0]:
            for a, b in zip(together[0][key], other[0][key]):
                np.testing.assert_allclose(a, b, atol=1e-5)
        for key in together[1]:
            for a, b in zip(together[1][key], other[1][key]):
                np.testing.assert_allclose(a, b, atol=1e-5)


def test_per_token_outputs_do_not_depend_on_padding(ckpt, token_arrays):
    params = prepare_params(ckpt.params)
    for a in token_arrays[:4]:
        exact = forward(params, a[None, :], config=ckpt.config, layers=LAYERS, attention=MAPS)
        padded_tokens = np.full((1, 64), ckpt.config.pad_token_id, np.int32)
        padded_tokens[0, : len(a)] = a
        padded = forward(params, padded_tokens, config=ckpt.config, layers=LAYERS, attention=MAPS)
        n = len(a)
        for layer in LAYERS:
            np.testing.assert_allclose(padded["embeddings"][layer][0, :n], exact["embeddings"][layer][0], atol=1e-5)
        for key in MAPS:
            np.testing.assert_allclose(padded["attention"][key][0, :n, :n], exact["attention"][key][0], atol=1e-5)
            assert np.allclose(np.asarray(padded["attention"][key][0, :n, n:]), 0.0)


def test_pooling_definitions(ckpt, token_arrays):
    params = prepare_params(ckpt.params)
    pooled, _ = _collect(Embedder(ckpt, BuildRequest(layers=(1,), max_tokens=64)), token_arrays)
    batch = np.full((len(token_arrays), 64), ckpt.config.pad_token_id, np.int32)
    for i, a in enumerate(token_arrays):
        batch[i, : len(a)] = a
    hidden = np.asarray(forward(params, batch, config=ckpt.config, layers=(1,))["embeddings"][1])
    for i, a in enumerate(token_arrays):
        h = hidden[i, : len(a)]
        np.testing.assert_allclose(pooled[(1, "cls")][i], h[0], atol=1e-5)
        expected_mean = h[1:].mean(0) if len(a) > 1 else h[0]
        np.testing.assert_allclose(pooled[(1, "mean")][i], expected_mean, atol=1e-5)


def plan_batches(n_tokens, *, max_tokens, token_budget, mix=True):
    """The ``(padded length, indices)`` batches a Planner makes of sequences given at once."""
    planner = Planner(max_tokens, token_budget, mix=mix)
    batches = [*planner.add(range(n_tokens.size), n_tokens), *planner.finish()]
    return [(length, np.asarray(part, dtype=np.int64)) for length, part in batches]


def _padded(plans):
    return sum((1 << (p.size - 1).bit_length()) * length for length, p in plans)


@pytest.mark.parametrize("mix", [True, False])
def test_plan_covers_every_sequence_once_with_few_shapes(mix):
    rng = np.random.default_rng(0)
    n = rng.integers(1, 513, size=5000)
    plans = plan_batches(n, max_tokens=512, token_budget=8192, mix=mix)
    idx = np.concatenate([p for _, p in plans])
    assert sorted(idx.tolist()) == list(range(n.size))
    ladder = bucket_lengths(512)
    shapes = set()
    for length, p in plans:
        assert length in ladder and (n[p] <= length).all()
        rows = 1 << (p.size - 1).bit_length()
        shapes.add((rows, length))
        if not mix:  # the next smaller bucket would not have fitted: padding waste is bounded
            smaller = [b for b in ladder if b < length]
            assert not smaller or (n[p] > smaller[-1]).all()
    # a full row count plus at most one partial power of two per bucket
    assert len(shapes) <= 2 * len(ladder)
    assert n.sum() / _padded(plans) > 0.6


def test_leftovers_are_batched_across_buckets_longest_first():
    # 256 sequences of 9-168 tokens (50-1,000 bp) over 26 buckets: per bucket, nearly every
    # batch is partial; across buckets, padding is below the official length-sorted batches of 32.
    n = np.random.default_rng(1).integers(9, 169, size=256)
    plans = plan_batches(n, max_tokens=512, token_budget=4096)
    per_bucket = plan_batches(n, max_tokens=512, token_budget=4096, mix=False)
    planner = Planner(512, 4096)
    assert sorted(np.concatenate([p for _, p in plans]).tolist()) == list(range(n.size))
    assert all((n[p] <= length).all() for length, p in plans)
    for length, p in plans[:-1]:  # a full, half or quarter batch of the first row's bucket
        assert p.size in {planner.rows_for(length) >> k for k in range(3)}
        assert length == planner.ladder[np.searchsorted(planner.ladder, n[p].max())]
    ordered = np.sort(n)[::-1]
    official = sum(ordered[s] * ordered[s : s + 32].size for s in range(0, n.size, 32))
    assert _padded(plans) / n.sum() < min(official / n.sum(), 1.10) < 1.2 < _padded(per_bucket) / n.sum()
    assert len({(1 << (p.size - 1).bit_length(), length) for length, p in plans}) <= 3 * 26 + 1
    # A family whose padding changes outputs (NTv3) keeps each row at its own padded length.
    assert all(len({int(np.searchsorted(planner.ladder, k)) for k in n[p]}) == 1 for _, p in per_bucket)


def test_out_of_memory_halves_the_batch_and_goes_on(ckpt, token_arrays):
    reference = _collect(Embedder(ckpt, BuildRequest(layers=LAYERS, max_tokens=64)), token_arrays)[0]
    emb = Embedder(ckpt, BuildRequest(layers=LAYERS, max_tokens=64))
    real_call = emb._call
    sizes = []

    def flaky(tokens, n_tokens):
        sizes.append(tokens.shape[0])
        if tokens.shape[0] > 2:
            raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1.2GiB")
        return real_call(tokens, n_tokens)

    emb._call = flaky
    got = _collect(emb, token_arrays)[0]
    assert emb.stats.oom_halvings > 0 and max(sizes) > 2
    for key in reference:
        for a, b in zip(reference[key], got[key]):
            np.testing.assert_allclose(a, b, atol=1e-5)


def test_other_errors_are_not_swallowed(ckpt, token_arrays):
    emb = Embedder(ckpt, BuildRequest(layers=LAYERS, max_tokens=64))

    def broken(tokens, n_tokens):
        raise RuntimeError("INVALID_ARGUMENT: something else")

    emb._call = broken
    with pytest.raises(RuntimeError, match="INVALID_ARGUMENT"):
        list(emb.embed(token_arrays))


def test_requests_are_validated(ckpt, token_arrays):
    with pytest.raises(InputError, match="layers 1..2"):
        Embedder(ckpt, BuildRequest(layers=(3,)))
    with pytest.raises(InputError, match="heads 1..4"):
        Embedder(ckpt, BuildRequest(attention=[(1, 5)]))
    with pytest.raises(InputError, match="max-tokens 65"):
        Embedder(ckpt, BuildRequest(max_tokens=65))
    with pytest.raises(InputError, match="--pool 'max'"):
        Embedder(ckpt, BuildRequest(layers=(1,), pools=("max",)))
    with pytest.raises(SequenceTooLongError, match="max_tokens=16"):
        list(Embedder(ckpt, BuildRequest(layers=(1,), max_tokens=16)).embed(token_arrays))
