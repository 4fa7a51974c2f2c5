"""Sharded arrays decoded without Zarr (fill masks, per-row numbers): the values Zarr
itself decodes, in any row order, and damage named as before, down to the inner chunk."""

from __future__ import annotations

import json
import shutil

import google_crc32c
import numpy as np
import pytest

from embedcache.errors import DamagedChunkError
from embedcache.store import Store, mask_name, sequence_digest
from embedcache.store import chunks
from embedcache.store.manifest import identity

from test_store import CLS2, _seqs, _write, chunk_file

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
    """Apply ``edit(raw, index)`` to shard 0 of ``name``, keeping every checksum valid, the
    manifest's included: a shard committed so (an upgraded store's may lack inner chunks)."""
    arr = store.group(key).array(name)
    path = chunk_file(store, key, name, 0)
    raw = np.frombuffer(path.read_bytes(), dtype="B").copy()
    n_inner = int(arr.metadata.chunk_grid.chunk_shape[0]) // int(arr.metadata.codecs[0].chunk_shape[0])
    index = raw[-(n_inner * 16 + 4):-4].view("<u8").reshape(n_inner, 2)
    edit(raw, index)
    tail = raw[-(n_inner * 16 + 4):]
    tail[-4:] = np.frombuffer(np.uint32(google_crc32c.value(tail[:-4].tobytes())).tobytes(), dtype="B")
    path.write_bytes(raw.tobytes())
    head = store.path / key / "commits" / f"{store.group(key).generation:012d}.json"
    doc = json.loads(head.read_text())
    doc["arrays"][name]["chunks"]["0"][1:] = [identity(raw.tobytes()), int(raw.size)]
    head.write_text(json.dumps(doc))


def _drop_inner_1(raw, index):
    index[1] = 2**64 - 1


def test_an_absent_inner_chunk_of_a_committed_shard_reads_as_fill_values(copy):
    # Zarr leaves out inner chunks of fill values only; a shard the manifest vouches for
    # is the one committed, so its absent inner chunk is fill values, not damage.
    store, key, seqs = copy
    for name in (mask_name(CLS2), "length"):
        _rewrite_shard(store, key, name, _drop_inner_1)
    store = Store(store.path)  # a new reader: arrays opened before were of the manifest as it was
    g = store.group(key)
    rows = _rows(g.n_rows)
    inside = (rows >= 4096) & (rows < 8192)
    np.testing.assert_array_equal(g.filled(CLS2, rows), ~inside)
    lengths = np.asarray([len(s) for s in seqs])[rows]
    lengths[inside] = 0
    np.testing.assert_array_equal(g._values("length", g.array("length"), rows), lengths)


def test_a_lost_shard_is_damage_even_where_the_rows_need_no_values(copy):
    store, key, _ = copy
    chunk_file(store, key, mask_name(CLS2), 0).unlink()
    with pytest.raises(DamagedChunkError) as err:
        store.group(key).filled(CLS2, np.array([3]))
    assert err.value.rows == (0, store.group(key).n_rows - 1) and err.value.what == "missing"
    assert err.value.array == f"{key}/{mask_name(CLS2)}"


def test_an_inner_chunk_that_does_not_decode_is_named(copy):
    store, key, _ = copy

    def garble(raw, index):
        offset, length = (int(x) for x in index[2])
        # Valid checksum, payload that is no Blosc frame of the chunk's size.
        raw[offset + 4:offset + 8] = np.frombuffer(np.uint32(7).tobytes(), dtype="B")
        raw[offset + length - 4:offset + length] = np.frombuffer(
            np.uint32(google_crc32c.value(raw[offset:offset + length - 4].tobytes())).tobytes(), dtype="B")

    _rewrite_shard(store, key, mask_name(CLS2), garble)
    store = Store(store.path)  # a new reader: arrays opened before were of the manifest as it was
    g = store.group(key)
    assert g.filled(CLS2, np.arange(8192)).all()  # the other inner chunks still read
    with pytest.raises(DamagedChunkError) as err:
        g.filled(CLS2, np.array([0, g.n_rows - 1]))
    assert err.value.rows == (8192, g.n_rows - 1) and "does not decode" in err.value.what
    (problem,) = [p for p in store.verify() if p.array == mask_name(CLS2)]
    assert (min(problem.rows), max(problem.rows)) == (8192, g.n_rows - 1) and problem.damage == "corrupted"


def test_a_checksum_mismatch_is_named_even_where_the_rows_need_no_values(copy):
    store, key, _ = copy
    path = chunk_file(store, key, mask_name(CLS2), 0)
    raw = bytearray(path.read_bytes())
    raw[20] ^= 0xFF  # inside inner chunk 0
    path.write_bytes(bytes(raw))
    g = store.group(key)
    # The shard is not the one committed (the manifest's checksum): none of it is read as data.
    for rows in ([4096, g.n_rows - 1], [5000, 3]):
        with pytest.raises(DamagedChunkError) as err:
            g.filled(CLS2, np.array(rows))
        assert err.value.rows == (0, g.n_rows - 1) and "checksum" in err.value.what


def test_a_few_rows_of_a_long_array_are_read_without_a_table_of_its_chunks(tmp_path):
    """An attention map's read touches one inner chunk of many: the chunks touched are
    found from the rows asked for, the same values and damage as a task's read."""
    import zarr

    from embedcache.store import access, layout

    group = zarr.open_group(store=access.open_store(tmp_path / "a.zarr"), mode="w", zarr_format=3)
    n = 10 * 4096
    arr = layout.create_array(group, "length", "int64", (), ("row",), rows=n)
    values = np.arange(n, dtype=np.int64) * 3 + 1
    values[4096:8192] = 0  # an inner chunk of fill values: never written
    arr[...] = values
    assert chunks.decodes_here(arr) and int(arr.metadata.codecs[0].chunk_shape[0]) == 4096

    def read(rows, needed):
        return chunks.read_rows(arr, np.asarray(rows), store="s", key="k", name="length",
                                needed=lambda r: np.full(len(r), needed))

    np.testing.assert_array_equal(read([n - 1, 5, n - 1], True), values[[n - 1, 5, n - 1]])
    np.testing.assert_array_equal(read([5000, 9000], False), [0, values[9000]])
    with pytest.raises(DamagedChunkError) as err:
        read([5000], True)
    assert err.value.rows == (4096, 8191) and err.value.what == "missing"
