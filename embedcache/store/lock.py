"""The commit lock: writers take turns, so that they rarely waste work.

It only saves work: what makes a commit safe is its swap (:mod:`.manifest`), which a
writer whose lock or lease ran out loses. Set ``EMBEDCACHE_LOCK=lease`` to use the lease
on a local store too (a shared file system whose locks cannot be trusted).

On a local store it is :data:`~embedcache.store.layout.LOCK_NAME` held through
:mod:`filelock`; the operating system releases it when the holder dies, so it is never
stale. Object storage has no such lock, so a *lease* stands in: the object
:data:`~embedcache.store.layout.LEASE_NAME`, created with a conditional write (create
only if absent; S3's ``If-None-Match: *``), holding its owner and an expiry
:data:`LEASE_SECONDS` ahead (120 s; ``EMBEDCACHE_LEASE_SECONDS`` changes it). Its holder
deletes it when the commit is done. A waiting writer waits at least until the lease it
sees expires; an expired lease (its holder died mid-commit) is deleted and the writers
compete again. A writer stopped past its expiry then loses its swap and starts its
commit again; a build rerun after a writer was killed mid-commit waits up to the expiry.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from contextlib import contextmanager

from filelock import FileLock, Timeout

from embedcache.errors import StoreLockedError
from embedcache.store import access
from embedcache.store.layout import LEASE_NAME

LEASE_SECONDS = float(os.environ.get("EMBEDCACHE_LEASE_SECONDS", 120.0))
#: Seconds between a waiting writer's tries of the local lock (a try is one flock call).
POLL_SECONDS = 0.002


@contextmanager
def commit_lock(store, timeout: float):
    """Hold the store's commit lock or lease for the ``with`` block."""
    if store.remote or os.environ.get("EMBEDCACHE_LOCK") == "lease":
        with _lease(store, timeout):
            yield
        return
    store.path.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(store.lock_path))
    try:
        # filelock polls (no blocking wait with a timeout); its default 50 ms between tries
        # made waiting writers sleep through several whole commits of a few milliseconds.
        lock.acquire(timeout=timeout, poll_interval=POLL_SECONDS)
    except Timeout:
        raise StoreLockedError(_busy(store, store.lock_path, timeout)) from None
    try:
        yield
    finally:
        lock.release()


def _busy(store, what, timeout) -> str:
    return (f"another writer has been committing to the cache {store.path} for over {timeout:g} s "
            f"(it holds {what}). Writers only hold it while committing a batch, so this one is "
            "stuck or very slow; check the other builds, then run again (a rerun resumes).")


@contextmanager
def _lease(store, timeout: float):
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
    deadline = time.monotonic() + timeout
    wait = 0.05
    while True:
        body = json.dumps({"owner": owner, "expires": time.time() + LEASE_SECONDS}).encode()
        if access.create_exclusive(store.zstore, LEASE_NAME, body):
            break
        try:
            held = access.get_json(store.zstore, LEASE_NAME)
        except ValueError:
            held = {"expires": 0}  # a torn lease: its writer died while writing it
        expires = float(held.get("expires", 0)) if held is not None else 0.0
        if held is not None and expires < time.time():
            access.delete_key(store.zstore, LEASE_NAME)
            continue
        if time.monotonic() > deadline and time.time() > expires:
            raise StoreLockedError(_busy(store, f"the lease {LEASE_NAME}", timeout))
        time.sleep(wait)
        wait = min(wait * 1.5, 1.0)
    try:
        yield
    finally:
        try:
            held = access.get_json(store.zstore, LEASE_NAME)
        except ValueError:
            held = None
        if held is not None and held.get("owner") == owner:
            access.delete_key(store.zstore, LEASE_NAME)
