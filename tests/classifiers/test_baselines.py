"""Baselines: exact k-mer frequencies, majority class, and a k-mer probe that finds a motif."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from classifiers.baselines import KmerFrequencies, make_baseline


def random_seqs(n, rng, low=3, high=40, alphabet="ACGTN"):
    p = [0.24, 0.24, 0.24, 0.24, 0.04][: len(alphabet)]
    p = np.array(p) / sum(p)
    return ["".join(rng.choice(list(alphabet), rng.integers(low, high), p=p)) for _ in range(n)]


def test_kmer_frequencies_equal_a_plain_count():
    rng = np.random.default_rng(0)
    seqs = random_seqs(40, rng) + ["A", "acgtn", "NNNNNNN"]
    t = KmerFrequencies(1, 4).fit(seqs)
    X = t.transform(seqs).toarray()
    names = list(t.get_feature_names_out())
    assert X.shape == (len(seqs), 4 + 16 + 64 + 256) == (len(seqs), t.n_features_out_)
    for i, s in enumerate(seqs):
        s = s.upper()
        for k in range(1, 5):
            windows = [s[j:j + k] for j in range(len(s) - k + 1)]
            counts = Counter(w for w in windows if set(w) <= set("ACGT"))
            total = sum(counts.values())
            for kmer in (n for n in names if len(n) == k):
                expected = counts[kmer] / total if total else 0.0
                assert X[i, names.index(kmer)] == pytest.approx(expected), (s, kmer)


def test_k_min_drops_the_short_kmers():
    seqs = ["ACGTACGTAC", "GGGTTTAAAC"]
    full = KmerFrequencies(1, 3).fit(seqs).transform(seqs).toarray()
    only3 = KmerFrequencies(3, 3).fit(seqs).transform(seqs).toarray()
    np.testing.assert_allclose(only3, full[:, 20:])


def test_majority_baseline_predicts_the_majority_with_prior_scores():
    y = np.array(["a"] * 7 + ["b"] * 3)
    est = make_baseline("majority").fit(np.array(["ACGT"] * 10, dtype=object), y)
    proba = est.predict_proba(np.array(["TTTT", "GGGG"], dtype=object))
    np.testing.assert_allclose(proba, [[0.7, 0.3]] * 2)
    assert est.predict(np.array(["CCCC"], dtype=object)).tolist() == ["a"]


def test_kmer_logistic_baseline_finds_a_planted_motif():
    rng = np.random.default_rng(1)
    seqs = random_seqs(400, rng, 60, 61, "ACGT")
    y = rng.integers(0, 2, 400)
    seqs = [s[:20] + "GATTACAGG" + s[29:] if label else s for s, label in zip(seqs, y)]
    est = make_baseline("kmer_logistic").fit(np.array(seqs[:300], dtype=object), y[:300])
    test = np.array(seqs[300:], dtype=object)
    assert accuracy_score(y[300:], est.predict(test)) > 0.9
    assert roc_auc_score(y[300:], est.predict_proba(test)[:, 1]) > 0.95


def test_unknown_baseline_is_refused():
    with pytest.raises(ValueError, match="majority, kmer_logistic"):
        make_baseline("knn")
