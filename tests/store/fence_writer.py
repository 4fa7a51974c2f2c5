"""A store writer process for the fencing tests: no model, values a function of the sequence.

``python fence_writer.py LOCATION SEQUENCES_FILE BLOCK_ROWS`` writes every sequence of the
file (one per line) into the group of :data:`SPEC` with arrays :data:`NAMES`, planning
on the committed state like a build, committing every ``BLOCK_ROWS`` rows; it prints
one JSON line of counts. The tests stop, continue and kill it (``EMBEDCACHE_TEST_PAUSE``),
or end it early by creating the file ``FENCE_STOP`` names; with ``FENCE_ENDLESS=<seed>``
it goes on with fresh sequences until then.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from embedcache.store import ModelSpec, Store, StoreWriting, pooled_name, sequence_digest

D = 8
SPEC = ModelSpec(param_digest="fe" * 32, max_tokens=16)
NAMES = [pooled_name(1, "cls"), pooled_name(2, "mean")]


def values(seq: str, name: str) -> np.ndarray:
    rng = np.random.default_rng(int(sequence_digest(seq)[:8], 16) + len(name) * 7919 + int(name[6]))
    return rng.standard_normal(D).astype(np.float32)


def sequences(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return list(dict.fromkeys("".join(rng.choice(list("ACGT"), size=int(rng.integers(8, 40)))) for _ in range(n)))


def _more(seqs: list[str]):
    """``seqs``, then, if ``FENCE_ENDLESS`` is set, fresh sequences (seeded by it) until the
    stop file appears: a writer that is still writing whatever the machine's speed."""
    yield from seqs
    seed = os.environ.get("FENCE_ENDLESS")
    rng = np.random.default_rng(int(seed) if seed else 0)
    while seed:
        yield "".join(rng.choice(list("ACGT"), size=int(rng.integers(41, 80))))


def write(location: str, seqs: list[str], block_rows: int) -> dict:
    store = Store(location)
    writer = StoreWriting(store, timeout=120).group(SPEC, {"model_name": "fence"}, block_rows=block_rows,
                                              commit_seconds=1e9)
    writer.ensure_arrays(NAMES, feature_dim=D)
    snap = writer.snapshot()
    rows = snap.index([sequence_digest(s) for s in seqs])
    filled = {n: snap.filled(n) for n in NAMES}
    queued = set()
    stop = os.environ.get("FENCE_STOP")  # a file whose appearance ends the writing early
    for i, s in enumerate(_more(seqs)):
        if stop and i % 8 == 0 and os.path.exists(stop):
            break
        d = sequence_digest(s)
        if d in rows:
            lacking = [n for n in NAMES if not filled[n][rows[d]]]
            if lacking:
                writer.add_old_row(rows[d], {n: values(s, n) for n in lacking})
        elif d not in queued:
            queued.add(d)
            writer.add_new_row(d, s, len(s) // 6 + 1, 1, {n: values(s, n) for n in NAMES})
    writer.flush()
    return {"written": writer.rows_written, "skipped": writer.rows_skipped, "lost": writer.swaps_lost}


if __name__ == "__main__":
    location, path, block = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print(json.dumps(write(location, open(path).read().split(), block)), flush=True)
