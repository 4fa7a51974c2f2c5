"""`build(..., dask=...)` on a real LocalCluster of worker processes: the same store as a local
build; each worker loads the checkpoint once; a worker killed mid-build has its work rerun by
Dask; a client killed mid-build leaves whole rows and a rerun resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
from distributed import Client, LocalCluster, WorkerPlugin

from conftest import TINY_V2
from embedcache import EmbeddingCache
from embedcache.engine.dask import worker_loads
from embedcache.errors import InputError
from embedcache.store import Store, sequence_digest

# The worker plugin below travels to the worker processes by value (they cannot import tests/).
cloudpickle.register_pickle_by_value(sys.modules[__name__])

CKPT = TINY_V2 / "checkpoint"
ROOT = Path(__file__).parents[2]
API = dict(model=CKPT, max_tokens=64, layers=[1, 2], batch_size=4, quiet=True)
NAMES = ["layer_1_cls", "layer_1_mean", "layer_2_cls", "layer_2_mean"]


def _seqs(n: int, seed: int = 5) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGT"), size=int(rng.integers(30, 85)))) for _ in range(n)]


@pytest.fixture
def cluster(monkeypatch, jax_compile_cache):
    for k, v in jax_compile_cache.items():  # the workers share the session's compiled programs
        monkeypatch.setenv(k, v)
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        yield client


def _assert_same_as_local(cache: EmbeddingCache, seqs: list[str], tmp_path: Path) -> None:
    assert cache.verify() == []
    group = cache.group()
    assert sorted(group.digests().tolist()) == sorted({sequence_digest(s) for s in seqs})
    assert all(group.filled(n).all() for n in NAMES)
    local = EmbeddingCache(tmp_path / "local.zarr")
    local.build(seqs, **API)
    assert local.group().key == group.key
    for name in NAMES:
        layer, pool = int(name.split("_")[1]), name.split("_")[2]
        np.testing.assert_allclose(cache.embeddings(seqs, layer=layer, pool=pool),
                                   local.embeddings(seqs, layer=layer, pool=pool), atol=1e-5)


def test_dask_build_equals_local_build_and_workers_load_once(cluster, tmp_path):
    seqs = _seqs(120)
    cache = EmbeddingCache(tmp_path / "dask.zarr")
    report = cache.build(seqs + seqs[:30], dask=cluster, **API)
    assert (report.unique, report.computed, report.new_rows) == (120, 120, 120)
    assert list(cluster.run(worker_loads).values()) == [1, 1]  # 30 tasks, one load per worker
    _assert_same_as_local(cache, seqs, tmp_path)
    # A second build finds everything: no task is submitted.
    again = cache.build(seqs, dask=cluster, **API)
    assert (again.computed, again.reused) == (0, 120)


class KillOnce(WorkerPlugin):
    """Kills its worker process (SIGKILL) when it starts its third task; once per cluster."""

    def __init__(self, marker: str):
        self.marker, self.started = marker, 0

    def transition(self, key, start, finish, **kwargs):
        if finish != "executing":
            return
        self.started += 1
        if self.started == 3:
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                return
            os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.slow
def test_worker_killed_mid_build_the_build_completes(cluster, tmp_path):
    seqs = _seqs(120, seed=6)
    pids = set(cluster.run(os.getpid).values())
    marker = tmp_path / "killed"
    cluster.register_plugin(KillOnce(str(marker)))
    cache = EmbeddingCache(tmp_path / "dask.zarr")
    report = cache.build(seqs, dask=cluster, **API)
    assert marker.exists(), "no worker was killed"
    assert report.computed == 120
    assert set(cluster.run(os.getpid).values()) != pids  # the nanny started a new worker process
    _assert_same_as_local(cache, seqs, tmp_path)


class Slow(WorkerPlugin):
    """Delays each task's start, so that a build of the tiny model lasts long enough to be killed."""

    def transition(self, key, start, finish, **kwargs):
        if finish == "executing":
            time.sleep(0.1)


@pytest.mark.slow
def test_client_killed_mid_build_leaves_whole_rows_and_a_rerun_resumes(cluster, tmp_path, jax_compile_cache):
    seqs = _seqs(400, seed=7)
    cluster.register_plugin(Slow())
    fasta, cache_path = tmp_path / "in.fa", tmp_path / "dask.zarr"
    fasta.write_text("".join(f">r{i}\n{s}\n" for i, s in enumerate(seqs)))
    address = cluster.scheduler.address
    cmd = [sys.executable, "-m", "cli.embedcache_app", "build", str(fasta), "--cache", str(cache_path),
           "--model", str(CKPT), "--max-tokens", "64", "--layers", "1,2", "--batch-size", "4", "--quiet",
           "--dask", address]
    env = {**os.environ, **jax_compile_cache, "EMBEDCACHE_COMMIT_SECONDS": "0.05"}
    client = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and client.poll() is None:
            store = Store(cache_path)
            if store.exists() and store.keys() and store.group(store.keys()[0]).n_rows >= 10:
                break
            time.sleep(0.02)
        killed = client.poll() is None
        os.kill(client.pid, signal.SIGKILL)
        client.communicate(timeout=60)
    finally:
        client.kill()
    assert killed, "the client finished before it could be killed: enlarge the input"
    cache = EmbeddingCache(cache_path)
    assert cache.verify() == []  # whole rows only
    rows = cache.group().n_rows
    assert 10 <= rows < 400
    assert all(cache.group().filled(n).all() for n in NAMES)

    rerun = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"{400 - rows} computed, {rows} reused" in rerun.stdout
    _assert_same_as_local(EmbeddingCache(cache_path), seqs, tmp_path)


@pytest.mark.parametrize("spec", ["local:0", "local:x", ""])
def test_bad_dask_specs_are_refused_before_anything_is_written(spec, tmp_path):
    with pytest.raises(InputError, match="--dask"):
        EmbeddingCache(tmp_path / "c.zarr").build(_seqs(3), dask=spec, **API)
    assert not (tmp_path / "c.zarr").exists()
