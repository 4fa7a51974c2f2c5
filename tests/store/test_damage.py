"""A damaged store never hands back fill values as data, names the damage, and heals.

A real store is built with the golden tiny checkpoint, copied, and damaged the way a disk
or a careless hand would: a chunk file deleted, 8 bytes flipped inside one (inner) chunk.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import TINY_V2
from embedcache import EmbeddingCache
from embedcache.errors import DamagedChunkError
from embedcache.store import Store
from test_store import chunk_file

pytestmark = pytest.mark.usefixtures("jax_compile_cache")

ROOT = Path(__file__).parents[2]
N = 300
BUILD = dict(model=TINY_V2 / "checkpoint", max_tokens=64, layers=[1, 2], attention=[(1, 1)], batch_size=16,
             quiet=True)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    d = tmp_path_factory.mktemp("damage")
    rng = np.random.default_rng(7)
    seqs = ["".join(rng.choice(list("ACGT"), size=int(rng.integers(60, 150)))) for _ in range(N)]
    labels = rng.integers(0, 2, N)
    pd.DataFrame({"id": [f"s{i}" for i in range(N)], "sequence": seqs, "label": labels}).to_csv(
        d / "task.csv", index=False)
    EmbeddingCache(d / "clean.zarr").build(d / "task.csv", **BUILD)
    return d


def _copy(clean: Path, tmp_path: Path) -> tuple[Path, str]:
    shutil.copytree(clean / "clean.zarr", tmp_path / "cache.zarr")
    return tmp_path / "cache.zarr", Store(tmp_path / "cache.zarr").keys()[0]


def _flip(path: Path, at: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[at:at + 8] = bytes(b ^ 0xFF for b in raw[at:at + 8])
    path.write_bytes(bytes(raw))


def _damage(cache: Path, key: str, kind: str) -> tuple[str, tuple[int, int]]:
    """Damage one chunk; the array and the rows (first, last) it held."""
    store = Store(cache)
    if kind == "pooled deleted":
        chunk_file(store, key, "layer_2_cls").unlink()
        return "layer_2_cls", (0, N - 1)
    if kind == "pooled corrupted":
        _flip(chunk_file(store, key, "layer_2_cls"), 4000)
        return "layer_2_cls", (0, N - 1)
    if kind == "attention deleted":  # shards of 128 rows, inner chunks of 16
        chunk_file(store, key, "attention_1_1", 1).unlink()
        return "attention_1_1", (128, 255)
    if kind == "attention corrupted":  # inside the first inner chunk of the second shard
        _flip(chunk_file(store, key, "attention_1_1", 1), 2000)
        # Not the shard committed (the manifest's checksum): none of it is data, not even its sound inner chunks.
        return "attention_1_1", (128, 255)
    if kind == "mask corrupted":
        _flip(chunk_file(store, key, "has_layer_2_cls"), 10)
        return "has_layer_2_cls", (0, N - 1)
    if kind == "row array corrupted":
        _flip(chunk_file(store, key, "n_tokens"), 10)
        return "n_tokens", (0, N - 1)
    raise AssertionError(kind)


def _sequences(clean: Path) -> list[str]:
    return pd.read_csv(clean / "task.csv")["sequence"].tolist()


@pytest.mark.parametrize("kind", ["pooled deleted", "pooled corrupted", "mask corrupted"])
def test_embeddings_never_read_lost_chunks_as_data(clean, tmp_path, kind):
    cache, key = _copy(clean, tmp_path)
    array, (lo, hi) = _damage(cache, key, kind)
    with pytest.raises(DamagedChunkError) as err:
        EmbeddingCache(cache).embeddings(_sequences(clean), layer=2, pool="cls")
    msg = str(err.value)
    assert err.value.array == f"{key}/{array}" and err.value.rows == (lo, hi)
    assert f"rows {lo}-{hi} of array {key}/{array}" in msg
    assert f"embedcache verify {cache} --repair" in msg and "embedcache build" in msg
    # Another layer, stored in other chunks, still reads.
    assert EmbeddingCache(cache).embeddings(_sequences(clean)[:5], layer=1).shape == (5, 64)


@pytest.mark.parametrize("kind", ["attention deleted", "attention corrupted", "row array corrupted"])
def test_attention_never_reads_lost_chunks_as_data(clean, tmp_path, kind):
    cache, key = _copy(clean, tmp_path)
    array, (lo, hi) = _damage(cache, key, kind)
    seqs = Store(clean / "clean.zarr").groups()[0].row_array("sequence").tolist()  # in row order
    with pytest.raises(DamagedChunkError) as err:
        EmbeddingCache(cache).attention(seqs[lo], layer=1, head=1)
    assert err.value.array == f"{key}/{array}" and err.value.rows == (lo, hi)
    if kind.startswith("attention"):
        # The rows of the other shards still read, and equal.
        good = EmbeddingCache(cache).attention(seqs[lo - 1], layer=1, head=1)
        np.testing.assert_array_equal(good, EmbeddingCache(clean / "clean.zarr").attention(seqs[lo - 1], layer=1,
                                                                                          head=1))


def test_verify_names_the_rows_and_object_of_the_damaged_chunk(clean, tmp_path):
    cache, key = _copy(clean, tmp_path)
    path = chunk_file(Store(cache), key, "attention_1_1", 1)
    _damage(cache, key, "attention corrupted")
    problems = Store(cache).verify()
    assert [(p.array, p.rows[0], p.rows[-1], p.damage) for p in problems] == [
        ("attention_1_1", 128, 255, "foreign")]
    assert "(rows 128-255)" in str(problems[0]) and path.relative_to(cache).as_posix() in str(problems[0])


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("kind", ["pooled deleted", "pooled corrupted"])
def test_export_and_classify_fit_exit_2_naming_the_damage(clean, tmp_path, kind):
    cache, key = _copy(clean, tmp_path)
    _damage(cache, key, kind)
    runs = [
        _cli("cli.embedcache_app", "export", "--cache", cache, "--input", clean / "task.csv",
             "--out", tmp_path / "x.npz", "--layer", "2", "--pool", "cls"),
        _cli("cli.classify_app", "fit", "--probe", "logistic", "--data", clean / "task.csv", "--cache", cache,
             "--layer", "2", "--pool", "cls", "--out", tmp_path / "run"),
    ]
    for run in runs:
        assert run.returncode == 2, run.stderr
        assert f"rows 0-{N - 1} of array {key}/layer_2_cls" in run.stderr and "--repair" in run.stderr
        assert "Traceback" not in run.stderr
    assert not (tmp_path / "x.npz").exists()


def _content(path: Path) -> dict:
    group = EmbeddingCache(path).group()
    digests = group.digests().tolist()
    out = {}
    for name in group.array_names():
        filled = group.filled(name)
        values = group.read(name, np.flatnonzero(filled))
        out[name] = dict(zip(np.asarray(digests)[filled].tolist(), values))
    return out


def test_repair_then_build_recomputes_exactly_the_damaged_rows(clean, tmp_path):
    cache, key = _copy(clean, tmp_path)
    _damage(cache, key, "pooled deleted")
    _damage(cache, key, "attention corrupted")
    _flip(chunk_file(Store(cache), key, "has_layer_1_mean"), 10)
    run = _cli("cli.embedcache_app", "verify", cache, "--repair")
    assert run.returncode == 0, run.stderr
    assert f"{N} row(s) of {key}/layer_2_cls" in run.stdout and f"128 row(s) of {key}/attention_1_1" in run.stdout
    assert f"{N} row(s) of {key}/layer_1_mean" in run.stdout
    assert Store(cache).verify() == []
    group = Store(cache).group(key)
    assert group.filled("attention_1_1").sum() == N - 128 and not group.filled("layer_2_cls").any()
    report = EmbeddingCache(cache).build(clean / "task.csv", **BUILD)
    assert report.new_rows == 0 and report.computed == N  # every row lacked layer_2_cls
    assert report.arrays["attention_1_1"]["computed"] == 128
    assert report.arrays["layer_2_cls"] == report.arrays["layer_1_mean"] == {"computed": N, "reused": 0}
    assert report.arrays["layer_1_cls"] == report.arrays["layer_2_mean"] == {"computed": 0, "reused": N}
    healed, reference = _content(cache), _content(clean / "clean.zarr")
    assert healed.keys() == reference.keys()
    for name in reference:
        assert healed[name].keys() == reference[name].keys(), name
        for d, v in reference[name].items():
            np.testing.assert_array_equal(healed[name][d], v, err_msg=name)
    assert Store(cache).verify() == []
