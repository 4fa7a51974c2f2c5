"""The commit's own fast paths: shards encoded without Zarr, and new rows checked against
what other writers committed since the plan, not against the whole index."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.storage import MemoryStore

from embedcache.store import ModelSpec, Store, StoreWriting, pooled_name, recent, sequence_digest, shards
from embedcache.store.layout import array_meta

CASES = [("length", "int64"), ("n_tokens", "int32"), ("has_layer_1_cls", "bool"), ("digest", str)]


def _shard(name, dtype, rng):
    meta = array_meta(name, dtype, (), ("row",), rows=1, kind="row")
    step = int(meta["chunk_grid"]["configuration"]["chunk_shape"][0])
    meta["shape"] = [step]
    n = int(rng.integers(1, step))  # a last shard, partly filled
    if dtype is str:
        block = np.full(step, "", dtype=object)
        block[:n] = [f"{i:x}" * int(rng.integers(1, 9)) for i in range(n)]
    else:
        block = np.zeros(step, dtype=dtype)
        block[:n] = rng.integers(1, 100, n).astype(dtype)
    return meta, block


def _zarr_array(meta, raw: bytes | None):
    mem = MemoryStore()
    proto = default_buffer_prototype().buffer
    mem._store_dict["a/zarr.json"] = proto.from_bytes(json.dumps(meta).encode())
    if raw is not None:
        mem._store_dict["a/c/0"] = proto.from_bytes(raw)
    return zarr.open_array(store=mem, path="a", mode="r+", zarr_format=3)


@pytest.mark.parametrize("name,dtype", CASES)
def test_shards_encoded_here_are_what_zarr_writes_and_reads(name, dtype):
    rng = np.random.default_rng(3)
    meta, block = _shard(name, dtype, rng)
    assert shards.handles(meta)
    mine = shards.encode(meta, block)
    # Zarr reads the shard encoded here...
    assert (np.asarray(_zarr_array(meta, mine)[:], dtype=block.dtype) == block).all()
    # ...and writes the same bytes.
    arr = _zarr_array(meta, None)
    with zarr.config.set({"array.write_empty_chunks": True}):
        arr[:] = block
    theirs = arr.store._store_dict["a/c/0"].to_bytes()
    assert mine == theirs
    out = np.full_like(block, "" if dtype is str else 0)
    shards.decode(meta, np.frombuffer(theirs, dtype="B"), out)
    assert (out == block).all()


def test_a_shard_of_fill_values_is_not_stored_and_damage_does_not_decode():
    meta, block = _shard("length", "int64", np.random.default_rng(4))
    assert shards.encode(meta, np.zeros_like(block)) is None
    raw = bytearray(shards.encode(meta, block))
    raw[10] ^= 0xFF  # inside the first inner chunk: its CRC32C no longer matches
    with pytest.raises(ValueError, match="checksum"):
        shards.decode(meta, np.frombuffer(bytes(raw), dtype="B"), np.zeros_like(block))


def _writer(path, block=4):
    spec = ModelSpec(param_digest="7" * 64, max_tokens=64)
    w = StoreWriting(Store(path)).group(spec, {"model_name": "t"}, block_rows=block, commit_seconds=1e9)
    w.ensure_arrays([pooled_name(1, "cls")], feature_dim=3)
    return w


def _add(w, seqs, value):
    for s in seqs:
        w.add_new_row(sequence_digest(s), s, 3, 1, {pooled_name(1, "cls"): np.full(3, value, np.float32)})


@pytest.mark.parametrize("held", [recent.MAX_HELD, 2])
def test_rows_another_writer_committed_after_the_plan_are_not_stored_twice(tmp_path, monkeypatch, held):
    """Also when the other writers' rows outgrow what a writer holds (``held=2``): it then
    looks its new rows up in the index, as without a plan."""
    monkeypatch.setattr(recent, "MAX_HELD", held)
    path = tmp_path / "c.zarr"
    mine, other = _writer(path), _writer(path)
    mine.planned_on(mine.snapshot())  # both plan on the empty group
    other.planned_on(other.snapshot())
    seqs = [f"ACGT{'A' * i}" for i in range(12)]
    _add(other, seqs[4:8], 2.0)  # committed (block of 4) while ``mine`` was computing
    _add(mine, seqs[:12], 1.0)  # three commits: the second holds the other's rows
    mine.flush()
    other.flush()
    g = Store(path).group(mine.key)
    assert g.n_rows == 12 and sorted(g.digests().tolist()) == sorted(sequence_digest(s) for s in seqs)
    assert mine.rows_written == 8 and mine.rows_skipped == 4
    # The other's four rows read once, never this writer's own; past the limit, not held.
    assert mine._since.bytes_read == 4 * 24 and mine._since.usable == (held > 4)
    rows = g.rows_of([sequence_digest(s) for s in seqs[4:8]])
    assert (g.read(pooled_name(1, "cls"), rows) == 2.0).all()
    assert not g.verify()


def test_large_index_merges_are_compactions_swapped_in_after_the_commit(tmp_path, monkeypatch):
    from embedcache.store import compact, gc, index, write

    monkeypatch.setattr(index, "MERGE_UNDER_LOCK", 8)  # commits merge at most 8 entries under the lock
    merged_under_lock = []
    real_plan = index.plan_merge

    def plan_merge(*args, **kwargs):
        planned = real_plan(*args, **kwargs)
        merged_under_lock.append(planned[1])
        return planned

    monkeypatch.setattr(index, "plan_merge", plan_merge)
    path = tmp_path / "c.zarr"
    w = _writer(path)
    w.planned_on(w.snapshot())
    seqs = [f"ACGT{'C' * i}" for i in range(64)]
    _add(w, seqs, 1.0)
    w.flush()
    g = Store(path).group(w.key)
    assert all(sum(b - a for a, b in m) <= 8 for m in merged_under_lock)
    # The compactions ran: as few runs as the binary counter leaves (64 rows: one or two), not 16.
    assert len(g.runs) <= 2 and g.runs[0][0] == 0 and g.runs[-1][1] == 64
    np.testing.assert_array_equal(g.rows_of([sequence_digest(s) for s in seqs]), np.arange(64))
    assert not g.verify()

    # A compaction planned on a snapshot whose runs another writer has merged since: nothing swapped in.
    monkeypatch.setattr(write, "compact", lambda *args: 0)  # this writer leaves its compactions
    for i in range(64, 72):
        _add(w, [f"ACGT{'C' * i}"], 1.0)
        w.flush()
    stale = Store(path).group(w.key)
    assert index.next_compaction(stale.runs, least=8) is not None
    assert compact.compact(Store(path), w.key, 10.0) >= 1  # another writer's
    before = set(gc.leftovers(Store(path)).objects)
    assert compact.compact(Store(path), w.key, 10.0, stale) == 0
    assert set(gc.leftovers(Store(path)).objects) == before  # its merged run was deleted again
    g = Store(path).group(w.key)
    assert not g.verify() and g.n_rows == 72
