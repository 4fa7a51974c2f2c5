"""score_variants end to end with the tiny checkpoints: every score against an independent computation.

Windows are cut here by hand from the genome string; distances are recomputed from the cache's
embeddings of those hand-cut windows; ``llr`` from our forward (checked against the official
outputs in tests/test_model.py and tests/golden) on hand-masked tokens, the masked token found
by walking the tokenizer's token strings.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import TINY_V1_HP, write_checkpoint
from embedcache import EmbeddingCache
from embedcache.checkpoints import load_checkpoint
from embedcache.errors import InputError
from embedcache.sequences.alphabet import reverse_complement
from embedcache.variants.score import ScoreRun

ROOT = Path(__file__).resolve().parents[2]
TINY_V2 = ROOT / "tests" / "golden" / "tiny_v2" / "checkpoint"
NTV3 = ROOT / "tests" / "golden" / "ntv3_tiny"
FLANK = 20


@pytest.fixture(scope="module")
def genome(tmp_path_factory):
    rng = random.Random(3)
    seq = "".join(rng.choice("ACGT") for _ in range(300))
    seq = seq[:150] + "NNN" + seq[153:]
    path = tmp_path_factory.mktemp("genome") / "g.fa"
    path.write_text(">c1\n" + "\n".join(seq[i:i + 60] for i in range(0, len(seq), 60)) + "\n")
    return path, seq


def variants_table(path: Path, seq: str) -> Path:
    other = {"A": "G", "C": "T", "G": "A", "T": "C"}
    rows = [("s1", 60, seq[59], other[seq[59]], "1"),      # SNV, full flank
            ("s2", 60, seq[59], "T" if seq[59] != "T" else "C", "0"),  # second allele, same window
            ("s3", 5, seq[4], other[seq[4]], "0"),         # near the start: flank 4
            ("d1", 100, seq[99:103], seq[99], "1"),        # deletion of 3 bases
            ("i1", 200, seq[199], seq[199] + "GA", "0"),   # insertion
            ("s4", 140, seq[139], other[seq[139]], "1")]   # Ns in its window
    pd.DataFrame(rows, columns=["id", "pos", "ref", "alt", "label"]).assign(chrom="c1").to_csv(path, index=False)
    return path


def hand_windows(seq: str, pos: int, ref: str, alt: str, flank: int):
    p = pos - 1
    h = min(flank, p, len(seq) - p - len(ref))
    return h, seq[p - h:p + h + 1], seq[p - h:p] + alt + seq[p + len(ref):p + len(ref) + h]


def test_distances_are_those_of_the_defined_windows_and_a_rerun_computes_nothing(tmp_path, genome):
    path, seq = genome
    table = variants_table(tmp_path / "v.csv", seq)
    cache = EmbeddingCache(tmp_path / "c.zarr")
    kw = dict(reference=path, model=TINY_V2, flank=FLANK, layers=[1, 2], pools=["mean", "center"],
              scores=["cosine", "l2", "llr"], max_tokens=64, quiet=True)
    out = cache.score_variants(table, **kw)
    assert list(out.columns[:6]) == ["id", "chrom", "pos", "ref", "alt", "flank"] and out.columns[-1] == "label"
    assert out.columns[6] == "llr" and "cosine_L2_center" in out and "l2_L1_mean" in out
    run = ScoreRun.of(out)
    for row in out.itertuples():
        h, ref_w, alt_w = hand_windows(seq, row.pos, row.ref, row.alt, FLANK)
        assert row.flank == h
        for layer in (1, 2):
            for pool in ("mean", "center"):
                r, a = (cache.embeddings([w], model=run.model_key, layer=layer, pool=pool)[0].astype(np.float64)
                        for w in (ref_w, alt_w))
                cos = 1 - r @ a / np.sqrt((r @ r) * (a @ a))
                assert getattr(row, f"cosine_L{layer}_{pool}") == pytest.approx(cos, rel=1e-9, abs=1e-15)
                assert getattr(row, f"l2_L{layer}_{pool}") == pytest.approx(np.linalg.norm(a - r), rel=1e-9)
    assert out.set_index("id").flank.to_dict() == {"s1": 20, "s2": 20, "s3": 4, "d1": 20, "i1": 20, "s4": 20}
    assert out.set_index("id").llr[["d1", "i1"]].isna().all() and out.set_index("id").llr[["s1", "s3"]].notna().all()
    # s1 and s2 share their reference window: 5 positions, 6 alleles; 3 SNV positions, 3 masked forwards.
    assert run.windows == 11 and run.computed == 11 and run.masked_forwards == 3
    again = cache.score_variants(table, **kw)
    assert ScoreRun.of(again).computed == 0 and ScoreRun.of(again).reused == 11
    assert ScoreRun.of(again).masked_forwards == 0  # the masked logits are cached too
    pd.testing.assert_frame_equal(again, out)


def masked_llr_by_hand(checkpoint, seq_window: str, alt_window: str) -> float:
    """Mask the token holding the middle base (found from the token strings), run our forward."""
    from embedcache.families.nt.forward import forward, prepare_params

    tok = checkpoint.tokenizer()
    ids = tok.encode(seq_window)
    covered = 0
    for c, s in enumerate(tok.token_strings(ids)):
        covered += 0 if s.startswith("<") else len(s)
        if covered > len(seq_window) // 2:
            break
    masked = ids.copy()
    masked[c] = tok.mask_id
    logits = np.asarray(forward(prepare_params(checkpoint.params), masked[None], config=checkpoint.config,
                                logits=True)["logits"][0, c], dtype=np.float64)
    return logits[tok.encode(alt_window)[c]] - logits[ids[c]]


@pytest.mark.parametrize("kind", ["v2", "v1_token_dropout"])
def test_llr_is_the_masked_forward_at_the_variant_token(tmp_path, genome, kind):
    path, seq = genome
    ckpt_dir = TINY_V2 if kind == "v2" else write_checkpoint(tmp_path / "v1", TINY_V1_HP, seed=1)
    checkpoint = load_checkpoint(ckpt_dir)
    assert bool(checkpoint.config.token_dropout) == (kind != "v2")
    table = variants_table(tmp_path / "v.csv", seq)
    out = EmbeddingCache(tmp_path / "c.zarr").score_variants(
        table, reference=path, model=ckpt_dir, flank=FLANK, scores=["llr"], max_tokens=64, quiet=True)
    assert list(out.columns) == ["id", "chrom", "pos", "ref", "alt", "flank", "llr", "label"]
    for row in out[(out.ref.str.len() == 1) & (out.alt.str.len() == 1)].itertuples():
        _, ref_w, alt_w = hand_windows(seq, row.pos, row.ref, row.alt, FLANK)
        assert row.llr == pytest.approx(masked_llr_by_hand(checkpoint, ref_w, alt_w), abs=1e-4)


def test_ntv3_llr_masks_the_base_and_center_is_its_position(tmp_path, genome):
    import jax.numpy as jnp

    from embedcache.families.ntv3.forward import forward, prepare_params

    path, seq = genome
    table = variants_table(tmp_path / "v.csv", seq)
    cache = EmbeddingCache(tmp_path / "c.zarr")
    out = cache.score_variants(table, reference=path, model=NTV3, flank=FLANK, layers=["final", 1],
                               pools=["center"], scores=["llr", "l2"], max_tokens=128, quiet=True)
    checkpoint = load_checkpoint(NTV3)
    cfg = checkpoint.config
    params = prepare_params(checkpoint.params, cfg, jnp.float32)
    tok = checkpoint.tokenizer()
    for row in out[(out.ref.str.len() == 1) & (out.alt.str.len() == 1)].itertuples():
        h, ref_w, alt_w = hand_windows(seq, row.pos, row.ref, row.alt, FLANK)
        ids = tok.encode_padded(ref_w)
        ids[h] = 2  # <mask>
        logits = np.asarray(forward(params, ids[None], config=cfg, logits=True)["logits"][0, h], dtype=np.float64)
        ref_id, alt_id = tok.encode(row.ref)[0], tok.encode(row.alt)[0]
        assert row.llr == pytest.approx(logits[alt_id] - logits[ref_id], abs=1e-4)
    assert "l2_Lfinal_center" in out and "l2_L1_center" in out


def test_both_strands_average_the_reverse_complement_windows(tmp_path, genome):
    path, seq = genome
    table = variants_table(tmp_path / "v.csv", seq)
    cache = EmbeddingCache(tmp_path / "c.zarr")
    kw = dict(reference=path, model=TINY_V2, flank=FLANK, layers=[2], pools=["mean"], scores=["l2", "llr"],
              max_tokens=64, quiet=True)
    fwd = cache.score_variants(table, **kw)
    both = cache.score_variants(table, strands="both", **kw)
    key = ScoreRun.of(both).model_key
    checkpoint = load_checkpoint(TINY_V2)
    for f, b in zip(fwd.itertuples(), both.itertuples()):
        _, ref_w, alt_w = hand_windows(seq, f.pos, f.ref, f.alt, FLANK)
        r, a = (cache.embeddings([reverse_complement(w)], model=key, layer=2, pool="mean")[0].astype(np.float64)
                for w in (ref_w, alt_w))
        assert b.l2_L2_mean == pytest.approx((f.l2_L2_mean + np.linalg.norm(a - r)) / 2, rel=1e-9)
        if len(f.ref) == len(f.alt) == 1:
            rc = masked_llr_by_hand(checkpoint, reverse_complement(ref_w), reverse_complement(alt_w))
            assert b.llr == pytest.approx((f.llr + rc) / 2, abs=1e-4)


def test_saturation_scores_three_snvs_per_base_and_skips_n(tmp_path, genome):
    path, seq = genome
    out = EmbeddingCache(tmp_path / "c.zarr").score_variants(
        saturate="c1:149-155", reference=path, model=TINY_V2, flank=10, scores=["llr"], max_tokens=64, quiet=True)
    run = ScoreRun.of(out)
    assert len(out) == 3 * 4 and run.skipped["n_positions"] == 3  # 151-153 are N
    assert run.masked_forwards == 4  # one per position
    assert set(out.pos) == {149, 150, 154, 155}
    for pos, group in out.groupby("pos"):
        assert set(group.ref) == {seq[pos - 1]} and set(group.alt) == set("ACGT") - {seq[pos - 1]}


def test_bad_input_stops_before_the_store_is_touched(tmp_path, genome):
    path, seq = genome
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"chrom": ["c1"], "pos": [60], "ref": ["A" if seq[59] != "A" else "C"], "alt": ["G"]}).to_csv(bad, index=False)
    store = tmp_path / "c.zarr"
    with pytest.raises(InputError, match=r"bad\.csv line 2 \(c1:60\): REF . is not the reference's"):
        EmbeddingCache(store).score_variants(bad, reference=path, model=TINY_V2, max_tokens=64, quiet=True)
    assert not store.exists()
    with pytest.raises(InputError, match="unknown score kl"):
        EmbeddingCache(store).score_variants(bad, reference=path, model=TINY_V2, scores=["kl"])
    with pytest.raises(InputError, match="is not CHROM:START-END"):
        EmbeddingCache(store).score_variants(saturate="c1:5", reference=path, model=TINY_V2)
