"""The fast read path of a task's features: plain chunks copied as slices or gathered,
arrays opened once per commit, index runs read as checked plain chunks."""

from __future__ import annotations

import numpy as np
import pytest

from embedcache.errors import DamagedChunkError
from embedcache.store import Store, StoreWriting, sequence_digest
from embedcache.store.chunks import unique_rows

from test_store import CLS2, _seqs, _values, _write, chunk_file


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A group of 5,000 rows: pooled chunks hold 4,096, so reads cross a chunk boundary."""
    store = Store(tmp_path_factory.mktemp("reads") / "c.zarr")
    seqs = list(dict.fromkeys(_seqs(5000, seed=3)))
    key = _write(store, seqs, [CLS2])
    g = store.group(key)
    assert g.n_rows == len(seqs) and g.array(CLS2).metadata.chunk_grid.chunk_shape[0] < g.n_rows
    return g, seqs, np.stack([_values(s, CLS2) for s in seqs])


def test_a_task_in_build_order_with_repeats_reads_its_values(big):
    g, seqs, expected = big
    # Rows in build order with some repeated in between: runs of consecutive rows, copied as slices.
    rows = np.arange(g.n_rows)
    rows = np.insert(rows, [10, 4095, 4096, 4097, len(rows)], [3, 4095, 0, 4999 % g.n_rows, 7])
    np.testing.assert_array_equal(g.read(CLS2, rows), expected[rows])


@pytest.mark.parametrize("order", ["shuffled", "reversed", "sparse"])
def test_scattered_rows_read_their_values(big, order):
    g, seqs, expected = big
    rng = np.random.default_rng(0)
    rows = {"shuffled": rng.permutation(g.n_rows), "reversed": np.arange(g.n_rows)[::-1],
            "sparse": rng.choice(g.n_rows, 30)}[order]
    np.testing.assert_array_equal(g.read(CLS2, rows), expected[rows])
    keys = [sequence_digest(seqs[r]) for r in rows]
    np.testing.assert_array_equal(g.rows_of(keys), rows)


def test_a_commit_after_a_read_is_seen_by_the_next_snapshot(tmp_path):
    store = Store(tmp_path / "c.zarr")
    first, more = _seqs(30, seed=1), _seqs(40, seed=2)
    key = _write(store, first, [CLS2])
    old = store.group(key)
    np.testing.assert_array_equal(old.read(CLS2, np.arange(old.n_rows))[0], _values(first[0], CLS2))
    _write(store, more, [CLS2])  # same Store object: its opened arrays belong to the old commit
    new = store.group(key)
    everything = list(dict.fromkeys(first + more))
    assert new.n_rows == len(everything) > old.n_rows
    np.testing.assert_array_equal(new.read(CLS2, np.arange(new.n_rows)),
                                  np.stack([_values(s, CLS2) for s in everything]))
    np.testing.assert_array_equal(new.rows_of([sequence_digest(s) for s in everything]), np.arange(new.n_rows))
    # The old snapshot still reads its own rows only.
    assert (old.rows_of([sequence_digest(more[-1])]) == -1).all()


def test_a_damaged_index_chunk_is_named_not_read_as_absent(tmp_path):
    store = Store(tmp_path / "c.zarr")
    seqs = _seqs(50, seed=4)
    key = _write(store, seqs, [CLS2])
    g = store.group(key)
    (a, b), = g.runs
    chunk = chunk_file(store, key, f"index/run_{a}_{b}")
    data = bytearray(chunk.read_bytes())
    data[len(data) // 3] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with pytest.raises(DamagedChunkError) as err:
        g.rows_of([sequence_digest(seqs[0])])
    assert f"{key}/index/run_{a}_{b}" in str(err.value) and "checksum" in str(err.value)


@pytest.mark.parametrize("rows", [[3, 3, 1, 7], [10, 11, 12], [5, 10**6, 5, 40], list(range(99, -1, -2))])
def test_unique_matches_numpy(rows):
    rows = np.asarray(rows, dtype=np.int64)
    unique, inverse = unique_rows(rows)
    expected_unique, expected_inverse = np.unique(rows, return_inverse=True)
    np.testing.assert_array_equal(unique, expected_unique)
    np.testing.assert_array_equal(inverse, expected_inverse.reshape(-1))


@pytest.mark.parametrize("window", [1, 1 << 30])
def test_an_object_store_read_in_windows_reads_the_same(big, monkeypatch, window):
    """A local store reads one chunk at a time; an object store a window of chunks at once."""
    from embedcache.store import chunks

    _, seqs, expected = big
    store = Store(f"memory://reads-{window}/c.zarr")
    g = store.group(_write(store, seqs, [CLS2]))
    assert not chunks.reads_into(g.array(CLS2).store_path.store)
    monkeypatch.setattr(chunks, "WINDOW_BYTES", window)  # 1: one chunk per window
    for rows in (np.random.default_rng(1).permutation(g.n_rows), np.arange(g.n_rows)):
        np.testing.assert_array_equal(g.read(CLS2, rows), expected[rows])
        np.testing.assert_array_equal(g.rows_of([sequence_digest(seqs[r]) for r in rows]), rows)


def test_a_local_read_reuses_one_buffer_and_names_a_damaged_chunk(big, tmp_path):
    import shutil

    g, seqs, expected = big
    shutil.copytree(g.store.path, tmp_path / "c.zarr")
    g = Store(tmp_path / "c.zarr").group(g.key)
    from embedcache.store import chunks

    arr = g.array(CLS2)
    assert chunks.reads_into(arr.store_path.store)
    rows = np.random.default_rng(2).permutation(g.n_rows)
    np.testing.assert_array_equal(g.read(CLS2, rows), expected[rows])
    chunk = chunk_file(g.store, g.key, CLS2, 1)
    data = bytearray(chunk.read_bytes())
    data[100] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with pytest.raises(DamagedChunkError) as err:
        g.read(CLS2, rows)
    assert err.value.rows == (4096, g.n_rows - 1) and "checksum" in err.value.what
    np.testing.assert_array_equal(g.read(CLS2, rows[rows < 4096]), expected[rows[rows < 4096]])


def test_a_lookup_finds_keys_whose_first_word_spans_index_chunks(tmp_path):
    """Index chunks are read one at a time; a first word shared across a chunk boundary
    (about never with sha256, so made here) is searched in both chunks."""
    from embedcache.store import index, manifest
    from embedcache.store.cow import ChunkWriter
    from test_store import _spec

    n, edge = 2 * index.INDEX_CHUNK + 100, index.INDEX_CHUNK
    rng = np.random.default_rng(4)
    hi = np.sort(rng.integers(1, 2**63, n, dtype=np.uint64))
    hi[edge - 50:edge + 50] = hi[edge - 50]
    keys = np.column_stack([hi, rng.integers(0, 2**63, n, dtype=np.uint64)])
    rows = rng.permutation(n)
    store = Store(tmp_path / "g.zarr")
    key = StoreWriting(store).group(_spec(), {}).key
    g = store.group(key)
    target = g.manifest.successor()
    writer = ChunkWriter(store, key, g, target)
    index.add_run(writer, 0, n, index.sorted_run(keys, rows))
    writer.finish()
    target.runs = [[0, n]]
    assert manifest.publish(store, key, target)
    group = store.group(key)
    absent = np.array([[hi[edge], 2**63 + 5], [0, 1], [2**64 - 1, 0]], dtype=np.uint64)
    order = rng.permutation(n)
    found = index.lookup(group._open, [(0, n)], np.concatenate([keys[order], absent]))
    np.testing.assert_array_equal(found, np.concatenate([rows[order], [-1, -1, -1]]))
