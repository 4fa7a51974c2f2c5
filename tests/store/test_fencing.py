"""Fencing, not timing: a writer whose lease lapsed can never make its commit visible.

Writers are processes (``fence_writer.py``: the real write path, values a function of the
sequence) on a local store using the lease (``EMBEDCACHE_LOCK=lease``) and on an
S3-protocol server (moto); the lease lasts 0.3 s. Faults are made to happen, not hoped
for: a writer stops itself at a named point of its commit (``EMBEDCACHE_TEST_PAUSE``,
:mod:`embedcache.store.pause`), the test lets others commit past its lease, then
continues or kills it. Every scenario ends with each sequence stored once, with the
values one writer alone would have stored, ``verify`` clean and no traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embedcache.store import Store, sequence_digest
from fence_writer import NAMES, SPEC, sequences, values
from s3_server import s3  # noqa: F401 - a fixture

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
LEASE = "0.3"


@pytest.fixture(params=["local", "s3"])
def location(request, tmp_path) -> str:
    if request.param == "s3":
        request.getfixturevalue("s3")
        return f"s3://caches/{tmp_path.name}.zarr"
    return str(tmp_path / "c.zarr")


def start(location: str, seqs: list[str], tmp_path: Path, name: str, *, pause: str = "",
          block: int = 16) -> subprocess.Popen:
    path = tmp_path / f"{name}.txt"
    path.write_text("\n".join(seqs))
    env = {**os.environ, "EMBEDCACHE_LEASE_SECONDS": LEASE, "EMBEDCACHE_LOCK": "lease",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)])}
    env.pop("EMBEDCACHE_TEST_PAUSE", None)
    if pause:
        env["EMBEDCACHE_TEST_PAUSE"] = pause
    return subprocess.Popen([sys.executable, str(HERE / "fence_writer.py"), location, str(path), str(block)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0 and "Traceback" not in err, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def wait_for(marker: Path, proc: subprocess.Popen) -> bool:
    """Whether ``proc`` stopped itself at its pause point (it wrote ``marker``) rather than exiting."""
    while not marker.exists():
        if proc.poll() is not None:
            return False
        try:
            proc.wait(timeout=0.02)
        except subprocess.TimeoutExpired:
            pass
    return True


def check(location: str, seqs: list[str]) -> None:
    """Each sequence once, with the values a single writer stores; ``verify`` clean."""
    store = Store(location)
    assert store.verify() == []
    g = store.group(SPEC.key)
    digests = g.digests().tolist()
    assert len(digests) == len(set(digests)), "a sequence stored twice"
    assert set(digests) == {sequence_digest(s) for s in seqs}
    rows = g.rows_of([sequence_digest(s) for s in seqs])
    assert (rows >= 0).all()
    for name in NAMES:
        assert g.filled(name).all(), name
        np.testing.assert_array_equal(g.read(name, rows), np.stack([values(s, name) for s in seqs]), err_msg=name)


def test_four_writers_with_a_short_lease_store_what_one_writer_stores(location, tmp_path):
    seqs = sequences(400, seed=1)
    parts = [seqs[0:160], seqs[80:260], seqs[200:400], seqs[:40] + seqs[340:]]
    procs = [start(location, part, tmp_path, f"w{i}", block=12) for i, part in enumerate(parts)]
    counts = [finish(p) for p in procs]
    assert sum(c["written"] for c in counts) == len(seqs)  # no row written twice
    check(location, seqs)


@pytest.mark.parametrize("point", ["locked", "before_publish", "after_publish"])
def test_a_writer_stopped_past_its_lease_then_continued(location, tmp_path, point):
    seqs = sequences(300, seed=2)
    marker = tmp_path / "stopped"
    # Stopped at its second commit's point: it has committed, holds the lease, and is mid-commit.
    first = start(location, seqs[:200], tmp_path, "first", pause=f"{point}:{marker}:2")
    try:
        assert wait_for(marker, first), first.communicate()[1][-3000:]
        # Another writer takes the lapsed lease and commits, overlapping rows included.
        second = finish(start(location, seqs[100:], tmp_path, "second"))
        assert second["written"] >= 100
    finally:
        os.kill(first.pid, signal.SIGCONT)
    counts = finish(first)
    if point == "before_publish":
        assert counts["lost"] >= 1  # its swap failed: it planned again on the new state
    assert counts["written"] + second["written"] == len(seqs)
    check(location, seqs)


def test_a_writer_killed_after_writing_its_chunks_leaves_only_leftovers(location, tmp_path):
    from embedcache.store import gc

    seqs = sequences(120, seed=3)
    marker = tmp_path / "stopped"
    victim = start(location, seqs, tmp_path, "victim", pause=f"before_publish:{marker}:3")
    assert wait_for(marker, victim)
    victim.kill()
    victim.communicate()
    committed = Store(location).group(SPEC.key).n_rows
    assert 0 < committed < len(seqs) and Store(location).verify() == []
    assert gc.leftovers(Store(location)).objects  # its chunks: named by no commit
    finish(start(location, seqs, tmp_path, "rerun"))
    check(location, seqs)
    gone = gc.collect(Store(location), older_than=0)
    assert gone.objects and gc.leftovers(Store(location)).objects == {}
    check(location, seqs)


@pytest.mark.slow
def test_random_kills_and_stops_past_the_lease_end_as_one_writer(tmp_path):
    """Seeded fault injection: 50 trials of 3 writers on a local store with the lease, each
    writer at random untouched, or stopped at a random point of a random commit and then
    killed or continued after the others finished; a rerun completes what was killed."""
    rng = np.random.default_rng(20)
    points = ["locked", "before_publish", "after_publish"]
    for trial in range(50):
        where = tmp_path / f"t{trial}"
        where.mkdir()
        location = str(where / "c.zarr")
        seqs = sequences(int(rng.integers(60, 140)), seed=100 + trial)
        n = len(seqs)
        procs, faults = [], []
        for w in range(3):
            a = int(rng.integers(0, n // 2))
            b = int(rng.integers(a + 10, n + 1))
            fault = rng.choice(["none", "kill", "continue"])
            marker = where / f"stop{w}"
            pause = f"{rng.choice(points)}:{marker}:{int(rng.integers(1, 4))}" if fault != "none" else ""
            procs.append(start(location, seqs[a:b], where, f"w{w}", pause=pause, block=int(rng.integers(4, 20))))
            faults.append((fault, marker))
        stopped = [wait_for(marker, p) if fault != "none" else False for p, (fault, marker) in zip(procs, faults)]
        for p, (fault, _), stop in zip(procs, faults, stopped):
            if not stop:
                finish(p)
        for p, (fault, _), stop in zip(procs, faults, stopped):
            if stop and fault == "kill":
                p.kill()
                p.communicate()
            elif stop:
                os.kill(p.pid, signal.SIGCONT)
                finish(p)
        finish(start(location, seqs, where, "rerun"))
        check(location, seqs)
