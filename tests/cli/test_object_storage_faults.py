"""Object storage faults end in one message naming S3 and the endpoint or the bucket (issue 18).

A real S3-protocol server (moto, server mode) in its own process, so that the test can take it
away mid-build: it is killed once the build's first commit is visible, an event, not a delay.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_BUILD_ARGS

pytest.importorskip("moto.server", reason="moto[server] is a test dependency (pip install -e .[test])")
boto3 = pytest.importorskip("boto3")

ROOT = Path(__file__).resolve().parents[2]
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def server(monkeypatch):
    """A moto server process with the bucket ``caches``; yields (process, endpoint)."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for key, value in {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3")
    for _ in range(600):  # until it answers (it is starting)
        try:
            client.create_bucket(Bucket="caches")
            break
        except Exception:
            if proc.poll() is not None:
                raise RuntimeError("moto server did not start")
            time.sleep(0.1)
    try:
        yield proc, endpoint
    finally:
        proc.kill()
        proc.wait()


def _fasta(path: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    path.write_text("".join(f">s{i}\n{''.join(rng.choice(list('ACGT'), size=int(rng.integers(30, 85))))}\n"
                            for i in range(n)))
    return path


def _build(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cli.embedcache_app", "build", *args, *TINY_BUILD_ARGS],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _one_error(stderr: str) -> str:
    assert "Traceback" not in stderr and "never retrieved" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


def test_unreachable_endpoint(tmp_path):
    endpoint = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    env = {**os.environ, **CREDENTIALS, "AWS_ENDPOINT_URL": endpoint, "AWS_MAX_ATTEMPTS": "1"}
    out, err = _build(str(_fasta(tmp_path / "in.fa", 3)), "--cache", "s3://caches/c.zarr", env=env).communicate(timeout=300)
    line = _one_error(err)
    assert f"cannot reach the S3 endpoint {endpoint} (the cache s3://caches/c.zarr)" in line
    assert "AWS_ENDPOINT_URL" in line


def test_missing_bucket(server, tmp_path):
    build = _build(str(_fasta(tmp_path / "in.fa", 3)), "--cache", "s3://no-such-bucket/c.zarr")
    out, err = build.communicate(timeout=300)
    assert build.returncode == 1
    line = _one_error(err)
    assert "the bucket 'no-such-bucket' does not exist on the S3 endpoint" in line and server[1] in line
    assert "aws s3 mb s3://no-such-bucket" in line


def test_server_lost_mid_build(server, tmp_path):
    proc, endpoint = server
    marker = tmp_path / "paused"
    # A commit every 4 rows; the build stops itself (SIGSTOP) the fifth time it takes the commit
    # lock: the store and group were made, and at least one commit of rows is whole. The server
    # is then killed and the build continued.
    build = _build(str(_fasta(tmp_path / "in.fa", 40)), "--cache", "s3://caches/lost.zarr",
                   env={**os.environ, "EMBEDCACHE_COMMIT_ROWS": "4", "EMBEDCACHE_TEST_PAUSE": f"locked:{marker}:5"})
    try:
        while not marker.exists():
            assert build.poll() is None, build.communicate()[1]
            time.sleep(0.05)
        proc.kill()
        proc.wait()
        os.kill(int(marker.read_text()), signal.SIGCONT)
        out, err = build.communicate(timeout=300)
    finally:
        build.kill()
    assert build.returncode == 1
    line = _one_error(err)
    assert f"cannot reach the S3 endpoint {endpoint} (the cache s3://caches/lost.zarr)" in line
    committed = [l for l in err.splitlines() if l.startswith("this build committed ")]
    assert len(committed) == 1 and int(committed[0].split()[3]) >= 4
