"""Chunk identity: a stale, swapped or foreign chunk is damage, never data.

Every chunk read is checked against the size and CRC32C its commit's manifest recorded.
An older copy of a chunk put back under its name, two chunks of an array swapped, and a
layer-1 chunk copied into layer 2's place all raise ``DamagedChunkError``; ``verify``
names the chunk; ``verify --repair`` and the same build restore what one writer stores.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from embedcache.errors import DamagedChunkError
from embedcache.store import Store, layout, pooled_name, sequence_digest
from embedcache.store.repair import repair_store
from test_store import D, _seqs, _values, _write, chunk_file

CLS1 = pooled_name(1, "cls")
CLS2 = pooled_name(2, "mean")  # the test values of a name depend on its length: "layer_2_cls" would equal CLS1
N = 300


def _build(store: Store, seqs) -> str:
    return _write(store, seqs, [CLS1, CLS2])


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(layout, "_POOLED_CHUNK_BYTES", 64 * D * 4)  # 64-row pooled chunks: several per array


def _stale(store: Store, key: str, seqs) -> str:
    """Chunk 0 of CLS2 as an earlier commit wrote it, put back under the name committed now."""
    # An earlier state: rows 0-63 committed without CLS2 for half of them (so chunk 0 held zeros there).
    shutil.rmtree(store.path)
    key = _write(store, seqs[:64], [CLS1])
    _write(store, seqs[:32], [CLS2])
    old = chunk_file(store, key, CLS2, 0).read_bytes()
    _write(store, seqs, [CLS1, CLS2])  # fills the rest: chunk 0 rewritten, same size
    now = chunk_file(store, key, CLS2, 0)
    assert len(old) == now.stat().st_size and old != now.read_bytes()
    now.write_bytes(old)
    return CLS2


def _swapped(store: Store, key: str, seqs) -> str:
    a, b = chunk_file(store, key, CLS2, 0), chunk_file(store, key, CLS2, 1)
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)
    return CLS2


def _foreign(store: Store, key: str, seqs) -> str:
    chunk_file(store, key, CLS2, 0).write_bytes(chunk_file(store, key, CLS1, 0).read_bytes())
    return CLS2


@pytest.mark.parametrize("damage", [_stale, _swapped, _foreign], ids=["stale", "swapped", "foreign"])
def test_a_chunk_not_the_committed_one_is_damage_and_repair_heals_it(tmp_path, small_chunks, damage):
    store = Store(tmp_path / "c.zarr")
    seqs = list(dict.fromkeys(_seqs(N, seed=21)))
    key = _build(store, seqs)
    name = damage(store, key, seqs)
    g = store.group(key)
    rows = g.rows_of([sequence_digest(s) for s in seqs])
    with pytest.raises(DamagedChunkError) as err:
        g.read(name, rows)
    assert err.value.array == f"{key}/{name}" and "checksum" in err.value.what and err.value.rows[0] == 0
    # The chunks of the other layer, and the other chunks of this one, still read.
    np.testing.assert_array_equal(g.read(CLS1, rows), np.stack([_values(s, CLS1) for s in seqs]))
    problems = store.verify()
    assert problems and {p.array for p in problems} == {name} and {p.damage for p in problems} == {"foreign"}
    assert all(f"{key}/{name}/" in p.what and "not the one committed" in p.what for p in problems)

    report = repair_store(store)
    assert report.unfilled[f"{key}/{name}"] >= 64 and not report.unrepaired
    assert store.verify() == []
    _build(store, seqs)  # the same build: recomputes exactly the rows of the dropped chunks
    g = store.group(key)
    assert g.n_rows == len(seqs) and g.filled(name).all()
    np.testing.assert_array_equal(g.read(name, rows), np.stack([_values(s, name) for s in seqs]))
    assert store.verify() == []
