"""The build pipeline: official pooling, reuse by digest, per-array fill, long-sequence
policies, inputs, and bad input that leaves the store's bytes as they were."""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import embedcache.engine as engine_mod
from conftest import FAST, short_seqs, tree_hash, TINY_V2, write_checkpoint
from embedcache import EmbeddingCache
from embedcache.build import build
from embedcache.checkpoints import load_checkpoint
from embedcache.request import BuildRequest, RunOptions
from embedcache.engine import Embedder
from embedcache.errors import (
    AlphabetError,
    CheckpointError,
    EmbedcacheError,
    InputError,
    SequenceTooLongError,
)
from embedcache.store import sequence_digest

pytestmark = pytest.mark.usefixtures("jax_compile_cache")

CKPT = TINY_V2 / "checkpoint"
def write_fasta(path: Path, records: dict[str, str], width: int = 60) -> Path:
    lines = []
    for name, seq in records.items():
        lines.append(f">{name}")
        lines.extend(seq[i : i + width] for i in range(0, len(seq), width))
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


# --------------------------------------------------------------------------------------


def test_matches_official_pooling_and_attention(tmp_path):
    """Stored CLS/mean embeddings and attention maps equal the official model's outputs."""
    golden = np.load(TINY_V2 / "golden.npz")
    seqs = [r["sequence"] for r in json.loads(str(golden["sequences_json"]))]
    heads = golden["attention_map_head_index_0based"]
    requested = [(int(layer), int(number)) for layer, number in golden["attention_maps_requested"]]
    attention = [(layer, int(h) + 1) for (layer, _), h in zip(requested, heads)]
    cache = EmbeddingCache(tmp_path / "c.zarr")
    report = cache.build(seqs, model=CKPT, layers=[1, 2], attention=attention, **FAST)
    assert report.computed == len(seqs) and report.new_rows == len(seqs)
    for layer in (1, 2):
        for pool in ("cls", "mean"):
            np.testing.assert_allclose(cache.embeddings(seqs, layer=layer, pool=pool),
                                       golden[f"{pool}_embeddings_{layer}"], atol=1e-4, rtol=1e-4)
    group = cache.group()
    index = group.index([sequence_digest(s) for s in seqs])
    for (layer, number), (_, head) in zip(requested, attention):
        for i, seq in enumerate(seqs):
            want = golden[f"attention_map_layer_{layer}_number_{number}__s{i}"]
            got = cache.attention(seq, layer=layer, head=head)
            assert got.shape == want.shape == (golden["n_real_tokens"][i],) * 2
            np.testing.assert_allclose(got, want, atol=1e-5)
            full = group.read(f"attention_{layer}_{head}", [index[sequence_digest(seq)]])[0]
            assert full.shape == (64, 64)
            n = got.shape[0]
            assert not full[n:].any() and not full[:, n:].any()  # zeros past the row's tokens
    assert list(group.row_array("n_tokens")[[index[sequence_digest(s)] for s in seqs]]) == list(golden["n_real_tokens"])


def test_reuse_across_tasks_and_fully_cached_rebuild(tmp_path, monkeypatch):
    task_a = short_seqs(32, seed=1)
    task_b = task_a[16:] + short_seqs(16, seed=2)
    cache = EmbeddingCache(tmp_path / "c.zarr")
    first = cache.build(task_a, model=CKPT, layers=[2], pools=["cls"], **FAST)
    assert (first.computed, first.reused, first.new_rows) == (32, 0, 32)

    second = cache.build(task_b + task_b[:3], model=CKPT, layers=[2], pools=["cls"], **FAST)
    assert (second.records, second.unique) == (35, 32)
    assert (second.computed, second.reused, second.new_rows) == (16, 16, 16)
    assert second.arrays == {"layer_2_cls": {"computed": 16, "reused": 16}}
    assert cache.group().n_rows == 48

    # Fully cached: the model never runs and not a byte of the store changes.
    def no_model(*args, **kwargs):
        raise AssertionError("the model ran on a fully cached input")

    monkeypatch.setattr(engine_mod, "Embedder", no_model)
    before = tree_hash(cache.path)
    third = cache.build(task_b, model=CKPT, layers=[2], pools=["cls"], **FAST)
    assert (third.computed, third.reused, third.new_rows) == (0, 32, 0)
    assert tree_hash(cache.path) == before


