"""A real `embedcache build` killed with SIGKILL mid-way; a second writer; readers during a build."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_V2
from embedcache import EmbeddingCache
from embedcache.errors import StoreLockedError
from embedcache.store import sequence_digest

pytestmark = pytest.mark.usefixtures("jax_compile_cache")

CKPT = TINY_V2 / "checkpoint"
N = 400
ARGS = ["--model", str(CKPT), "--max-tokens", "64", "--layers", "1,2", "--attention", "1:1",
        "--batch-size", "4", "--quiet"]
API = dict(model=CKPT, max_tokens=64, layers=[1, 2], attention=[(1, 1)], batch_size=4, quiet=True)


def _fasta(path: Path) -> tuple[Path, list[str]]:
    rng = np.random.default_rng(42)
    seqs = ["".join(rng.choice(list("ACGT"), size=int(rng.integers(200, 330)))) for _ in range(N)]
    path.write_text("".join(f">s{i}\n{s}\n" for i, s in enumerate(seqs)))
    return path, seqs


def _build_cmd(fasta: Path, cache: Path) -> list[str]:
    return [sys.executable, "-m", "cli.embedcache_app", "build", str(fasta), "--cache", str(cache), *ARGS]


def _committed_rows(cache: Path) -> int:
    """Read the commit straight from the group's metadata, as a reader would."""
    for meta in cache.glob("*/zarr.json"):
        try:
            return int(json.loads(meta.read_text())["attributes"].get("n_rows", 0))
        except (ValueError, KeyError):
            return 0
    return 0


def _content(cache: EmbeddingCache) -> dict:
    group = cache.group()
    out = {}
    digests = group.digests().tolist()
    for name in group.array_names():
        filled = group.filled(name)
        values = group.read(name, np.arange(group.n_rows))
        out[name] = {d: values[i] for i, d in enumerate(digests) if filled[i]}
    return out


def test_sigkill_mid_build_leaves_whole_rows_and_resumes_to_the_same_content(tmp_path, jax_compile_cache):
    fasta, seqs = _fasta(tmp_path / "in.fa")
    reference = EmbeddingCache(tmp_path / "reference.zarr")
    reference.build(fasta, **API)
    want = _content(reference)

    crashed = tmp_path / "crashed.zarr"
    marker = tmp_path / "stopped"
    # The build stops itself mid-commit (its third: chunks written, not yet swapped in), and is killed there.
    env = {**os.environ, **jax_compile_cache, "EMBEDCACHE_COMMIT_SECONDS": "0.1", "EMBEDCACHE_COMMIT_ROWS": "8",
           "EMBEDCACHE_TEST_PAUSE": f"before_publish:{marker}:3"}
    proc = subprocess.Popen(_build_cmd(fasta, crashed), env=env, cwd=Path(__file__).parents[2],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        while not marker.exists():
            assert proc.poll() is None, "the build ended before its third commit: enlarge the input"
            time.sleep(0.01)
        # A reader during the build: the committed rows are readable, the lock is not needed.
        during = EmbeddingCache(crashed)
        group = during.group()
        committed = group.row_array("sequence").tolist()
        assert committed and during.embeddings(committed, layer=2, pool="mean").shape == (len(committed), 64)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]

    cache = EmbeddingCache(crashed)
    rows = cache.group().n_rows
    assert 0 < rows < N, f"the kill came at {rows} of {N} rows: not mid-way"
    assert cache.verify() == []
    partial = _content(cache)
    # Only whole rows: every committed row holds every array, with the reference's values.
    for name, values in partial.items():
        assert len(values) == rows, name
        for digest, value in values.items():
            np.testing.assert_allclose(value, want[name][digest], atol=1e-5)

    done = subprocess.run(_build_cmd(fasta, crashed), env={**os.environ, **jax_compile_cache},
                          cwd=Path(__file__).parents[2], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{N - rows} computed, {rows} reused" in done.stdout
    assert cache.verify() == []
    assert not list(crashed.rglob("*.partial"))
    got = _content(cache)
    assert got.keys() == want.keys()
    for name in want:
        assert got[name].keys() == want[name].keys() == {sequence_digest(s) for s in seqs}
        for digest in want[name]:
            np.testing.assert_allclose(got[name][digest], want[name][digest], atol=1e-5)


_HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from embedcache.store import Store
    from embedcache.store.lock import commit_lock
    with commit_lock(Store(sys.argv[1]), 5):
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
""")


def test_second_writer_fails_clearly_or_waits(tmp_path, jax_compile_cache):
    _, seqs = _fasta(tmp_path / "all.fa")
    fasta = tmp_path / "in.fa"
    fasta.write_text("".join(f">s{i}\n{s}\n" for i, s in enumerate(seqs[:16])))
    cache = EmbeddingCache(tmp_path / "c.zarr")
    cache.build(seqs[:8], **API)
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(cache.path), "3"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StoreLockedError) as err:
            cache.build(seqs[8:16], lock_timeout=0.2, **API)
        assert "another writer has been committing" in str(err.value) and str(cache.path) in str(err.value)
        assert cache.group().n_rows == 8  # readers still read
        # The command line waits for the lock (10 s by default) and then does its work.
        t0 = time.monotonic()
        done = subprocess.run(_build_cmd(fasta, cache.path), env={**os.environ, **jax_compile_cache},
                              cwd=Path(__file__).parents[2], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert holder.poll() is not None and time.monotonic() - t0 > 1.0
    finally:
        holder.kill()
        holder.wait()
    assert cache.group().n_rows == 16
