"""Score math: cosine and L2 distances, llr from logits, strand averaging, column names."""

from __future__ import annotations

import numpy as np
import pytest

from embedcache.variants.scores import cosine_distance, l2_distance, llr, mean_strands, score_column


def test_distances_equal_their_definitions_row_by_row():
    rng = np.random.default_rng(0)
    ref, alt = rng.normal(size=(5, 16)).astype(np.float32), rng.normal(size=(5, 16)).astype(np.float32)
    for i in range(5):
        a, b = ref[i].astype(np.float64), alt[i].astype(np.float64)
        assert cosine_distance(ref, alt)[i] == pytest.approx(1 - a @ b / np.sqrt((a @ a) * (b @ b)), rel=1e-12)
        assert l2_distance(ref, alt)[i] == pytest.approx(np.sqrt(((b - a) ** 2).sum()), rel=1e-12)
    assert cosine_distance(ref, ref) == pytest.approx(np.zeros(5), abs=1e-12)
    assert cosine_distance(ref, -ref) == pytest.approx(np.full(5, 2.0))
    assert np.isnan(cosine_distance(np.zeros((1, 3)), np.ones((1, 3)))[0])


def test_cosine_distance_keeps_precision_for_nearly_equal_vectors():
    # float64 arithmetic: a distance of ~1e-9 is resolved, not rounded to 0 as float32 would.
    base = np.linspace(1, 2, 512)
    near = base + 1e-4 * np.sin(np.arange(512))
    exact = 1 - (base @ near) / (np.linalg.norm(base) * np.linalg.norm(near))
    got = cosine_distance(base[None].astype(np.float64), near[None])[0]
    assert got == pytest.approx(exact, rel=1e-6) and got > 0


def test_llr_is_the_alt_minus_ref_logit_and_equals_the_log_softmax_ratio():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4, 10))
    ref, alt = np.array([1, 2, 3, 4]), np.array([5, 6, 7, 0])
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    assert llr(logits, ref, alt) == pytest.approx(logp[np.arange(4), alt] - logp[np.arange(4), ref], abs=1e-12)


def test_strands_and_column_names():
    assert mean_strands([1.0, 3.0], [3.0, 5.0]).tolist() == [2.0, 4.0]
    assert score_column("cosine", 12, "mean") == "cosine_L12_mean"
    assert score_column("l2", "final", "center") == "l2_Lfinal_center"
    assert score_column("llr") == "llr"
    with pytest.raises(ValueError, match="unknown score 'kl'"):
        score_column("kl", 1, "mean")