def test_new_layer_computes_only_that_for_rows_lacking_it(tmp_path, monkeypatch):
    seqs = short_seqs(32, seed=3)
    cache = EmbeddingCache(tmp_path / "c.zarr")
    cache.build(seqs, model=CKPT, layers=[2], pools=["cls"], **FAST)
    key = cache.group().key
    kept = {name: tree_hash(cache.path / key / name) for name in ("layer_2_cls", "digest", "sequence")}

    asked = []
    monkeypatch.setattr(engine_mod, "Embedder", lambda *a, outputs, **kw: asked.append(tuple(o.name for o in outputs))
                        or Embedder(*a, outputs=outputs, **kw))
    report = cache.build(seqs[:8], model=CKPT, layers=[1], pools=["mean"], **FAST)
    assert asked == [("layer_1_mean",)]
    assert report.arrays == {"layer_1_mean": {"computed": 8, "reused": 0}} and report.new_rows == 0
    assert {name: tree_hash(cache.path / key / name) for name in kept} == kept  # not rewritten
    group = cache.group()
    assert group.fill_counts() == {"layer_2_cls": 32, "layer_1_mean": 8}

    asked.clear()
    report = cache.build(seqs, model=CKPT, layers=[1, 2], pools=["cls", "mean"], **FAST)
    assert sorted(asked) == sorted([("layer_1_cls", "layer_2_mean"),
                                    ("layer_1_cls", "layer_1_mean", "layer_2_mean")])
    assert report.arrays["layer_2_cls"] == {"computed": 0, "reused": 32}
    assert report.arrays["layer_1_mean"] == {"computed": 24, "reused": 8}

    # Filling arrays piecemeal gives the same values as one build from scratch.
    fresh = EmbeddingCache(tmp_path / "fresh.zarr")
    fresh.build(seqs, model=CKPT, layers=[1, 2], pools=["cls", "mean"], **FAST)
    for layer in (1, 2):
        for pool in ("cls", "mean"):
            np.testing.assert_allclose(cache.embeddings(seqs, layer=layer, pool=pool),
                                       fresh.embeddings(seqs, layer=layer, pool=pool), atol=1e-5)


def test_inputs_of_every_format_share_rows(tmp_path):
    seqs = short_seqs(6, seed=4)
    genome = "".join(seqs)
    write_fasta(tmp_path / "genome.fa", {"chr1": genome})
    fa = write_fasta(tmp_path / "a.fa.gz", {f"s{i}": s.lower() for i, s in enumerate(seqs[:3])}, width=7)
    csv = tmp_path / "b.csv"
    pd.DataFrame({"name": ["x", "y"], "sequence": seqs[2:4], "label": [0, 1]}).to_csv(csv, index=False)
    pq = tmp_path / "c.parquet"
    pd.DataFrame({"sequence": [seqs[4], seqs[0]]}).to_parquet(pq)
    bed = tmp_path / "d.bed"
    start = len(seqs[0])
    bed.write_text(f"chr1\t{start}\t{start + len(seqs[1])}\tplus\t0\t+\n"
                   f"chr1\t{start}\t{start + len(seqs[1])}\tminus\t0\t-\n")
    cache = EmbeddingCache(tmp_path / "c.zarr")
    report = cache.build([fa, csv, pq, bed], model=CKPT, layers=[2], reference=tmp_path / "genome.fa", **FAST)
    from embedcache.sequences.alphabet import reverse_complement

    expected = set(seqs[:5]) | {reverse_complement(seqs[1])}
    assert report.records == 9 and report.unique == len(expected) == report.computed
    assert set(cache.group().row_array("sequence").tolist()) == expected


def test_long_error_names_the_record_and_the_ways_out(tmp_path):
    fa = write_fasta(tmp_path / "long.fa", {"ok": "ACGT" * 10, "chr7_enhancer": "ACGTAC" * 70})
    with pytest.raises(SequenceTooLongError) as err:
        EmbeddingCache(tmp_path / "c.zarr").build(fa, model=CKPT, layers=[2], **FAST)
    msg = str(err.value)
    for part in ("long.fa", "chr7_enhancer", "record #2", "71 tokens", "64", "--long truncate",
                 "--long tile", "--max-tokens"):
        assert part in msg, part
    assert not (tmp_path / "c.zarr").exists()


