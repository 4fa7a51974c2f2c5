"""Reaching a store's bytes, local or remote, only through Zarr's store API.

A cache location is a local path or an fsspec URL (``s3://bucket/cache.zarr``,
``gs://...``, ``memory://...``). Credentials and endpoints come from the usual
environment variables of each filesystem (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``...)
or from ``storage_options``. Everything else in the package lists, reads, sizes and
deletes keys through the helpers here, so it never walks a file system itself.

Keys are always Zarr's. On a local store, whole objects are read, written and deleted
here directly, in the caller's thread (as :meth:`_LocalStore.read_into` and
:func:`create_exclusive` need to anyway): through Zarr each would cost a round trip to
its event-loop thread, a millisecond or more on a busy machine, and a commit makes dozens.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Mapping

import numpy as np
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import FsspecStore, LocalStore

__all__ = ["open_store", "is_url", "list_dir", "get_bytes", "get_json", "size_of",
           "create_exclusive", "put_bytes", "put_new", "delete_key", "exists", "check_container"]


def is_url(location) -> bool:
    return isinstance(location, str) and "://" in location and not location.startswith("file://")


def open_store(location, storage_options: Mapping | None = None):
    """The Zarr store for a path or URL (writable; Zarr opens what is missing lazily)."""
    if is_url(location):
        opts = dict(storage_options or {})
        # Listings must show what other writers committed since; fsspec would cache them.
        opts.setdefault("use_listings_cache", False)
        endpoint = os.environ.get("AWS_ENDPOINT_URL")
        if location.startswith("s3://") and endpoint and "endpoint_url" not in opts:
            # s3fs reads credentials from the environment itself, the endpoint not always.
            opts.setdefault("client_kwargs", {}).setdefault("endpoint_url", endpoint)
        return FsspecStore.from_url(location, storage_options=opts, read_only=False)
    text = str(location)
    if text.startswith("file://"):
        text = text[len("file://"):]
    return _LocalStore(Path(text))


class _LocalStore(LocalStore):
    """Zarr's local store, reading whole objects straight into a NumPy buffer.

    ``LocalStore`` reads an object with ``Path.read_bytes``, whose result is allocated
    and faulted in page by page, then wrapped; one ``readinto`` of a buffer from
    ``np.empty`` costs about half as much, and whole-chunk reads are most of a task's
    feature loading (``bench/feature_loading.py``).
    """

    async def get(self, key: str, prototype=None, byte_range=None):
        if byte_range is not None:
            return await super().get(key, prototype, byte_range)
        if not self._is_open:
            await self._open()
        try:
            raw = await asyncio.to_thread(_read_whole, self.root / key)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        return (prototype or default_buffer_prototype()).buffer.from_array_like(raw)

    def read_into(self, key: str, buf: np.ndarray | None) -> np.ndarray | None:
        """The whole object ``key`` read into ``buf`` (a view of its first bytes), or into
        new memory where ``buf`` is ``None`` or too small; ``None`` if absent.

        Synchronous, in the caller's thread: reading a task's feature chunks one after
        another into reused buffers costs a third of fetching them concurrently into
        fresh ones, which pays a page fault per 4 KiB and a round trip through Zarr's event
        loop and its worker threads (milliseconds each, when they contend for the GIL).
        """
        if not self._is_open:
            sync(self._open())
        try:
            return _read_whole(self.root / key, buf)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None


def _read_whole(path: Path, buf: np.ndarray | None = None) -> np.ndarray:
    # One open file: the bytes of one version even if a commit replaces it meanwhile.
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        buf = buf[:size] if buf is not None and buf.size >= size else np.empty(size, dtype="B")
        view, got = memoryview(buf), 0
        while got < buf.size:
            n = f.readinto(view[got:])
            if not n:
                break
            got += n
    return buf[:got]


def list_dir(store, prefix: str) -> list[str]:
    """Names directly under ``prefix`` ('' for the root), sorted."""
    async def collect():
        return [name async for name in store.list_dir(prefix)]
    try:
        return sorted(sync(collect()))
    except FileNotFoundError:  # an object store's prefix that holds nothing yet
        return []


def check_container(store) -> None:
    """Raise the filesystem's own error when an object store's bucket (its first path
    part) does not exist: reading a missing key looks the same in an empty bucket and in
    none, and only the second is the user's to fix on the endpoint (the command line names
    the bucket from the botocore error this carries). Local stores: nothing to check."""
    if not isinstance(store, FsspecStore):
        return
    bucket = store.path.strip("/").split("/", 1)[0]
    if bucket:
        sync(store.fs._ls(bucket))


def get_bytes(store, key: str) -> bytes | None:
    if isinstance(store, LocalStore):
        try:
            return (Path(store.root) / key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
    buf = sync(store.get(key, prototype=default_buffer_prototype()))
    return None if buf is None else buf.to_bytes()


def get_json(store, key: str):
    """A JSON document, ``None`` if absent; ``ValueError`` if unreadable."""
    raw = get_bytes(store, key)
    return None if raw is None else json.loads(raw)


def exists(store, key: str) -> bool:
    if isinstance(store, LocalStore):
        return (Path(store.root) / key).is_file()
    return bool(sync(store.exists(key)))


def size_of(store, prefix: str) -> int:
    """Bytes stored under ``prefix``."""
    return int(sync(store.getsize_prefix(prefix)))


def put_bytes(store, key: str, data: bytes) -> None:
    """Write ``key`` whole, atomically (locally: a temporary file renamed into place)."""
    if isinstance(store, LocalStore):
        path = Path(store.root) / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return
    sync(store.set(key, default_buffer_prototype().buffer.from_bytes(data)))


def put_new(store, puts: list) -> None:
    """Write objects ``[(key, bytes)]`` under fresh names, that nothing refers to yet (so a
    torn one is garbage, never data): locally one after another in the caller's thread,
    on an object store many requests at once."""
    if isinstance(store, LocalStore):
        for key, data in puts:
            path = Path(store.root) / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return
    proto = default_buffer_prototype()

    async def put():
        limit = asyncio.Semaphore(16)

        async def one(key, data):
            async with limit:
                await store.set(key, proto.buffer.from_bytes(data))

        await asyncio.gather(*(one(k, d) for k, d in puts))

    if puts:
        sync(put())


def delete_key(store, key: str) -> None:
    if isinstance(store, LocalStore):
        path = Path(store.root) / key
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        return
    sync(store.delete(key))


def create_exclusive(store, key: str, data: bytes) -> bool:
    """Write ``key`` only if it does not exist, atomically; whether this call created it.

    Zarr's ``set_if_not_exists`` is atomic on a local store. For fsspec stores it checks
    then writes, so the filesystem's own exclusive write is used where it has one (S3's
    ``If-None-Match: *`` in s3fs ``mode="create"``).
    """
    if isinstance(store, LocalStore):
        # Written whole to a private name, then hard-linked into place: the link fails if
        # the name exists, and a crash never leaves a half-written object under it.
        path = Path(store.root) / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
    fs, path = store.fs, f"{store.path}/{key}"
    try:
        sync(fs._pipe_file(path, data, mode="create")) if fs.async_impl else fs.pipe_file(path, data, mode="create")
        return True
    except (FileExistsError, OSError) as exc:
        if isinstance(exc, FileExistsError) or "PreconditionFailed" in repr(exc) or "412" in repr(exc):
            return False
        raise
    except TypeError:  # a filesystem without exclusive writes: best effort, documented
        if fs.exists(path):
            return False
        fs.pipe_file(path, data)
        return True


def list_with_times(store, prefix: str) -> dict[str, float]:
    """Every object under ``prefix`` (keys from the store's root) with its modification time
    (seconds since the epoch): what ``embedcache gc`` needs to tell old leftovers from a
    commit being written now."""
    if isinstance(store, LocalStore):
        root = Path(store.root)
        out = {}
        for path in (root / prefix).rglob("*"):
            try:
                if path.is_file():
                    out[path.relative_to(root).as_posix()] = path.stat().st_mtime
            except FileNotFoundError:  # deleted while listing
                continue
        return out
    fs, base = store.fs, store.path.rstrip("/")
    try:
        found = (sync(fs._find(f"{base}/{prefix}", detail=True)) if fs.async_impl
                 else fs.find(f"{base}/{prefix}", detail=True))
    except FileNotFoundError:
        return {}
    out = {}
    for path, info in found.items():
        when = info.get("LastModified") or info.get("mtime") or info.get("created") or 0
        out[path[len(base) + 1:]] = when.timestamp() if hasattr(when, "timestamp") else float(when)
    return out
