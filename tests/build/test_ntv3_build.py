"""NTv3 through the real build path: EmbeddingCache.build / embeddings / attention and the CLI.

Expected values come from the official outputs in tests/golden/ntv3_tiny* (per sequence, run
alone): a core layer's ``mean`` is the mean of its first ceil(n / 2**num_downsamples)
positions, ``final``'s the mean of its first n rows (n bases). Tolerances are the goldens':
atol 1e-4 + rtol 1e-4 for embeddings, atol 1e-5 for attention maps.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.embedcache_app import app
from cli.errors import run_app
from embedcache import EmbeddingCache
from embedcache.sequences.alphabet import normalize
from embedcache.errors import InputError, SequenceTooLongError
from embedcache.store import sequence_digest

GOLDEN = Path(__file__).parents[1] / "golden"
HEADS = (1, 2, 3, 4)
MAPS = [(layer, h) for layer in (1, 2) for h in HEADS]
BLOCK = 8  # 2**num_downsamples of both tiny models
QUICK = dict(max_tokens=320, quiet=True)


def _golden(case: str):
    g = np.load(GOLDEN / case / "golden.npz")
    seqs = [r["sequence"] for r in json.loads(str(g["sequences_json"]))]
    return g, seqs


def _check_against_golden(cache, g, seqs, suffix_of, species=None):
    for i, seq in enumerate(seqs):
        n = len(seq)
        t = -(-n // BLOCK)
        sfx = suffix_of(i)
        for layer in (1, 2):
            got = cache.embeddings([seq], layer=layer, pool="mean", species=species)[0]
            want = g[f"embeddings_{layer}{sfx}"][:t].mean(0)
            np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4, err_msg=f"input {i} layer {layer}")
        got = cache.embeddings([seq], layer="final", species=species)[0]
        np.testing.assert_allclose(got, g[f"embedding{sfx}"][:n].mean(0), atol=1e-4, rtol=1e-4,
                                   err_msg=f"input {i} final")
        for layer, head in MAPS:
            got = cache.attention(seq, layer=layer, head=head, species=species)
            want = g[f"attn_all_heads_layer_{layer}{sfx}"][head - 1][:t, :t]
            assert got.shape == (t, t)
            np.testing.assert_allclose(got, want, atol=1e-5, err_msg=f"input {i} map {layer}:{head}")


def test_pre_trained_build_equals_the_official_outputs(tmp_path):
    g, seqs = _golden("ntv3_tiny")
    cache = EmbeddingCache(tmp_path / "c.zarr")
    # All inputs in one build: mixed lengths, two of them (1 and 5 bases) share padded length 8.
    report = cache.build(seqs, model=GOLDEN / "ntv3_tiny", layers=[1, 2, "final"], attention=MAPS, **QUICK)
    assert report.computed == len(seqs) and set(report.arrays) >= {"layer_1_mean", "layer_final_mean"}
    _check_against_golden(cache, g, seqs, lambda i: f"__s{i}")
    group = cache.group()
    # "final" has the stem's width (16), core layers the core's (32); maps cover core positions.
    assert group.array("layer_final_mean").shape[1] == 16 and group.array("layer_2_mean").shape[1] == 32
    assert group.array("attention_1_1").shape[1:] == (40, 40)
    assert "layer_1_cls" not in group.array_names()  # mean is NTv3's only pooling
    rows = group.index([sequence_digest(normalize(s)) for s in seqs])
    assert sorted(group.row_array("n_tokens")[list(rows.values())]) == sorted(len(s) for s in seqs)


def test_post_trained_species_are_two_groups_each_equal_to_the_official_outputs(tmp_path):
    g, seqs = _golden("ntv3_tiny_post")
    cache = EmbeddingCache(tmp_path / "c.zarr")
    keys = {}
    for name, token in (("human", 6), ("mouse", 7)):
        keys[name] = cache.build(seqs, model=GOLDEN / "ntv3_tiny_post", species=name, layers=[1, 2, "final"],
                                 attention=MAPS, **QUICK).model_key
    assert keys["human"] != keys["mouse"] and len(cache.models()) == 2
    assert {m.key: cache.group(m.key).attrs["species"] for m in cache.models()} == {v: k for k, v in keys.items()}
    for name, token in (("human", 6), ("mouse", 7)):
        _check_against_golden(cache, g, seqs, lambda i, t=token: f"__s{i}__sp{t}", species=name)
    # A rebuild with the same species reuses everything.
    again = cache.build(seqs, model=GOLDEN / "ntv3_tiny_post", species="mouse", layers=["final"], **QUICK)
    assert again.model_key == keys["mouse"] and again.computed == 0 and again.reused == len(seqs)


def test_outputs_do_not_depend_on_batch_composition_through_the_build(tmp_path):
    rng = np.random.default_rng(3)
    # 17..24 bases all pad to 24; 5 to 8; 61 to 64: mixed padded lengths in one build.
    target = "".join(rng.choice(list("ACGT"), 21))
    others = ["".join(rng.choice(list("ACGTN"), n)) for n in (17, 24, 19, 5, 61, 22)]
    alone = EmbeddingCache(tmp_path / "a.zarr")
    alone.build([target], model=GOLDEN / "ntv3_tiny", layers=[2, "final"], attention=[(2, 3)], **QUICK)
    mixed = EmbeddingCache(tmp_path / "b.zarr")
    mixed.build(others + [target], model=GOLDEN / "ntv3_tiny", layers=[2, "final"], attention=[(2, 3)],
                batch_size=4, **QUICK)
    for layer in (2, "final"):
        np.testing.assert_allclose(mixed.embeddings([target], layer=layer), alone.embeddings([target], layer=layer),
                                   atol=1e-6)
    np.testing.assert_allclose(mixed.attention(target, layer=2, head=3), alone.attention(target, layer=2, head=3),
                               atol=1e-6)


def test_bad_requests_are_refused_before_anything_is_written(tmp_path):
    path = tmp_path / "c.zarr"
    cache = EmbeddingCache(path)
    post, pre = GOLDEN / "ntv3_tiny_post", GOLDEN / "ntv3_tiny"
    with pytest.raises(InputError, match="no CLS token.*--pool mean"):
        cache.build(["ACGT" * 4], model=pre, layers=[1], pools=["cls"], **QUICK)
    with pytest.raises(InputError, match="needs a species; choose one of: arabidopsis, human, mouse"):
        cache.build(["ACGT" * 4], model=post, layers=[1], **QUICK)
    with pytest.raises(InputError, match="does not know species 'yeast'; choose one of: arabidopsis, human, mouse"):
        cache.build(["ACGT" * 4], model=post, species="yeast", layers=[1], **QUICK)
    with pytest.raises(InputError, match="not species-conditioned"):
        cache.build(["ACGT" * 4], model=pre, species="human", layers=[1], **QUICK)
    with pytest.raises(InputError, match="takes no species"):
        cache.build(["ACGT" * 4], model=GOLDEN / "tiny_v2" / "checkpoint", species="human", layers=[1], **QUICK)
    with pytest.raises(InputError, match="layers 1..2 and 'final'"):
        cache.build(["ACGT" * 4], model=pre, layers=[3], **QUICK)
    with pytest.raises(SequenceTooLongError, match="321 tokens \\(bases\\), over the limit of 320"):
        cache.build(["A" * 321], model=pre, layers=["final"], **QUICK)
    assert not path.exists()


def test_long_policies_apply_past_max_tokens(tmp_path):
    rng = np.random.default_rng(5)
    seq = "".join(rng.choice(list("ACGT"), 100))
    kw = dict(model=GOLDEN / "ntv3_tiny", layers=[2, "final"], quiet=True)
    cut = EmbeddingCache(tmp_path / "t.zarr")
    cut.build([seq], max_tokens=40, long="truncate", **kw)
    prefix = EmbeddingCache(tmp_path / "p.zarr")
    prefix.build([seq[:40]], max_tokens=40, **kw)
    for layer in (2, "final"):
        np.testing.assert_allclose(cut.embeddings([seq], layer=layer), prefix.embeddings([seq[:40]], layer=layer),
                                   atol=1e-6)
    # Tiling: windows of 40 bases (no CLS) overlapping by 8: starts 0, 32, 60; means weighted by bases.
    tiled = EmbeddingCache(tmp_path / "w.zarr")
    tiled.build([seq], max_tokens=40, long="tile", window_overlap=8, **kw)
    group = tiled.group()
    assert group.row_array("n_windows").tolist() == [3] and group.attrs["window_tokens"] == 40
    parts = EmbeddingCache(tmp_path / "parts.zarr")
    windows = [seq[s:s + 40] for s in (0, 32, 60)]
    parts.build(windows, max_tokens=40, **kw)
    np.testing.assert_allclose(tiled.embeddings([seq], layer="final")[0],
                               parts.embeddings(windows, layer="final").mean(0), atol=1e-5)


def test_cli_species_and_final_round_trip(tmp_path, capsys, monkeypatch):
    g, seqs = _golden("ntv3_tiny_post")
    fasta = tmp_path / "in.fa"
    fasta.write_text("".join(f">r{i}\n{s}\n" for i, s in enumerate(seqs)))
    cache = tmp_path / "c.zarr"
    runner = CliRunner()
    res = runner.invoke(app, ["build", str(fasta), "--model", str(GOLDEN / "ntv3_tiny_post"), "--cache", str(cache),
                              "--species", "mouse", "--layers", "1,final", "--pool", "mean", "--max-tokens", "320",
                              "--quiet"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "x.npz"
    res = runner.invoke(app, ["export", "--cache", str(cache), "--input", str(fasta), "--out", str(out),
                              "--layer", "final", "--species", "mouse"])
    assert res.exit_code == 0, res.output
    got = np.load(out)
    assert got["id"].tolist() == [f"r{i}" for i in range(len(seqs))]
    want = np.stack([g[f"embedding__s{i}__sp7"][:len(s)].mean(0) for i, s in enumerate(seqs)])
    np.testing.assert_allclose(got["X"], want, atol=1e-4, rtol=1e-4)
    # Through the real entry point: bad input exits 2 with the message, before any compute.
    before = sorted(p.name for p in cache.rglob("*"))
    monkeypatch.setattr(sys, "argv", ["embedcache", "build", str(fasta), "--model", str(GOLDEN / "ntv3_tiny_post"),
                                      "--cache", str(cache), "--layers", "final", "--pool", "cls", "--species", "mouse"])
    with pytest.raises(SystemExit) as stop:
        run_app(app)
    assert stop.value.code == 2 and "no CLS token" in capsys.readouterr().err
    assert sorted(p.name for p in cache.rglob("*")) == before