def test_long_truncate_embeds_the_prefix(tmp_path):
    long_seq = short_seqs(1, seed=5)[0] * 10  # hundreds of bases, over 64 tokens
    cache = EmbeddingCache(tmp_path / "c.zarr")
    report = cache.build([long_seq], model=CKPT, layers=[2], long="truncate", **FAST)
    assert report.truncated == 1
    prefix = long_seq[: 63 * 6]  # CLS + 63 six-mers = 64 tokens
    ref = EmbeddingCache(tmp_path / "ref.zarr")
    ref.build([prefix], model=CKPT, layers=[2], **FAST)
    for pool in ("cls", "mean"):
        np.testing.assert_allclose(cache.embeddings([long_seq], layer=2, pool=pool),
                                   ref.embeddings([prefix], layer=2, pool=pool), atol=1e-5)
    group = cache.group()
    assert group.row_array("n_tokens").tolist() == [64] and group.row_array("sequence").tolist() == [long_seq]


def test_long_tile_averages_windows_weighted_by_tokens(tmp_path):
    long_seq = short_seqs(1, seed=6)[0] * 12
    cache = EmbeddingCache(tmp_path / "c.zarr")
    report = cache.build([long_seq], model=CKPT, layers=[2], long="tile", window_overlap=8, **FAST)
    assert report.tiled == 1
    ckpt = load_checkpoint(CKPT)
    tokens = ckpt.tokenizer().encode(long_seq)
    body = tokens[1:]
    starts = list(range(0, len(body) - 63, 55)) + [len(body) - 63]
    windows = [np.concatenate([tokens[:1], body[s : s + 63]]) for s in starts]
    assert len(windows) >= 2 and starts[-1] + 63 == len(body)
    engine = Embedder(ckpt, BuildRequest(layers=[2], pools=["cls", "mean"], max_tokens=64), run=RunOptions(batch_size=8))
    out = {}
    for batch in engine.embed(windows):
        for r, i in enumerate(batch.index):
            out[int(i)] = {p: batch.pooled[(2, p)][r] for p in ("cls", "mean")}
    for pool in ("cls", "mean"):
        want = np.mean([out[i][pool] for i in range(len(windows))], axis=0)  # all windows hold 63 tokens
        np.testing.assert_allclose(cache.embeddings([long_seq], layer=2, pool=pool)[0], want, atol=1e-5)
    group = cache.group()
    assert group.row_array("n_windows").tolist() == [len(windows)]
    assert group.row_array("n_tokens").tolist() == [len(tokens)]
    assert group.attrs["window_overlap"] == 8 and group.attrs["window_tokens"] == 63

    with pytest.raises(InputError, match="tile.*attention|attention.*tile"):
        cache.build([long_seq], model=CKPT, layers=[2], attention=[(1, 1)], long="tile", window_overlap=8, **FAST)


def test_policies_are_part_of_the_key(tmp_path):
    seqs = short_seqs(8, seed=7)
    cache = EmbeddingCache(tmp_path / "c.zarr")
    keys = set()
    for opts in ({}, {"long": "truncate"}, {"alphabet": "strict"}, {"store_dtype": "float16"}):
        keys.add(cache.build(seqs, model=CKPT, layers=[2], pools=["cls"], **FAST, **opts).model_key)
    assert len(keys) == 4 == len(cache.models())


def test_float16_store_halves_the_disk(tmp_path):
    seqs = short_seqs(400, seed=8)
    sizes, values = {}, {}
    for dtype in ("float32", "float16"):
        cache = EmbeddingCache(tmp_path / f"{dtype}.zarr")
        cache.build(seqs, model=CKPT, layers=[2], pools=["cls"], store_dtype=dtype, **FAST)
        group = cache.group()
        sizes[dtype] = sum(size for _, _, size in group.manifest.arrays["layer_2_cls"]["chunks"].values())
        values[dtype] = cache.embeddings(seqs, layer=2, pool="cls")
        assert group.array("layer_2_cls").dtype == np.dtype(dtype)
    assert sizes["float16"] <= 0.55 * sizes["float32"], sizes
    assert values["float16"].dtype == np.float32
    np.testing.assert_allclose(values["float16"], values["float32"], rtol=2e-3, atol=2e-3)


