"""Sharded arrays decoded without Zarr (fill masks, per-row numbers): the values Zarr
itself decodes, in any row order, and damage named as before, down to the inner chunk."""

from __future__ import annotations

import shutil

import google_crc32c
import numpy as np
import pytest

from embedcache.errors import DamagedChunkError
from embedcache.store import Store, mask_name, sequence_digest
from embedcache.store import chunks

from test_store import CLS2, _seqs, _write

N_SEQS = 9000  # inner chunks of masks hold 4096 rows: three of them, the last one partial


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    path = tmp_path_factory.mktemp("shards") / "c.zarr"
    seqs = list(dict.fromkeys(_seqs(N_SEQS, seed=5)))
    key = _write(Store(path), seqs, [CLS2])
    return path, key, seqs


@pytest.fixture
def copy(built, tmp_path):
    """A private copy of the built store, to damage."""
    path, key, seqs = built
    shutil.copytree(path, tmp_path / "c.zarr")
    return Store(tmp_path / "c.zarr"), key, seqs


def _rows(n):
    rng = np.random.default_rng(0)
    return np.concatenate([rng.permutation(n), rng.integers(0, n, 50), [n - 1, 0, 4095, 4096]])


def test_masks_and_row_numbers_read_what_zarr_decodes(built):
    path, key, seqs = built
    g = Store(path).group(key)
    rows = _rows(g.n_rows)
    for name in (mask_name(CLS2), "length", "n_tokens", "n_windows"):
        arr = g.array(name)
        assert chunks.is_sharded(arr) and chunks.decodes_here(arr)
        np.testing.assert_array_equal(g._values(name, arr, rows), np.asarray(arr[: g.n_rows])[rows])
    np.testing.assert_array_equal(g.row_array("length"), [len(s) for s in seqs])
    assert g.filled(CLS2, rows).all() and g.filled(CLS2).all()
    # Strings are decoded by Zarr, from the shards fetched and checked here.
    assert not chunks.decodes_here(g.array("digest"))
    np.testing.assert_array_equal(g._values("digest", g.array("digest"), rows),
                                  np.asarray([sequence_digest(s) for s in seqs], dtype=object)[rows])


def _rewrite_shard(store, key, name, edit):
    """Apply ``edit(raw, index)`` to shard 0 of ``name``, keeping every checksum valid."""
    arr = store.group(key).array(name)
    path = store.path / chunks.chunk_key(arr, 0)
    raw = np.frombuffer(path.read_bytes(), dtype="B").copy()
    n_inner = int(arr.metadata.chunk_grid.chunk_shape[0]) // int(arr.metadata.codecs[0].chunk_shape[0])
    index = raw[-(n_inner * 16 + 4):-4].view("<u8").reshape(n_inner, 2)
    edit(raw, index)
    tail = raw[-(n_inner * 16 + 4):]
    tail[-4:] = np.frombuffer(np.uint32(google_crc32c.value(tail[:-4].tobytes())).tobytes(), dtype="B")
    path.write_bytes(raw.tobytes())


def _drop_inner_1(raw, index):
    index[1] = 2**64 - 1


def test_an_absent_inner_chunk_is_not_filled_and_its_numbers_are_damage(copy):
    store, key, seqs = copy
    for name in (mask_name(CLS2), "length"):
        _rewrite_shard(store, key, name, _drop_inner_1)
    g = store.group(key)
    rows = _rows(g.n_rows)
    inside = (rows >= 4096) & (rows < 8192)
    # The safe direction: the rows are reported missing, and the next build recomputes them.
    np.testing.assert_array_equal(g.filled(CLS2, rows), ~inside)
    np.testing.assert_array_equal(g._values("length", g.array("length"), rows[~inside]),
                                  np.asarray([len(s) for s in seqs])[rows[~inside]])
    with pytest.raises(DamagedChunkError) as err:
        g._values("length", g.array("length"), rows)
    assert err.value.rows == (4096, 8191) and err.value.what == "missing"
    assert err.value.array == f"{key}/length"


def test_an_inner_chunk_that_does_not_decode_is_named(copy):
    store, key, _ = copy

    def garble(raw, index):
        offset, length = (int(x) for x in index[2])
        # Valid checksum, payload that is no Blosc frame of the chunk's size.
        raw[offset + 4:offset + 8] = np.frombuffer(np.uint32(7).tobytes(), dtype="B")
        raw[offset + length - 4:offset + length] = np.frombuffer(
            np.uint32(google_crc32c.value(raw[offset:offset + length - 4].tobytes())).tobytes(), dtype="B")

    _rewrite_shard(store, key, mask_name(CLS2), garble)
    g = store.group(key)
    assert g.filled(CLS2, np.arange(8192)).all()  # the other inner chunks still read
    with pytest.raises(DamagedChunkError) as err:
        g.filled(CLS2, np.array([0, g.n_rows - 1]))
    assert err.value.rows == (8192, g.n_rows - 1) and "does not decode" in err.value.what
    (problem,) = [p for p in store.verify() if p.array == mask_name(CLS2)]
    assert (min(problem.rows), max(problem.rows)) == (8192, g.n_rows - 1) and problem.damage == "corrupted"


def test_a_checksum_mismatch_is_named_even_where_the_rows_need_no_values(copy):
    store, key, _ = copy
    path = store.path / chunks.chunk_key(store.group(key).array(mask_name(CLS2)), 0)
    raw = bytearray(path.read_bytes())
    raw[20] ^= 0xFF  # inside inner chunk 0
    path.write_bytes(bytes(raw))
    g = store.group(key)
    assert g.filled(CLS2, np.array([4096, g.n_rows - 1])).all()
    with pytest.raises(DamagedChunkError) as err:
        g.filled(CLS2, np.array([5000, 3]))
    assert err.value.rows == (0, 4095) and "checksum" in err.value.what
