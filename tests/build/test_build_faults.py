"""A real `embedcache build` meets Ctrl-C, a full disk and a read-only file system.

Disk full and read-only use a real tmpfs mount (root may mount here); where mounting is
not permitted those two are skipped with the reason, and the OSError mapping they rely on
is covered by tests/test_cli_faults.py.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_V2
from embedcache import EmbeddingCache
from embedcache.store import Store

pytestmark = pytest.mark.usefixtures("jax_compile_cache")

ROOT = Path(__file__).parents[2]
ARGS = ["--model", str(TINY_V2 / "checkpoint"), "--max-tokens", "64", "--layers", "1,2", "--attention", "1:1",
        "--batch-size", "4", "--quiet"]
N = 400


def _fasta(path: Path) -> Path:
    rng = np.random.default_rng(5)
    path.write_text("".join(f">s{i}\n{''.join(rng.choice(list('ACGT'), size=int(rng.integers(60, 200))))}\n"
                            for i in range(N)))
    return path


def _build(fasta: Path, cache: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cli.embedcache_app", "build", str(fasta), "--cache", str(cache),
                             *ARGS], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _n_rows(cache: Path) -> int:
    store = Store(cache)
    return store.group(store.keys()[0]).n_rows if store.exists() and store.keys() else 0


def _committed_message(err: str) -> int:
    found = re.search(r"this build committed (\d+) new row\(s\)", err)
    assert found, err
    return int(found.group(1))


@pytest.fixture()
def tmpfs(tmp_path):
    """Mount a small tmpfs; yields a function (size) -> mount point; unmounts at the end."""
    mounts = []

    def mount(size: str, name: str = "disk") -> Path:
        point = tmp_path / name
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                              capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})")
        mounts.append(point)
        return point

    yield mount
    for point in reversed(mounts):
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def test_ctrl_c_during_a_build_says_how_many_rows_were_committed(tmp_path, jax_compile_cache):
    fasta, cache = _fasta(tmp_path / "in.fa"), tmp_path / "cache.zarr"
    env = {**os.environ, **jax_compile_cache, "EMBEDCACHE_COMMIT_SECONDS": "0.05"}
    proc = _build(fasta, cache, env)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None and _n_rows(cache) < 20:
            time.sleep(0.05)
        assert proc.poll() is None, "the build ended before it could be interrupted: enlarge the input"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "rerun the same command to resume" in err
    committed = _committed_message(err)
    assert 20 <= committed == _n_rows(cache) < N
    assert Store(cache).verify() == []


def test_disk_full_during_a_build_exits_1_keeping_whole_rows_and_a_rerun_resumes(tmp_path, tmpfs,
                                                                                     jax_compile_cache):
    fasta, disk = _fasta(tmp_path / "in.fa"), tmpfs("2m")
    env = {**os.environ, **jax_compile_cache, "EMBEDCACHE_COMMIT_SECONDS": "0.05"}
    proc = _build(fasta, disk / "cache.zarr", env)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    assert "No space left on device" in err and "free space" in err and "Traceback" not in err
    committed = _committed_message(err)
    assert 0 < committed == _n_rows(disk / "cache.zarr") < N
    assert Store(disk / "cache.zarr").verify() == []  # the committed rows are intact
    # Moved to a larger disk, the same build resumes: only the rows not committed are computed.
    subprocess.run(["cp", "-r", str(disk / "cache.zarr"), str(tmp_path / "moved.zarr")], check=True)
    report = EmbeddingCache(tmp_path / "moved.zarr").build(
        fasta, model=TINY_V2 / "checkpoint", max_tokens=64, layers=[1, 2], attention=[(1, 1)], batch_size=4,
        quiet=True)
    assert report.new_rows == N - committed and _n_rows(tmp_path / "moved.zarr") == N


def test_build_on_a_read_only_store_exits_1_and_reads_still_work(tmp_path, tmpfs, jax_compile_cache):
    disk = tmpfs("16m")
    seqs = ["ACGTACGTTTGACCA" * 4, "GGGATTACAGATTACA" * 3]
    EmbeddingCache(disk / "cache.zarr").build(seqs, model=TINY_V2 / "checkpoint", max_tokens=64, layers=[2],
                                              quiet=True)
    remount = subprocess.run(["mount", "-o", "remount,ro", str(disk)], capture_output=True, text=True)
    if remount.returncode:
        pytest.skip(f"cannot remount the tmpfs read-only here ({remount.stderr.strip()})")
    fasta = _fasta(tmp_path / "in.fa")
    for args in (["build", str(fasta), "--cache", str(disk / "cache.zarr"), *ARGS],
                 ["verify", str(disk / "cache.zarr"), "--repair"]):
        run = subprocess.run([sys.executable, "-m", "cli.embedcache_app", *args], cwd=ROOT, capture_output=True,
                             text=True, timeout=300, env={**os.environ, **jax_compile_cache})
        assert run.returncode == 1, run.stderr
        assert "read-only" in run.stderr.lower() and "writable location" in run.stderr
        assert "Traceback" not in run.stderr
    assert EmbeddingCache(disk / "cache.zarr").embeddings(seqs, layer=2).shape == (2, 64)
