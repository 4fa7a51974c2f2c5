"""The Zarr store on its own, with synthetic arrays: layout, versions, masks, commits, verify."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import zarr

from embedcache.store import layout
from embedcache.store.lock import commit_lock
from embedcache.errors import StoreError, StoreLockedError, StoreVersionError
from embedcache.store import (
    ENCODING,
    ENCODING_VERSION,
    ModelSpec,
    Store,
    StoreWriting,
    attention_name,
    mask_name,
    pooled_name,
    sequence_digest,
)

D, T = 8, 16
CLS2, MEAN2, ATT = pooled_name(2, "cls"), pooled_name(2, "mean"), attention_name(1, 3)


def _spec(**kw) -> ModelSpec:
    return ModelSpec(param_digest="ab" * 32, max_tokens=T, **kw)


def _seqs(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGT"), size=int(rng.integers(6, 40)))) for _ in range(n)]


def _values(seq: str, name: str) -> np.ndarray:
    """Deterministic fake model output for a sequence, so two stores can be compared."""
    rng = np.random.default_rng(int(sequence_digest(seq)[:8], 16) + len(name))
    if name.startswith("attention_"):
        n = min(len(seq) // 6 + 1, T)
        a = np.zeros((T, T), np.float32)
        a[:n, :n] = rng.random((n, n))
        return a
    return rng.standard_normal(D).astype(np.float32)


def _write(store: Store, seqs, names, spec=None, **writer_kw):
    spec = spec or _spec()
    with StoreWriting(store, timeout=writer_kw.pop("timeout", 600.0)) as w:
        gw = w.group(spec, {"model_name": "synthetic", "architecture": {"embed_dim": D}})
        for k, v in writer_kw.items():
            setattr(gw, k, v)
        gw.ensure_arrays(names, feature_dim=D)
        snap = gw.snapshot()
        index = snap.index([sequence_digest(s) for s in seqs])
        filled = {n: snap.filled(n) for n in names}
        for s in seqs:
            d = sequence_digest(s)
            if index.get(d) == -1:
                continue
            if d in index:
                lacking = [n for n in names if not filled[n][index[d]]]
                if lacking:
                    gw.add_old_row(index[d], {n: _values(s, n) for n in lacking})
            else:
                gw.add_new_row(d, s, len(s) // 6 + 1, 1, {n: _values(s, n) for n in names})
                index[d] = -1  # queued
        gw.flush()
    return spec.key


def chunk_file(store: Store, key: str, name: str, c: int = 0) -> Path:
    """The object the committed manifest names for chunk ``c`` of array ``name``."""
    return store.path / key / store.group(key).manifest.arrays[name]["chunks"][str(c)][0]


def commit_edit(store: Store, key: str, edits: dict) -> None:
    """Commit ``{array: (rows, values)}`` as a writer would, bypassing its checks: a store
    whose committed contents are wrong though every chunk is sound."""
    from embedcache.store import manifest
    from embedcache.store.cow import ChunkWriter

    g = store.group(key)
    target = g.manifest.successor()
    writer = ChunkWriter(store, key, g, target)
    for name, (rows, values) in edits.items():
        writer.write(name, np.asarray(rows), values)
    writer.finish()
    assert manifest.publish(store, key, target)


def _tree_hash(path: Path) -> dict:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def test_layout_encoding_dimensions_and_sharding(tmp_path):
    store = Store(tmp_path / "c.zarr")
    seqs = _seqs(30)
    key = _write(store, seqs, [CLS2, ATT])
    root = zarr.open_group(str(store.path), mode="r")
    assert root.attrs["encoding"] == ENCODING and root.attrs["encoding_version"] == ENCODING_VERSION
    g = zarr.open_group(store=store.group(key).zarr_store(), mode="r")  # the committed state, as Zarr sees it
    assert g.attrs["encoding_version"] == ENCODING_VERSION and store.group(key).n_rows == 30
    assert g.attrs["model_name"] == "synthetic" and g.attrs["param_digest"] == "ab" * 32
    assert g.attrs["max_tokens"] == T and g.attrs["long"] == "error" and "zarr" in g.attrs["versions"] and g.attrs["created"]
    expected = {"digest", "sequence", "length", "n_tokens", "n_windows", CLS2, ATT, mask_name(CLS2), mask_name(ATT)}
    assert set(store.group(key).members()) == expected
    for name in expected:
        arr = g[name]
        assert arr.attrs["encoding"] == ENCODING and arr.attrs["encoding_version"] == ENCODING_VERSION
        assert arr.metadata.dimension_names[0] == "row" and arr.shape[0] == 30
        codecs = [c.to_dict()["name"] for c in arr.metadata.codecs]
        if name == CLS2:  # pooled rows: plain uncompressed chunks with a checksum, read at memory speed
            assert codecs == ["bytes", "crc32c"], codecs
        else:
            assert codecs == ["sharding_indexed"], (name, codecs)
    assert g[CLS2].metadata.dimension_names == ("row", "feature")
    assert g[ATT].metadata.dimension_names == ("row", "query", "key") and g[ATT].shape == (30, T, T)
    # Rows are packed: 30 rows of a row array live in one shard object, not one each.
    assert len(store.group(key).manifest.arrays["digest"]["chunks"]) == 1
    assert len([p for p in (store.path / key / "digest").rglob("*") if p.is_file()]) == 1
    assert list(g["digest"][:]) == [sequence_digest(s) for s in seqs]
    assert list(g["length"][:]) == [len(s) for s in seqs]


def test_xarray_opens_a_model_group(tmp_path):
    xr = pytest.importorskip("xarray")
    store = Store(tmp_path / "c.zarr")
    seqs = _seqs(12)
    key = _write(store, seqs, [CLS2, ATT])
    ds = xr.open_zarr(store.group(key).zarr_store(), consolidated=False)  # the README's line
    assert ds.sizes["row"] == 12 and ds.sizes["feature"] == D and ds.sizes["query"] == T
    np.testing.assert_array_equal(ds[CLS2].values, np.stack([_values(s, CLS2) for s in seqs]))
    assert ds.attrs["model_name"] == "synthetic"
    assert [str(x) for x in ds["sequence"].values] == seqs


def test_model_key_depends_on_outputs_not_names():
    base = _spec()
    assert len(base.key) == 16 and base.key == _spec().key
    variants = [_spec(alphabet="strict"), _spec(long="truncate"), _spec(long="tile", window_overlap=4),
                _spec(dtype="bfloat16"), _spec(store_dtype="float16"),
                ModelSpec(param_digest="cd" * 32, max_tokens=T), ModelSpec(param_digest="ab" * 32, max_tokens=T + 1)]
    keys = {v.key for v in variants} | {base.key}
    assert len(keys) == len(variants) + 1
    assert _spec(long="tile", window_overlap=4).key != _spec(long="tile", window_overlap=5).key
    # An overlap means nothing outside tiling and must not split the key.
    assert _spec(long="error", window_overlap=3).key == base.key
    with pytest.raises(ValueError, match="long"):
        _spec(long="wrap")
    with pytest.raises(ValueError, match="window_overlap"):
        _spec(long="tile", window_overlap=T)


def test_rows_are_unique_and_read_in_any_order(tmp_path):
    store = Store(tmp_path / "c.zarr")
    seqs = _seqs(20)
    key = _write(store, seqs + seqs[:5], [CLS2])  # duplicates within one write
    g = store.group(key)
    assert g.n_rows == 20
    idx = g.index([sequence_digest(s) for s in seqs])
    rows = [idx[sequence_digest(s)] for s in [seqs[3], seqs[0], seqs[3]]]
    got = g.read(CLS2, rows)
    np.testing.assert_array_equal(got, np.stack([_values(s, CLS2) for s in [seqs[3], seqs[0], seqs[3]]]))
    # Dense requests are read as one slice, sparse ones chunk by chunk: both in caller order.
    everything = g.read(CLS2, np.arange(20))
    np.testing.assert_array_equal(everything, np.stack([_values(s, CLS2) for s in seqs]))
    for request in ([19, 0, 19], [5, 4, 6, 5], list(range(19, -1, -1))):
        np.testing.assert_array_equal(g.read(CLS2, request), everything[request])


def test_new_array_fills_only_requested_rows_and_leaves_old_files(tmp_path):
    store = Store(tmp_path / "c.zarr")
    seqs = _seqs(40)
    key = _write(store, seqs, [CLS2])
    before = _tree_hash(store.path / key / CLS2)
    _write(store, seqs[:10], [MEAN2])
    g = store.group(key)
    assert g.n_rows == 40
    assert g.fill_counts() == {CLS2: 40, MEAN2: 10}
    filled = g.filled(MEAN2)
    idx = g.index([sequence_digest(s) for s in seqs])
    assert sorted(np.nonzero(filled)[0]) == sorted(idx[sequence_digest(s)] for s in seqs[:10])
    assert _tree_hash(store.path / key / CLS2) == before  # what was there is not rewritten
    np.testing.assert_array_equal(g.read(MEAN2, [idx[sequence_digest(seqs[4])]])[0], _values(seqs[4], MEAN2))


def test_appending_does_not_rewrite_full_chunks(tmp_path, monkeypatch):
    # Small chunks so a few hundred rows span several.
    monkeypatch.setattr(layout, "_POOLED_CHUNK_BYTES", 64 * D * 4)  # 64-row chunks
    store = Store(tmp_path / "c.zarr")
    seqs = _seqs(400, seed=1)
    key = _write(store, seqs[:130], [CLS2], block_rows=16)
    shard0 = chunk_file(store, key, CLS2, 0)
    stat0 = shard0.stat()
    _write(store, seqs[130:], [CLS2], block_rows=16)
    assert chunk_file(store, key, CLS2, 0) == shard0
    stat1 = shard0.stat()
    assert (stat0.st_ino, stat0.st_mtime_ns) == (stat1.st_ino, stat1.st_mtime_ns)
    g = store.group(key)
    shard = 64
    assert g.array(CLS2).metadata.chunk_grid.chunk_shape == (shard, D) and 130 > shard
    assert len(g.manifest.arrays[CLS2]["chunks"]) == -(-400 // shard)
    assert store.verify() == []

def test_uncommitted_rows_are_invisible_and_overwritten(tmp_path, monkeypatch):
    from embedcache.store import gc, manifest

    store = Store(tmp_path / "c.zarr")
    first, second = _seqs(10, seed=1), _seqs(10, seed=2)
    key = _write(store, first[:5], [CLS2, ATT])

    # A write killed just before its swap: its chunks and index run written, no manifest names them.
    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(manifest, "publish", crash)
    with pytest.raises(KeyboardInterrupt):
        _write(store, first[5:], [CLS2, ATT])
    monkeypatch.undo()
    g = store.group(key)
    assert g.n_rows == 5 and g.array(CLS2).shape[0] == 5
    assert g.index([sequence_digest(first[7])]) == {}
    assert store.verify() == []
    left = gc.leftovers(store).objects
    assert left and all(k.startswith(f"{key}/") for k in left)

    # The next writer asks only for another array: nothing of the killed write is seen.
    _write(store, second, [MEAN2])
    g = store.group(key)
    assert g.n_rows == 15
    new_rows = list(g.index([sequence_digest(s) for s in second]).values())
    assert not g.filled(CLS2)[new_rows].any() and not g.filled(ATT)[new_rows].any()
    assert g.filled(MEAN2)[new_rows].all()
    assert store.verify() == []
    # Leftovers are kept while young (a commit may be writing them), removed once old.
    assert gc.collect(store).objects == {}
    assert set(gc.collect(store, older_than=0).objects) >= set(left)
    assert gc.leftovers(store).objects == {} and store.verify() == []
    np.testing.assert_array_equal(g.read(MEAN2, new_rows), np.stack([_values(s, MEAN2) for s in second]))

def test_float16_halves_the_disk(tmp_path):
    seqs = _seqs(3000, seed=3)
    sizes = {}
    for dtype in ("float32", "float16"):
        store = Store(tmp_path / f"{dtype}.zarr")
        key = _write(store, seqs, [CLS2], spec=_spec(store_dtype=dtype))
        sizes[dtype] = sum(p.stat().st_size for p in (store.path / key / CLS2).rglob("*") if p.is_file())
        g = store.group(key)
        got = g.read(CLS2, [0])
        assert got.dtype == np.float32
        np.testing.assert_allclose(got[0], _values(seqs[0], CLS2), rtol=1e-3)
    assert sizes["float16"] <= 0.55 * sizes["float32"], sizes


def test_unknown_versions_and_foreign_directories_are_refused(tmp_path):
    store = Store(tmp_path / "c.zarr")
    key = _write(store, _seqs(3), [CLS2])
    head = store.path / key / "commits" / f"{store.group(key).generation:012d}.json"
    doc = json.loads(head.read_text())
    doc["arrays"][CLS2]["meta"]["attributes"]["encoding_version"] = ENCODING_VERSION + 1
    head.write_text(json.dumps(doc))
    with pytest.raises(StoreVersionError, match="Upgrade embedcache"):
        store.group(key).read(CLS2, [0])
    g = zarr.open_group(str(store.path / key), mode="r+")
    g.attrs["encoding_version"] = ENCODING_VERSION + 1
    with pytest.raises(StoreVersionError, match=f"{key}.*version {ENCODING_VERSION + 1}"):
        store.group(key)
    zarr.open_group(str(store.path), mode="r+").attrs["encoding_version"] = 99
    with pytest.raises(StoreVersionError, match="pip install -U embedcache"):
        store.keys()
    with pytest.raises(StoreVersionError):
        with StoreWriting(store):
            pass

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("hello")
    with pytest.raises(StoreError, match="not an embedcache store"):
        Store(other).keys()
    with pytest.raises(StoreError, match="not an embedcache store"):
        with StoreWriting(Store(other)):
            pass
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
    with pytest.raises(StoreError, match="embedcache build"):
        Store(tmp_path / "missing.zarr").group("x")


_HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from embedcache.store import Store
    from embedcache.store.lock import commit_lock
    with commit_lock(Store(sys.argv[1]), 5):
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
""")


