"""The variant window definition: odd length, variant in the middle, symmetric shortening, indels, Ns."""

from __future__ import annotations

import random

import pytest

from embedcache.sequences.alphabet import reverse_complement
from embedcache.variants.windows import (default_flank, half_width, reverse_complement_windows,
                                         variant_windows)

rng = random.Random(7)
CONTIG = "".join(rng.choice("ACGT") for _ in range(500))


def fetch(start, end, seq=CONTIG):
    assert 0 <= start <= end <= len(seq), (start, end)  # never reads past the contig: never pads
    return seq[start:end]


def kmer_tokens(seq: str, k: int = 6) -> int:
    """Tokens of the NT v1/v2 tokenizer, CLS included: 6-mers left to right, Ns and a remainder single."""
    count = 1
    for part in seq.split("N"):
        count += len(part) // k + len(part) % k
    return count + seq.count("N")


@pytest.mark.parametrize("p", [0, 1, 7, 100, 250, 492, 498, 499])
@pytest.mark.parametrize("flank", [0, 3, 8, 10_000])
def test_snv_window_is_odd_centered_and_shortened_symmetrically(p, flank):
    alt = "A" if CONTIG[p] != "A" else "C"
    w = variant_windows(fetch, p, len(CONTIG), CONTIG[p], alt, flank)
    h = min(flank, p, len(CONTIG) - 1 - p)
    assert w.flank == h == half_width(p, len(CONTIG), flank)
    assert len(w.ref) == len(w.alt) == 2 * h + 1
    assert w.start == p - h and w.ref == CONTIG[p - h:p + h + 1]
    assert w.ref[h] == CONTIG[p] and w.alt[h] == alt and w.middle == h == len(w.ref) // 2
    assert w.alt[:h] == w.ref[:h] and w.alt[h + 1:] == w.ref[h + 1:]


def test_deletion_and_insertion_alt_windows():
    p = 200
    ref = CONTIG[p:p + 4]
    dele = variant_windows(fetch, p, len(CONTIG), ref, ref[0], 10)
    assert dele.ref == CONTIG[190:211]
    assert dele.alt == CONTIG[190:200] + ref[0] + CONTIG[204:214]
    ins = variant_windows(fetch, p, len(CONTIG), CONTIG[p], CONTIG[p] + "GGT", 10)
    assert ins.alt == CONTIG[190:200] + CONTIG[p] + "GGT" + CONTIG[201:211]
    assert ins.ref == CONTIG[190:211]
    mnp = variant_windows(fetch, p, len(CONTIG), CONTIG[p:p + 2], "NN", 5)
    assert mnp.alt == CONTIG[195:200] + "NN" + CONTIG[202:207]


def test_a_deletion_near_the_contig_end_keeps_its_right_flank():
    n = len(CONTIG)
    p = n - 6  # REF of 4 bases leaves 2 bases after it
    w = variant_windows(fetch, p, n, CONTIG[p:p + 4], CONTIG[p], 100)
    assert w.flank == 2 == min(100, p, n - p - 4)
    assert w.ref == CONTIG[p - 2:p + 3] and w.alt == CONTIG[p - 2:p + 1] + CONTIG[n - 2:]


def test_ns_shrink_the_flank_to_the_largest_that_fits():
    seq = CONTIG[:200] + "N" * 40 + CONTIG[240:]
    p = 250

    def f(a, b):
        return fetch(a, b, seq)

    full = variant_windows(f, p, len(seq), seq[p], "A" if seq[p] != "A" else "C", 60)
    assert full.flank == 60 and kmer_tokens(full.ref) > 40
    w = variant_windows(f, p, len(seq), seq[p], full.alt[60], 60, count_tokens=kmer_tokens, max_tokens=40)
    assert kmer_tokens(w.ref) <= 40 and kmer_tokens(w.alt) <= 40
    # No larger half-width fits (checked one by one, so the search's shortcut is not trusted).
    for h in range(w.flank + 1, 61):
        bigger = variant_windows(f, p, len(seq), seq[p], full.alt[60], h)
        assert max(kmer_tokens(bigger.ref), kmer_tokens(bigger.alt)) > 40
    assert len(w.ref) == 2 * w.flank + 1 and w.ref[w.flank] == seq[p]
    with pytest.raises(ValueError, match="alone take more than 1 tokens"):
        variant_windows(f, p, len(seq), seq[p:p + 3], "A", 60, count_tokens=kmer_tokens, max_tokens=1)


def test_default_flank_of_a_1000_token_6mer_model_is_2994():
    assert default_flank(kmer_tokens, 1000) == 2994
    assert kmer_tokens("A" * (2 * 2994 + 1)) == 1000
    # Brute force over a small budget: the largest odd ACGT window that fits.
    best = max(h for h in range(0, 400) if kmer_tokens(("ACGT" * 400)[:2 * h + 1]) <= 50)
    assert default_flank(kmer_tokens, 50) == best
    assert default_flank(len, 101) == 50  # one token per base, no CLS


def test_reverse_complement_keeps_the_variant_in_the_middle():
    p = 300
    alt = {"A": "G", "C": "T", "G": "A", "T": "C"}[CONTIG[p]]
    w = variant_windows(fetch, p, len(CONTIG), CONTIG[p], alt, 20)
    rc = reverse_complement_windows(w)
    assert rc.ref == reverse_complement(w.ref) and rc.alt == reverse_complement(w.alt)
    assert rc.ref[20] == reverse_complement(CONTIG[p]) and rc.alt[20] == reverse_complement(alt)
    assert rc.flank == w.flank and len(rc.ref) == 41


def test_positions_off_the_contig_are_refused():
    with pytest.raises(ValueError, match="does not lie on a contig"):
        half_width(500, 500, 10)
    with pytest.raises(ValueError, match="does not lie on a contig"):
        half_width(498, 500, 10, ref_length=3)