def test_progress_lines_without_a_terminal_and_quiet(tmp_path, capfd, monkeypatch):
    seqs = short_seqs(8, seed=9)
    EmbeddingCache(tmp_path / "a.zarr").build(seqs, model=CKPT, layers=[2], max_tokens=64, batch_size=4, quiet=True)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    # stderr is a pipe here, as in a batch job's log: plain lines, one per interval, and a summary.
    monkeypatch.setenv("EMBEDCACHE_PROGRESS_SECONDS", "0")
    EmbeddingCache(tmp_path / "b.zarr").build(seqs, model=CKPT, layers=[2], max_tokens=64, batch_size=4)
    out, err = capfd.readouterr()
    lines = err.splitlines()
    assert out == "" and "\x1b" not in err
    assert re.fullmatch(r"embedded [1-7]/8 sequences, [0-9.]+ seq/s, ETA [0-9:]+", lines[0]), lines
    assert lines[-1].startswith("embedded 8/8 sequences in ") and lines[-1].endswith("seq/s)")


def test_progress_bar_on_a_terminal():
    import os

    from embedcache.build.progress import Progress

    master, replica = os.openpty()
    with os.fdopen(replica, "w") as tty:
        bar = Progress(10, quiet=False, stream=tty)
        bar.advance(4, 200)
        bar.close()
    chunks = []
    while True:  # everything written before the terminal closed; EIO marks the end on Linux
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    shown = b"".join(chunks).decode(errors="replace")
    assert "4/10" in shown and "seq/s" in shown and "tok/s" in shown and "ETA" in shown


# --------------------------------------------------------------------------------------
# Bad input: a clear error, and the store's bytes as they were
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("built") / "c.zarr"
    EmbeddingCache(path).build(short_seqs(16, seed=10), model=CKPT, layers=[2], **FAST)
    return path


def _bad_inputs(tmp: Path) -> dict:
    ok = short_seqs(3, seed=11)
    cases = {}
    cases["empty_record"] = (write_fasta(tmp / "empty.fa", {"a": ok[0], "b": "", "c": ok[1]}),
                             {}, InputError, ["empty.fa", "b"])
    cases["too_long"] = (write_fasta(tmp / "long.fa", {"a": ok[0], "huge": "ACGTAC" * 80}),
                         {}, SequenceTooLongError, ["long.fa", "huge", "--long"])
    (tmp / "broken.fa.gz").write_bytes(gzip.compress(b">a\nACGTACGT\n" * 50)[:-30])
    cases["corrupt_file"] = (tmp / "broken.fa.gz", {}, InputError, ["broken.fa.gz"])
    (tmp / "nocol.csv").write_text("id,seq\nx,ACGT\n")
    cases["no_sequence_column"] = (tmp / "nocol.csv", {}, InputError, ["nocol.csv", "sequence"])
    cases["strict_alphabet"] = (write_fasta(tmp / "iupac.fa", {"a": ok[0], "amb": "ACGTRACGT"}),
                                {"alphabet": "strict"}, AlphabetError, ["iupac.fa", "amb", "iupac-to-n"])
    cases["late_bad_record"] = (write_fasta(tmp / "late.fa", {**{f"s{i}": s for i, s in enumerate(short_seqs(30, 12))},
                                                              "bad": "ACGU"}),
                                {"chunk_size": 7}, AlphabetError, ["late.fa", "bad"])
    return cases


@pytest.mark.parametrize("case", ["empty_record", "too_long", "corrupt_file", "no_sequence_column",
                                  "strict_alphabet", "late_bad_record"])
