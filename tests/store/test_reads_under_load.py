"""Readers during writes, under load: 1,000 reads while 4 writers commit, a busy process on
every core, and not one error or mixed row, fill masks and per-row arrays included.

Each read is a snapshot of one commit (its manifest): the per-row arrays agree with each
other, every row the masks call filled holds the values its sequence's writer stored,
and a filled row stays filled. The writers are processes on the real write path
(``fence_writer.py``, values a function of the sequence), kept writing fresh sequences
until the reader is done (they stop when it creates their stop file), however fast they commit.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

from embedcache.store import Store, sequence_digest
from fence_writer import NAMES, SPEC, sequences, values
from test_fencing import HERE, ROOT, finish

READS = 1000


def _read_once(store: Store, filled_before: dict) -> bool:
    keys = store.keys()
    if SPEC.key not in keys:
        return False
    g = store.group(SPEC.key)
    if g.n_rows == 0 or not set(NAMES) <= set(g.array_names()):
        return False
    tail = np.arange(max(0, g.n_rows - 48), g.n_rows)  # the rows recent commits rewrote the chunks of
    seqs = g.row_array("sequence")[tail].tolist()
    digests = g.digests()[tail].tolist()
    assert [sequence_digest(s) for s in seqs] == digests
    np.testing.assert_array_equal(g.row_array("n_tokens")[tail], [len(s) // 6 + 1 for s in seqs])
    np.testing.assert_array_equal(g.rows_of(digests), tail)
    for name in NAMES:
        filled = g.filled(name)
        assert filled.size == g.n_rows
        before = filled_before.get(name, np.zeros(0, dtype=bool))
        assert filled[: before.size][before].all(), "a filled row became unfilled"
        filled_before[name] = filled
        mine = tail[filled[tail]]
        expected = [values(seqs[r - tail[0]], name) for r in mine.tolist()]
        if mine.size:
            np.testing.assert_array_equal(g.read(name, mine), np.stack(expected), err_msg=name)
    return True


def test_a_thousand_reads_during_four_writers_on_busy_cores(tmp_path):
    location = str(tmp_path / "c.zarr")
    stop = tmp_path / "stop"
    seqs = sequences(6000, seed=9)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)]), "FENCE_STOP": str(stop)}
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    writers = []
    try:
        for w in range(4):
            part = tmp_path / f"w{w}.txt"
            part.write_text("\n".join(seqs[w * 1000: w * 1000 + 3000]))  # overlapping
            # Endless: each goes on with fresh sequences until the reader is done, however fast it commits.
            writers.append(subprocess.Popen([sys.executable, str(HERE / "fence_writer.py"), location, str(part), "6"],
                                            cwd=ROOT, env={**env, "FENCE_ENDLESS": str(w + 1)},
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        store, seen, reads = Store(location), {}, 0
        while reads < READS:
            assert all(p.poll() is None for p in writers), "a writer ended before the reader was done"
            if _read_once(store, seen):
                reads += 1
        stop.touch()
        counts = [finish(p) for p in writers]
    finally:
        stop.touch()
        for p in busy + writers:
            p.kill()
            p.wait()
    assert sum(c["written"] for c in counts) == store.group(SPEC.key).n_rows
    assert store.verify() == []
