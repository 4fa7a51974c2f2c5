"""EmbeddingCache's reading API: order, duplicates, missing rows, model resolution, export."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

import embedcache.checkpoints
from conftest import TINY_V2
from embedcache import EmbeddingCache
from embedcache.store import sequence_digest
from embedcache.errors import AlphabetError, InputError, StoreError
from conftest import FAST, short_seqs

pytestmark = pytest.mark.usefixtures("jax_compile_cache")

CKPT = TINY_V2 / "checkpoint"


@pytest.fixture(scope="module")
def cache(tmp_path_factory, jax_compile_cache):
    cache = EmbeddingCache(tmp_path_factory.mktemp("cache") / "c.zarr")
    cache.build(short_seqs(24, seed=20), model=CKPT, layers=[1, 2], attention=[(1, 2)], **FAST)
    return cache


@pytest.fixture(scope="module")
def seqs():
    return short_seqs(24, seed=20)


def test_embeddings_in_caller_order_with_duplicates(cache, seqs):
    X = cache.embeddings(seqs, layer=2, pool="mean")
    assert X.shape == (24, 64) and X.dtype == np.float32
    order = [5, 0, 5, 23, 0]
    np.testing.assert_array_equal(cache.embeddings([seqs[i] for i in order], layer=2, pool="mean"), X[order])
    # Normalized like the build: case and ambiguity codes map to the same rows.
    np.testing.assert_array_equal(cache.embeddings([seqs[3].lower()], layer=2, pool="mean")[0], X[3])
    assert not np.allclose(cache.embeddings(seqs, layer=2, pool="cls"), X)
    assert cache.embeddings([], layer=2).shape == (0, 64)
    # The default layer is the model's last.
    np.testing.assert_array_equal(cache.embeddings(seqs[:2], pool="mean"), X[:2])


def test_missing_sequences_say_how_many_and_how_to_build(cache, seqs):
    with pytest.raises(StoreError) as err:
        cache.embeddings(seqs[:3] + short_seqs(2, seed=99), layer=2, pool="cls")
    msg = str(err.value)
    assert "2 of 5 sequences are not in the cache" in msg and "sequence #4" in msg
    # In Python the advice is Python; the command line gets a command (cli_message).
    assert f"EmbeddingCache({str(cache.path)!r}).build(sequences, model=" in msg
    assert "layers=[2], pools=['cls']" in msg and "embedcache build" not in msg
    assert "--layers 2 --pool cls" in err.value.cli_message()
    with pytest.raises(StoreError, match="are in the cache .*but attention map 2:1 .*was never built.*attention=\\[\\(2, 1\\)\\]"):
        cache.attention(seqs[0], layer=2, head=1)


def test_attention_is_square_over_real_tokens(cache, seqs):
    tok = embedcache.checkpoints.load_checkpoint(CKPT).tokenizer()
    for s in seqs[:4]:
        A = cache.attention(s, layer=1, head=2)
        n = len(tok.encode(s))
        assert A.shape == (n, n)
        np.testing.assert_allclose(A.sum(axis=1), 1.0, atol=1e-5)


def test_models_lists_groups_and_info_counts_them(cache):
    (m,) = cache.models()
    assert m.rows == 24 and m.name == "checkpoint" and len(m.key) == 16
    assert m.arrays == ("attention_1_2", "layer_1_cls", "layer_1_mean", "layer_2_cls", "layer_2_mean")
    assert m.filled is None and m.disk_bytes is None  # listing reads no mask and sizes no file
    (m,) = cache.info()
    assert m.filled == {"attention_1_2": 24, "layer_1_cls": 24, "layer_1_mean": 24,
                           "layer_2_cls": 24, "layer_2_mean": 24}
    assert m.digest == embedcache.checkpoints.load_checkpoint(CKPT).digest
    assert m.max_tokens == 64 and m.long == "error" and m.disk_bytes > 0


def test_model_resolves_by_name_key_or_directory_without_weights(cache, seqs, monkeypatch):
    key = cache.models()[0].key
    want = cache.embeddings(seqs[:3], layer=2)

    def no_weights(*args, **kwargs):
        raise AssertionError("reading must not load weights")

    monkeypatch.setattr(embedcache.checkpoints, "load_checkpoint", no_weights)
    for model in (None, key, "checkpoint", CKPT, str(CKPT)):
        np.testing.assert_array_equal(cache.embeddings(seqs[:3], model=model, layer=2), want)
    with pytest.raises(StoreError, match="no model matching 'nope'.*checkpoint"):
        cache.embeddings(seqs[:3], model="nope", layer=2)


def test_ambiguous_model_lists_keys_unless_the_array_decides(tmp_path):
    cache = EmbeddingCache(tmp_path / "c.zarr")
    seqs = short_seqs(8, seed=21)
    k1 = cache.build(seqs, model=CKPT, layers=[2], pools=["cls"], **FAST).model_key
    k2 = cache.build(seqs, model=CKPT, layers=[1], pools=["cls"], long="truncate", **FAST).model_key
    # Only one group holds layer 1: it is chosen.
    assert cache.group("checkpoint", array="layer_1_cls").key == k2
    cache.embeddings(seqs, model="checkpoint", layer=1, pool="cls")
    cache.build(seqs, model=CKPT, layers=[1], pools=["cls"], **FAST)
    with pytest.raises(StoreError) as err:
        cache.embeddings(seqs, model="checkpoint", layer=1, pool="cls")
    assert k1 in str(err.value) and k2 in str(err.value) and "model=<key>" in str(err.value)
    np.testing.assert_allclose(cache.embeddings(seqs, model=k1, layer=1, pool="cls"),
                               cache.embeddings(seqs, model=k2, layer=1, pool="cls"))


def test_bad_reads(cache, tmp_path):
    with pytest.raises(AlphabetError, match="sequence #2: position 3 holds 'U'"):
        cache.embeddings(["ACGT", "ACUG"], layer=2)
    with pytest.raises(InputError, match="pool 'max' is not one of: cls, mean"):
        cache.embeddings(["ACGT"], pool="max")
    with pytest.raises(StoreError, match="embedcache build"):
        EmbeddingCache(tmp_path / "none.zarr").embeddings(["ACGT"])


def test_xarray_opens_a_built_group(cache, seqs):
    import warnings

    import xarray as xr  # the [xarray] extra

    key = cache.models()[0].key
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the README's line opens the group without a warning
        ds = xr.open_zarr(cache.group(key).zarr_store(), consolidated=False)  # the README's line
    assert ds.sizes["row"] == 24 and ds["layer_2_cls"].dims == ("row", "feature")
    assert ds["attention_1_2"].dims == ("row", "query", "key") and ds.attrs["model_name"] == "checkpoint"
    # Each row carries its address, the sequence digest, as a coordinate of the data arrays.
    assert "digest" in ds.coords and "digest" in ds["layer_2_cls"].coords
    row = cache.group().rows_of([sequence_digest(seqs[3])])[0]
    assert ds["layer_2_cls"].digest.values[row] == sequence_digest(seqs[3])
    np.testing.assert_array_equal(ds["layer_2_cls"].sel(row=row).values, cache.embeddings([seqs[3]], layer=2, pool="cls")[0])


@pytest.mark.parametrize("suffix", [".npz", ".parquet", ".h5"])
def test_export_in_file_order_with_ids(cache, seqs, tmp_path, suffix):
    order = [7, 2, 2, 19, 0]
    table = tmp_path / "task.csv"
    pd.DataFrame({"id": [f"r{i}" for i in range(len(order))], "sequence": [seqs[i] for i in order],
                  "label": [1, 0, 0, 1, 0]}).to_csv(table, index=False)
    out = cache.export(table, tmp_path / f"out{suffix}", layer=1, pool="mean")
    want = cache.embeddings([seqs[i] for i in order], layer=1, pool="mean")
    if suffix == ".npz":
        data = np.load(out)
        ids, X, labels = data["id"].tolist(), data["X"], data["label"].tolist()
    elif suffix == ".parquet":
        df = pd.read_parquet(out)
        ids, labels = df["id"].tolist(), df["label"].tolist()
        X = df[[f"f{j}" for j in range(64)]].to_numpy()
    else:
        with h5py.File(out) as f:
            ids = [x.decode() for x in f["id"][:]]
            X, labels = f["X"][:], f["label"][:].tolist()
    assert ids == [f"r{i}" for i in range(len(order))] and labels == [1, 0, 0, 1, 0]
    np.testing.assert_array_equal(X, want)
    sidecar = [out.name + ".json"] if out.suffix == ".npz" else []  # the npz's provenance
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["task.csv", out.name, *sidecar])  # no temporary left


def test_export_of_uncached_records_writes_nothing(cache, tmp_path):
    table = tmp_path / "task.csv"
    pd.DataFrame({"sequence": short_seqs(3, seed=98)}).to_csv(table, index=False)
    with pytest.raises(StoreError, match="3 of 3"):
        cache.export(table, tmp_path / "out.npz", layer=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["task.csv"]
    with pytest.raises(InputError, match="npz"):
        cache.export(table, tmp_path / "out.txt", layer=2)


def test_reading_never_imports_the_model_code(cache, seqs):
    import subprocess
    import sys

    code = ("import sys; from embedcache import EmbeddingCache; c = EmbeddingCache(sys.argv[1]); "
            "x = c.embeddings(sys.argv[2:], layer=2); c.models(); c.verify(); "
            "print(x.shape, sorted(m for m in ('jax', 'embedcache.families.nt.forward', 'embedcache.engine') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, str(cache.path), *seqs[:3]], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(3, 64) []"
