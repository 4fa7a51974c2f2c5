"""Probe features of variants read from the cache: alt - ref or [ref, alt] of the windows scored."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embedcache import EmbeddingCache
from embedcache.errors import InputError
from embedcache.variants.score import write_scores

TINY_V2 = Path(__file__).resolve().parents[1] / "golden" / "tiny_v2" / "checkpoint"


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A genome with Ns, a variant table (SNVs, one near the start, an indel), scored into a cache."""
    d = tmp_path_factory.mktemp("feat")
    rng = random.Random(5)
    seq = "".join(rng.choice("ACGT") for _ in range(240))
    seq = seq[:100] + "N" * 12 + seq[112:]
    (d / "g.fa").write_text(">c1\n" + "\n".join(seq[i:i + 50] for i in range(0, len(seq), 50)) + "\n")
    other = {"A": "C", "C": "G", "G": "T", "T": "A"}
    rows = [(p, seq[p - 1], other[seq[p - 1]], str(i % 2)) for i, p in enumerate((3, 60, 90, 130, 200))]
    rows.append((150, seq[149:152], seq[149], "1"))
    pd.DataFrame(rows, columns=["pos", "ref", "alt", "label"]).assign(chrom="c1").to_csv(d / "v.csv", index=False)
    cache = EmbeddingCache(d / "c.zarr")
    table = cache.score_variants(d / "v.csv", reference=d / "g.fa", model=TINY_V2, flank=40, layers=[2],
                                 pools=["mean", "center"], scores=["l2"], max_tokens=20, quiet=True)
    write_scores(table, d / "scores.parquet")
    return d, seq, cache, table


def test_diff_and_concat_are_the_cached_embeddings_of_the_scored_windows(scored):
    d, seq, cache, table = scored
    assert table.flank.tolist()[0] == 2 and table.flank.nunique() > 2  # contig start, and Ns shrink it
    X, t = cache.variant_features(d / "scores.parquet", reference=d / "g.fa", layer=2, pool="center")
    Xc, _ = cache.variant_features(d / "scores.parquet", reference=d / "g.fa", layer=2, pool="center", kind="concat")
    assert X.shape == (6, 64) and Xc.shape == (6, 128)
    assert t.flank.tolist() == table.flank.tolist() and t.label.tolist() == ["0", "1", "0", "1", "0", "1"]
    for i, row in enumerate(t.itertuples()):
        p, h = row.pos - 1, row.flank
        assert row.ref_window == seq[p - h:p + h + 1]
        assert row.alt_window == seq[p - h:p] + row.alt + seq[p + len(row.ref):p + len(row.ref) + h]
        r, a = (cache.embeddings([w], layer=2, pool="center")[0] for w in (row.ref_window, row.alt_window))
        np.testing.assert_array_equal(X[i], a - r)
        np.testing.assert_array_equal(Xc[i], np.concatenate([r, a]))
    # Their l2 norm is the score embedcache variants gave.
    np.testing.assert_allclose(np.linalg.norm(X.astype(np.float64), axis=1), table.l2_L2_center, rtol=1e-6)


def test_a_table_without_flank_needs_one_and_missing_windows_name_the_command(scored):
    d, seq, cache, _ = scored
    with pytest.raises(InputError, match=r"v\.csv has no flank column: give --flank"):
        cache.variant_features(d / "v.csv", reference=d / "g.fa", layer=2)
    with pytest.raises(InputError, match=r"of the 12 windows of .*v\.csv are not in the cache .*Embed them with: "
                                         r"embedcache variants .*v\.csv .*--layers 2 --pool mean .*--flank 7"):
        cache.variant_features(d / "v.csv", reference=d / "g.fa", layer=2, flank=7)
    with pytest.raises(InputError, match="--variant-features 'sum'"):
        cache.variant_features(d / "scores.parquet", reference=d / "g.fa", kind="sum")
