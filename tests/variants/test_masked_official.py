"""Masked-LM logits and llr equal the official implementation's (tests/golden/masked), token dropout included.

The reference values were made by tests/golden/masked/make_masked_golden.py with the official
code on checkpoints that make_weights.py writes deterministically; the same checkpoints are
written here. NTv3's LM head is checked on the unmasked golden logits (its masked forward
differs only in one input token; it has no token dropout).
"""

from __future__ import annotations

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from conftest import write_checkpoint
from embedcache import EmbeddingCache
from embedcache.checkpoints import load_checkpoint
from embedcache.families import family_for
from embedcache.variants.masked import lm_layer, middle_tokens, snv_llr

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
MASKED = np.load(GOLDEN / "masked" / "masked_golden.npz")
WINDOWS = json.loads(str(MASKED["windows_json"]))
ALTS = json.loads(str(MASKED["alts_json"]))
CASES = json.loads(str(MASKED["cases_json"]))


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    """The ``mlm`` pool of every window, built through the store, per case."""
    out = {}
    for case, spec in CASES.items():
        ckpt_dir = write_checkpoint(tmp_path_factory.mktemp(case), spec["hp"], seed=spec["seed"])
        family = family_for(load_checkpoint(ckpt_dir))
        cache = EmbeddingCache(tmp_path_factory.mktemp(case) / "c.zarr")
        report = cache.build(WINDOWS, model=ckpt_dir, layers=[lm_layer(family)], pools=["mlm"], max_tokens=64,
                             batch_size=4, quiet=True)
        assert set(report.arrays) == {f"layer_{lm_layer(family)}_mlm"} and report.computed == len(WINDOWS)
        out[case] = (family, cache.embeddings(WINDOWS, layer=lm_layer(family), pool="mlm"))
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_masked_logits_equal_the_official(ours, case):
    family, logits = ours[case]
    centers, tokens = middle_tokens(family, WINDOWS)
    assert centers.tolist() == MASKED[f"{case}__center"].tolist()
    assert [t[c] for t, c in zip(tokens, centers)] == MASKED[f"{case}__ref_token"].tolist()
    np.testing.assert_allclose(logits, MASKED[f"{case}__logits"], atol=1e-4, rtol=1e-4)
    h = [len(w) // 2 for w in WINDOWS]
    alt_windows = [w[:i] + a + w[i + 1:] for w, i, a in zip(WINDOWS, h, ALTS)]
    got = snv_llr(family, logits, WINDOWS, alt_windows)
    rows = np.arange(len(WINDOWS))
    want = (MASKED[f"{case}__logits"][rows, MASKED[f"{case}__alt_token"]].astype(np.float64)
            - MASKED[f"{case}__logits"][rows, MASKED[f"{case}__ref_token"]])
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_token_dropout_changes_the_masked_logits():
    # The case would prove nothing if the rescaling were a no-op on these weights.
    assert np.abs(MASKED["v2__logits"] - MASKED["v2_token_dropout__logits"]).max() > 1e-2


def test_ntv3_lm_head_reproduces_the_official_logits():
    from embedcache.families.ntv3.forward import forward, prepare_params
    from embedcache.sequences.alphabet import normalize

    g = np.load(GOLDEN / "ntv3_tiny" / "golden.npz")
    seqs = [r["sequence"] for r in json.loads(str(g["sequences_json"]))]
    ckpt = load_checkpoint(GOLDEN / "ntv3_tiny")
    params = prepare_params(ckpt.params, ckpt.config, jnp.float32)
    tok = ckpt.tokenizer()
    for i, seq in enumerate(seqs):
        logits = forward(params, tok.encode_padded(normalize(seq))[None], config=ckpt.config, logits=True)["logits"][0]
        want = g[f"logits__s{i}"]
        np.testing.assert_allclose(np.asarray(logits)[:len(want)], want, atol=1e-4, rtol=1e-4, err_msg=f"input {i}")