def test_bad_input_leaves_store_bytes_unchanged(tmp_path, built_store, case):
    store = tmp_path / "c.zarr"
    shutil.copytree(built_store, store)
    path, opts, error, parts = _bad_inputs(tmp_path)[case]
    before = tree_hash(store)
    with pytest.raises(error) as err:
        EmbeddingCache(store).build(path, model=CKPT, layers=[1, 2], **{**FAST, **opts})
    for part in parts:
        assert part in str(err.value), (part, str(err.value))
    assert tree_hash(store) == before
    # Nor is a new store left behind.
    with pytest.raises(EmbedcacheError):
        EmbeddingCache(tmp_path / "new.zarr").build(path, model=CKPT, layers=[2], **{**FAST, **opts})
    assert not (tmp_path / "new.zarr").exists()


def test_checkpoint_that_no_longer_matches_its_key_is_refused(tmp_path):
    ckpt_dir = tmp_path / "ckpt"
    shutil.copytree(CKPT, ckpt_dir)
    cache = EmbeddingCache(tmp_path / "c.zarr")
    seqs = short_seqs(8, seed=13)
    key = cache.build(seqs, model=ckpt_dir, layers=[2], **FAST).model_key
    assert cache.build(seqs, model=key, layers=[2], **FAST).reused == 8  # the key finds its checkpoint
    write_checkpoint(ckpt_dir, json.loads((TINY_V2 / "hyperparams.json").read_text()), seed=5)
    before = tree_hash(cache.path)
    with pytest.raises(CheckpointError) as err:
        cache.build(short_seqs(4, seed=14), model=key, layers=[1], **FAST)
    msg = str(err.value)
    assert key in msg and str(ckpt_dir) in msg and "--model PATH" in msg
    assert tree_hash(cache.path) == before


def test_bad_requests_are_refused_before_work(tmp_path):
    cache = EmbeddingCache(tmp_path / "c.zarr")
    seqs = short_seqs(2, seed=15)
    with pytest.raises(InputError, match="sequence #2 is empty"):
        cache.build([seqs[0], "", seqs[1]], model=CKPT, layers=[2], **FAST)
    with pytest.raises(InputError, match="all file paths or all DNA sequences"):
        cache.build([seqs[0], tmp_path / "x.fa"], model=CKPT, layers=[2], **FAST)
    with pytest.raises(InputError, match="layers 1..2"):
        cache.build(seqs, model=CKPT, layers=[3], **FAST)
    with pytest.raises(InputError, match="heads 1..4"):
        cache.build(seqs, model=CKPT, layers=[2], attention=[(1, 5)], **FAST)
    with pytest.raises(InputError, match="max-tokens 64 or less"):
        cache.build(seqs, model=CKPT, layers=[2], max_tokens=512, quiet=True)
    with pytest.raises(InputError, match="--pool 'max' is not one of: cls, mean"):
        cache.build(seqs, model=CKPT, layers=[2], pools=["max"], **FAST)
    with pytest.raises(InputError, match="--long 'wrap' is not one of: error, truncate, tile"):
        cache.build(seqs, model=CKPT, layers=[2], long="wrap", **FAST)
    # Option values are refused before the model is looked up (this one does not exist).
    for bad in ({"long": "wrap"}, {"dtype": "float64"}, {"alphabet": "rna"}, {"store_dtype": "int8"},
                {"pools": ["cls", "max"]}, {"layers": [], "attention": []}):
        with pytest.raises(InputError, match="is not one of|nothing to compute"):
            cache.build(seqs, model=str(tmp_path / "no-such-model"), **{"layers": [2], **bad})
    assert not cache.path.exists()


def test_a_build_settles_its_request_once(tmp_path, monkeypatch, tiny_v2_checkpoint):
    """The request is checked against the model once and handed to the engine as it is."""
    calls = []
    original = BuildRequest.for_model

    def counted(self, family):
        calls.append(self)
        return original(self, family)

    monkeypatch.setattr(BuildRequest, "for_model", counted)
    seqs = short_seqs(10, seed=4)
    build(tmp_path / "c.zarr", seqs, model=tiny_v2_checkpoint, layers=[1, 2], **FAST)
    assert len(calls) == 1


def test_unknown_build_keywords_are_named():
    with pytest.raises(TypeError, match="bogus"):
        build("unused.zarr", ["ACGT"], model="unused", bogus=1)
