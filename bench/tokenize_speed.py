"""Tokenizer speed: 100,000 random 300-bp sequences through the vectorised tokenizer.

Prints the median of several runs of ``Tokenizer.encode_batch`` and ``count_tokens``,
sequences per second, the ratio to the 5 s target (issue 2: 100,000 300-bp sequences
in under 5 s on one core), and, for comparison, a naive per-sequence pure-Python
tokenizer timed on a 10,000-sequence subset. All figures come from this one run.

Run on one core for the target's conditions::

    OMP_NUM_THREADS=1 taskset -c 0 python bench/tokenize_speed.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from embedcache.families.nt.tokenizer import Tokenizer

TARGET_S = 5.0


def random_sequences(n: int, length: int, *, n_fraction: float, seed: int) -> list[str]:
    """``n`` random sequences; a fraction of them get one short run of N."""
    rng = np.random.default_rng(seed)
    letters = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, size=(n, length))]
    with_n = np.flatnonzero(rng.random(n) < n_fraction)
    for row in with_n:
        start = rng.integers(0, length)
        letters[row, start:start + rng.integers(1, 20)] = ord("N")
    return [row.tobytes().decode("ascii") for row in letters]


def naive_encode(seq: str, vocab: dict[str, int], k: int) -> list[int]:
    """The obvious per-sequence loop: split at N, slice k-mers, look each up."""
    ids = [vocab["<cls>"]]
    for i, piece in enumerate(seq.split("N")):
        if i:
            ids.append(vocab["N"])
        full = len(piece) // k * k
        ids.extend(vocab[piece[s:s + k]] for s in range(0, full, k))
        ids.extend(vocab[base] for base in piece[full:])
    return ids


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--length", type=int, default=300)
    parser.add_argument("--n-fraction", type=float, default=0.0,
                        help="fraction of sequences holding a run of N (default 0)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    tok = Tokenizer("v2")
    seqs = random_sequences(args.n, args.length, n_fraction=args.n_fraction, seed=0)
    subset = seqs[:10_000]
    vocab = {token: i for i, token in enumerate(tok.tokens)}

    # Same ids from both, so the timings compare like with like.
    assert [a.tolist() for a in tok.encode_batch(subset[:1000])] == [naive_encode(s, vocab, 6) for s in subset[:1000]]

    t_encode = median_seconds(lambda: tok.encode_batch(seqs), args.repeats)
    t_count = median_seconds(lambda: tok.count_tokens(seqs), args.repeats)
    t_naive = median_seconds(lambda: [naive_encode(s, vocab, 6) for s in subset], max(1, args.repeats // 2))
    t_encode_subset = median_seconds(lambda: tok.encode_batch(subset), args.repeats)

    print(f"{args.n:,} sequences of {args.length} bp, {args.n_fraction:.0%} with an N run; "
          f"median of {args.repeats} runs")
    print(f"encode_batch    {t_encode:8.3f} s  {args.n / t_encode:12,.0f} seq/s  "
          f"target {TARGET_S:.0f} s / measured = {TARGET_S / t_encode:6.1f}x")
    print(f"count_tokens    {t_count:8.3f} s  {args.n / t_count:12,.0f} seq/s  "
          f"target {TARGET_S:.0f} s / measured = {TARGET_S / t_count:6.1f}x")
    print(f"10,000-sequence subset: naive Python loop {t_naive:.3f} s, encode_batch "
          f"{t_encode_subset:.3f} s, speed-up {t_naive / t_encode_subset:.1f}x")


if __name__ == "__main__":
    main()