def test_a_commit_waits_for_the_lock_then_fails_and_readers_still_read(tmp_path):
    store = Store(tmp_path / "c.zarr")
    key = _write(store, _seqs(5), [CLS2])
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(store.path), "30"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        t0 = time.monotonic()
        with pytest.raises(StoreLockedError, match="another writer has been committing.*a rerun resumes"):
            _write(store, _seqs(3, seed=7), [CLS2], timeout=0.5)
        assert time.monotonic() - t0 >= 0.4  # it waited before failing
        g = store.group(key)  # readers never take the lock
        assert g.n_rows == 5 and g.read(CLS2, [0]).shape == (1, D)
    finally:
        holder.kill()
        holder.wait()
    # The operating system released the dead holder's lock: no stale lock.
    with commit_lock(store, 5):
        pass


def test_lock_file_does_not_disturb_zarr(tmp_path):
    store = Store(tmp_path / "c.zarr")
    key = _write(store, _seqs(3), [CLS2])
    assert (store.path / "embedcache.lock").exists()
    assert store.keys() == [key]


def _corrupt(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[len(data) // 3] ^= 0xFF
        path.write_bytes(bytes(data))
    else:
        path.write_bytes(bytes(data[: len(data) // 2]))


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_verify_finds_damaged_chunks(tmp_path, how):
    store = Store(tmp_path / "c.zarr")
    key = _write(store, _seqs(25), [CLS2])
    assert store.verify() == []
    _corrupt(chunk_file(store, key, CLS2), how)
    problems = store.verify()
    assert len(problems) == 1
    p = problems[0]
    assert p.array == CLS2 and p.rows == tuple(range(25)) and "checksum differs from the manifest" in p.what
    assert "rows 0-24" in str(p)


def test_verify_finds_missing_chunk(tmp_path):
    store = Store(tmp_path / "c.zarr")
    key = _write(store, _seqs(5), [CLS2])
    chunk_file(store, key, CLS2).unlink()
    (problem,) = store.verify()
    assert problem.array == CLS2 and "missing" in problem.what


def test_verify_finds_wrong_digest_and_nonfinite_values(tmp_path):
    store = Store(tmp_path / "c.zarr")
    seqs = _seqs(10)
    key = _write(store, seqs, [CLS2, ATT])
    vals = store.group(key).read(CLS2, np.arange(10))
    vals[2, 1] = np.nan
    vals[7, 0] = np.inf
    # the row's digest no longer matches its sequence
    commit_edit(store, key, {"sequence": ([4], np.array(["ACGTACGTTT"], dtype=object)), CLS2: (np.arange(10), vals)})
    problems = {(p.array, p.what): p.rows for p in store.verify()}
    assert problems[("digest", "digest does not match the row's sequence")] == (4,)
    assert problems[(CLS2, "NaN or inf values")] == (2, 7)
    assert len(problems) == 2


def test_verify_ignores_uncommitted_garbage(tmp_path):
    from embedcache.store import gc

    store = Store(tmp_path / "c.zarr")
    key = _write(store, _seqs(6), [CLS2])
    (store.path / key / CLS2 / "0.feedfacefeedface").write_bytes(b"\xff" * 100)  # as a killed writer leaves
    (store.path / key / "commits" / "notes").write_bytes(b"x")
    assert store.verify() == []
    assert store.group(key).n_rows == 6
    assert sorted(gc.leftovers(store).objects) == sorted([f"{key}/{CLS2}/0.feedfacefeedface", f"{key}/commits/notes"])

def test_models_info(tmp_path):
    store = Store(tmp_path / "c.zarr")
    key = _write(store, _seqs(7), [CLS2])
    _write(store, _seqs(3, seed=9), [ATT], spec=_spec(store_dtype="float16"))
    infos = {g.key: g.info() for g in store.groups()}
    assert len(infos) == 2
    assert infos[key].rows == 7 and infos[key].filled == {CLS2: 7}
    assert infos[key].disk_bytes > 0 and infos[key].name == "synthetic"
    assert json.dumps({k: i.to_dict() for k, i in infos.items()})  # JSON-ready


def test_verify_reports_damaged_metadata_instead_of_crashing(tmp_path):
    store = Store(tmp_path / "c.zarr")
    key = _write(store, _seqs(6), [CLS2, MEAN2])
    head = store.path / key / "commits" / f"{store.group(key).generation:012d}.json"
    head.write_text('{"generation": 3, "n_ro')
    (problem,) = store.verify()
    assert problem.key == key and "manifest" in problem.what and "unreadable" in problem.what
    head.unlink()  # the manifest before it is the committed state again
    assert store.verify() == []
    meta = store.path / key / "zarr.json"
    meta.write_bytes(meta.read_bytes()[:20])
    (problem,) = store.verify()
    assert problem.key == key and "unreadable metadata" in problem.what
    with pytest.raises(StoreError, match="damaged"):
        store.group(key)


def test_a_writer_killed_while_creating_a_group_is_repaired(tmp_path):
    store = Store(tmp_path / "c.zarr")
    key = _write(store, _seqs(4), [CLS2])
    # As if killed after writing a new group's attributes but before its first manifest.
    spec = _spec(long="truncate")
    (store.path / spec.key).mkdir()
    (store.path / spec.key / "zarr.json").write_text(json.dumps(
        {"zarr_format": 3, "node_type": "group", "attributes": {**layout.encoding_attrs(), **asdict(spec)}}))
    assert store.group(spec.key).n_rows == 0 and store.verify() == []
    seqs = _seqs(6, seed=5)
    _write(store, seqs, [CLS2, MEAN2])
    _write(store, seqs, [CLS2], spec=spec)
    assert store.group(key).fill_counts() == {CLS2: 4 + 6 - len(set(seqs) & set(_seqs(4))), MEAN2: 6}
    assert store.group(spec.key).n_rows == 6
    assert store.verify() == []

def test_rows_another_writer_committed_meanwhile_are_not_written_twice(tmp_path):
    store = Store(tmp_path / "c.zarr")
    seqs = _seqs(30, seed=11)
    spec = _spec()
    attrs = {"model_name": "synthetic", "architecture": {"embed_dim": D}}
    first = StoreWriting(store).group(spec, attrs)
    second = StoreWriting(store).group(spec, attrs)
    for w in (first, second):
        w.ensure_arrays([CLS2], feature_dim=D)
    # Both planned on the empty group, so both hold every row; the first commits rows 0-19.
    for s in seqs[:20]:
        first.add_new_row(sequence_digest(s), s, 2, 1, {CLS2: _values(s, CLS2)})
    for s in seqs[10:]:
        second.add_new_row(sequence_digest(s), s, 2, 1, {CLS2: _values(s, CLS2)})
    first.flush()
    # The second writer also fills MEAN2 for a row the first committed without it.
    second.ensure_arrays([MEAN2], feature_dim=D)
    second.add_old_row(3, {MEAN2: _values(seqs[3], MEAN2)})
    second.flush()
    assert (first.rows_written, second.rows_written, second.rows_skipped) == (20, 10, 10)
    g = store.group(spec.key)
    assert g.n_rows == 30 and sorted(g.digests()) == sorted(sequence_digest(s) for s in seqs)
    assert g.fill_counts() == {CLS2: 30, MEAN2: 1}
    rows = g.rows_of([sequence_digest(s) for s in seqs])
    np.testing.assert_array_equal(g.read(CLS2, rows), np.stack([_values(s, CLS2) for s in seqs]))
    assert store.verify() == []


def test_index_runs_merge_and_find_every_row(tmp_path):
    from embedcache.store import index

    store = Store(tmp_path / "c.zarr")
    seqs = _seqs(700, seed=12)
    key = _write(store, seqs, [CLS2], block_rows=37)
    g = store.group(key)
    assert sum(b - a for a, b in g.runs) == g.n_rows == len(set(seqs))
    assert 1 < len(g.runs) <= 1 + int(np.log2(g.n_rows))  # merged like a binary counter
    digests = g.digests().tolist()
    np.testing.assert_array_equal(g.rows_of(digests[::-1]), np.arange(g.n_rows)[::-1])
    assert (g.rows_of_keys(index.keys_of_sequences(["ACGTTTTTTTTTACG", seqs[5]])) == [-1, digests.index(
        sequence_digest(seqs[5]))]).all()
    np.testing.assert_array_equal(index.keys_of_sequences(seqs[:5]), index.keys_of_hex(
        [sequence_digest(s) for s in seqs[:5]]))
    # The manifest names exactly the runs it uses; merged runs' objects are deleted a few commits on.
    assert sorted(n for n in g.manifest.arrays if n.startswith("index/")) == sorted(
        index.run_path(a, b) for a, b in g.runs)
    on_disk = {p.relative_to(store.path / key).as_posix() for p in (store.path / key / "index").rglob("*")
               if p.is_file()}
    pending = {o for _, objs in g.manifest.garbage for o in objs}
    assert on_disk - pending == {o for n, e in g.manifest.arrays.items() if n.startswith("index/")
                                 for o, *_ in e["chunks"].values()}


def test_a_small_store_takes_at_most_twice_its_data(tmp_path):
    """300 rows of 12 layers x 2 pools, 512 wide, in three commits: plain chunks hold only
    the rows written (not a whole 4,096-row chunk each), and superseded copies go a commit later."""
    store = Store(tmp_path / "c.zarr")
    names = [pooled_name(layer, pool) for layer in range(1, 13) for pool in ("cls", "mean")]
    writer = StoreWriting(store).group(_spec(), {"model_name": "small"}, block_rows=100, commit_seconds=1e9)
    writer.ensure_arrays(names, feature_dim=512)
    rng = np.random.default_rng(0)
    for s in dict.fromkeys(_seqs(300, seed=30)):
        writer.add_new_row(sequence_digest(s), s, 3, 1, {n: rng.standard_normal(512).astype(np.float32) for n in names})
    writer.flush()
    g = store.group(writer.key)
    data = g.n_rows * len(names) * 512 * 4
    assert g.n_rows > 250 and store.disk_bytes() <= 2 * data, store.disk_bytes() / data
