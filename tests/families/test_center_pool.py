"""The ``center`` pool: the token holding a sequence's middle base, checked against the official outputs.

v1/v2: the golden per-token outputs at the token that covers base offset ``len // 2`` (found
here by walking the official token strings). NTv3: the golden ``final`` output at that base,
and each core layer's at the bottleneck position covering it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from embedcache import EmbeddingCache
from embedcache.families.nt.family import center_token

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
BLOCK = 8  # 2**num_downsamples of the tiny NTv3


def middle_token_index(token_strings: list[str], n_bases: int) -> int:
    """Index (CLS at 0) of the token covering base offset n_bases // 2, by walking the tokens."""
    covered = 0
    for i, tok in enumerate(token_strings):
        if tok.startswith("<"):
            continue
        covered += len(tok)
        if covered > n_bases // 2:
            return i
    raise AssertionError("middle base not covered")


def test_v2_center_is_the_official_output_of_the_middle_token(tmp_path):
    g = np.load(GOLDEN / "tiny_v2" / "golden.npz")
    seqs = [r["sequence"] for r in json.loads(str(g["sequences_json"]))]
    strings = json.loads(str(g["token_strings_json"]))
    cache = EmbeddingCache(tmp_path / "c.zarr")
    report = cache.build(seqs, model=GOLDEN / "tiny_v2" / "checkpoint", layers=[1, 2], pools=["center", "mean"],
                         max_tokens=64, quiet=True)
    assert set(report.arrays) == {"layer_1_center", "layer_1_mean", "layer_2_center", "layer_2_mean"}
    checked = set()
    for i, seq in enumerate(seqs):
        idx = middle_token_index(strings[i], len(seq))
        checked.add((len(strings[i][idx]), idx == 1))
        for layer in (1, 2):
            got = cache.embeddings([seq], layer=layer, pool="center")[0]
            np.testing.assert_allclose(got, g[f"embeddings_{layer}__s{i}"][idx], atol=1e-4, rtol=1e-4,
                                       err_msg=f"input {i} ({seq[:12]}...) layer {layer}")
    assert {6, 1} <= {k for k, _ in checked}  # the middle base fell in a 6-mer and in a single token


def test_center_token_of_token_base_counts():
    # CLS, 6-mer, 6-mer, N, single, pad: 14 bases, middle offset 7 lies in the second 6-mer.
    bases = np.array([[0, 6, 6, 1, 1, 0], [0, 1, 0, 0, 0, 0], [0, 6, 1, 0, 0, 0]])
    assert center_token(bases).tolist() == [2, 1, 1]  # row 3: 7 bases, offset 3 in the 6-mer


def test_ntv3_center_final_and_core_layers_equal_the_official_positions(tmp_path):
    g = np.load(GOLDEN / "ntv3_tiny" / "golden.npz")
    seqs = [r["sequence"] for r in json.loads(str(g["sequences_json"]))]
    cache = EmbeddingCache(tmp_path / "c.zarr")
    cache.build(seqs, model=GOLDEN / "ntv3_tiny", layers=[1, 2, "final"], pools=["center"], max_tokens=320,
                quiet=True)
    for i, seq in enumerate(seqs):
        m = len(seq) // 2
        got = cache.embeddings([seq], layer="final", pool="center")[0]
        np.testing.assert_allclose(got, g[f"embedding__s{i}"][m], atol=1e-4, rtol=1e-4, err_msg=f"input {i} final")
        for layer in (1, 2):
            got = cache.embeddings([seq], layer=layer, pool="center")[0]
            np.testing.assert_allclose(got, g[f"embeddings_{layer}__s{i}"][m // BLOCK], atol=1e-4, rtol=1e-4,
                                       err_msg=f"input {i} layer {layer}")
    assert "layer_final_mean" not in cache.group().array_names()  # only what was asked
