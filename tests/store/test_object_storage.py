"""The cache on object storage: a real S3-protocol server (moto, server mode) on localhost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_V2
from embedcache import EmbeddingCache
from embedcache.store import LEASE_NAME, ModelSpec, Store, StoreWriting, pooled_name, sequence_digest
from embedcache.store import access
from embedcache.store.lock import commit_lock

from s3_server import boto3, s3  # noqa: F401 - s3 is a fixture

pytestmark = pytest.mark.usefixtures("jax_compile_cache")

CKPT = TINY_V2 / "checkpoint"
ROOT = Path(__file__).parents[2]
API = dict(model=CKPT, max_tokens=64, layers=[2], batch_size=4, quiet=True)


def _seqs(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGT"), size=int(rng.integers(30, 85)))) for _ in range(n)]


def _objects(prefix: str) -> list[str]:
    listing = boto3.client("s3").list_objects_v2(Bucket="caches", Prefix=prefix)
    return [o["Key"] for o in listing.get("Contents", [])]


def test_build_read_reuse_and_cli_on_s3(s3, tmp_path):
    seqs = _seqs(40, seed=1)
    remote = EmbeddingCache("s3://caches/one.zarr")
    report = remote.build(seqs, **API)
    assert report.computed == 40
    local = EmbeddingCache(tmp_path / "local.zarr")
    local.build(seqs, **API)
    np.testing.assert_allclose(remote.embeddings(seqs[::-1], layer=2, pool="mean"),
                               local.embeddings(seqs[::-1], layer=2, pool="mean"), atol=1e-6)
    assert remote.build(seqs[:30], **API).computed == 0  # reuse
    assert remote.verify() == []
    assert any(k.startswith("one.zarr/") and k.endswith("zarr.json") for k in _objects("one.zarr/"))
    assert not (tmp_path / "s3:").exists() and not Path("s3:").exists()  # nothing written locally
    env = {**os.environ, **s3}
    for args, expect in ((["info", "s3://caches/one.zarr"], "40 / 40 rows"),
                         (["verify", "s3://caches/one.zarr"], "ok (40 rows checked)")):
        done = subprocess.run([sys.executable, "-m", "cli.embedcache_app", *args], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and expect in done.stdout, done.stderr[-1500:]


def test_killed_build_on_s3_resumes(s3, tmp_path, jax_compile_cache):
    seqs = _seqs(160, seed=2)
    fasta = tmp_path / "in.fa"
    fasta.write_text("".join(f">s{i}\n{s}\n" for i, s in enumerate(seqs)))
    url = "s3://caches/killed.zarr"
    cmd = [sys.executable, "-m", "cli.embedcache_app", "build", str(fasta), "--cache", url, "--model", str(CKPT),
           "--max-tokens", "64", "--layers", "2", "--batch-size", "4", "--quiet"]
    # A writer killed mid-commit leaves its lease until it expires: the rerun waits that long.
    env = {**os.environ, **s3, **jax_compile_cache, "EMBEDCACHE_COMMIT_SECONDS": "0.05",
           "EMBEDCACHE_LEASE_SECONDS": "5"}
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        store = Store(url)
        while proc.poll() is None and time.monotonic() < deadline:
            keys = store.keys()
            if keys and store.group(keys[0]).n_rows > 0:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    cache = EmbeddingCache(url)
    rows = cache.group().n_rows
    assert 0 < rows < len(seqs), f"killed at {rows} rows: not mid-way"
    assert cache.verify() == []
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{len(seqs) - rows} computed, {rows} reused" in done.stdout
    assert cache.verify() == [] and cache.group().n_rows == len(seqs)
    reference = EmbeddingCache(tmp_path / "ref.zarr")
    reference.build(seqs, **API)
    np.testing.assert_allclose(cache.embeddings(seqs, layer=2, pool="cls"),
                               reference.embeddings(seqs, layer=2, pool="cls"), atol=1e-5)


def test_a_second_committer_waits_for_the_lease(s3):
    store = Store("s3://caches/lease.zarr")
    spec = ModelSpec(param_digest="ab" * 32, max_tokens=16)
    writer = StoreWriting(store).group(spec, {"model_name": "synthetic"})
    name = pooled_name(2, "cls")
    writer.ensure_arrays([name], feature_dim=4)
    writer.add_new_row(sequence_digest("ACGT"), "ACGT", 2, 1, {name: np.ones(4, np.float32)})

    held = threading.Event()

    def hold():
        with commit_lock(store, 5):
            held.set()
            lease = json.loads(access.get_bytes(store.zstore, LEASE_NAME))
            assert lease["expires"] > time.time()  # the lease states its expiry
            time.sleep(1.5)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    t0 = time.monotonic()
    writer.flush()  # waits for the holder's lease to go, then commits
    waited = time.monotonic() - t0
    holder.join()
    assert waited >= 1.0, waited
    assert store.group(spec.key).n_rows == 1
    assert access.get_bytes(store.zstore, LEASE_NAME) is None  # released

    # A lease whose holder died is taken over once expired, never before.
    expires = time.time() + 2
    assert access.create_exclusive(store.zstore, LEASE_NAME, json.dumps({"owner": "dead", "expires": expires}).encode())
    assert not access.create_exclusive(store.zstore, LEASE_NAME, b"{}")  # the conditional write refuses
    with commit_lock(store, 0.3):
        assert time.time() >= expires
        assert json.loads(access.get_bytes(store.zstore, LEASE_NAME))["owner"] != "dead"


def test_memory_url(tmp_path):
    seqs = _seqs(12, seed=3)
    cache = EmbeddingCache("memory://embedcache-test/cache.zarr")
    cache.build(seqs, **API)
    assert cache.embeddings(seqs, layer=2, pool="cls").shape == (12, 64)
    assert cache.verify() == []


def test_classify_reads_a_cache_at_a_url_with_storage_options(s3, tmp_path, monkeypatch, capsys):
    """`classify --cache s3://...` takes the same locations as `embedcache`, and its
    --storage-option reaches the store: here the endpoint comes from the option alone."""
    from conftest import planted_task, run_cli, write_feature_store

    import cli.classify_app as classify_app

    table, feats = planted_task(n=120)
    write_feature_store("s3://caches/planted.zarr", table["sequence"].tolist(), feats)
    task = tmp_path / "task.csv"
    table.to_csv(task, index=False)
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    code, out, err = run_cli(classify_app, [
        "fit", "--data", task, "--cache", "s3://caches/planted.zarr", "--layer", "2",
        "--storage-option", f"client_kwargs.endpoint_url={endpoint}", "--out", tmp_path / "run"], monkeypatch, capsys)
    assert code == 0, err
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["features"]["store"] == "s3://caches/planted.zarr"
    assert record["metrics"]["test"]["mcc"] > 0.5  # the planted signal, read from S3
