"""An S3-protocol server (moto, server mode) on localhost, as a fixture: ``from s3_server import s3``."""

from __future__ import annotations

import os
import socket

import pytest

moto_server = pytest.importorskip("moto.server", reason="moto[server] is a test dependency (pip install -e .[test])")
boto3 = pytest.importorskip("boto3")


@pytest.fixture(scope="module")
def s3():
    """An S3 endpoint on localhost with a bucket ``caches``, and the environment that points clients at it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    boto3.client("s3").create_bucket(Bucket="caches")
    try:
        yield env
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
