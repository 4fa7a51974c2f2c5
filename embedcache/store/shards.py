"""Whole shards of the per-row arrays and fill masks, encoded and decoded without Zarr.

A commit rewrites the last shard of every per-row array and fill mask. Through Zarr's
codec pipeline each costs an array opened on a memory store and several event-loop round
trips, whatever the shard's size: most of the time a small commit holds the lock. The
shards this version writes have one fixed layout (Zarr's ``sharding_indexed`` with the
index at the end; inner chunks through ``bytes`` or ``vlen-utf8``, then ``blosc`` and
``crc32c``), so they are encoded and decoded here with the same codecs (numcodecs), the
bytes being what Zarr itself writes and reads. Other layouts are left to Zarr
(:func:`handles` says which).
"""

from __future__ import annotations

import google_crc32c
import numcodecs.blosc
import numcodecs.vlen
import numpy as np

__all__ = ["handles", "handles_strings", "encode", "decode", "decode_strings"]

_EMPTY = 2**64 - 1
_VLEN = numcodecs.vlen.VLenUTF8()
_SHUFFLES = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}


def _inner(meta: dict) -> dict | None:
    codecs = meta.get("codecs", [])
    if len(codecs) != 1 or codecs[0].get("name") != "sharding_indexed":
        return None
    return codecs[0]["configuration"]


def handles(meta: dict) -> bool:
    """Whether shards of an array with metadata ``meta`` are encoded and decoded here."""
    conf = _inner(meta)
    if conf is None or conf.get("index_location", "end") != "end" or len(meta["shape"]) != 1:
        return False
    names = [c["name"] for c in conf["codecs"]]
    index = [c["name"] for c in conf["index_codecs"]]
    first = conf["codecs"][0].get("configuration") or {}
    numeric = names == ["bytes", "blosc", "crc32c"] and first.get("endian", "little") == "little" \
        and meta["data_type"] in ("bool", "int8", "uint8", "int32", "int64", "uint32", "uint64", "float32")
    strings = names == ["vlen-utf8", "blosc", "crc32c"] and meta["data_type"] == "string"
    return (numeric or strings) and index == ["bytes", "crc32c"]


def handles_strings(meta: dict) -> bool:
    """Whether ``meta`` is an array of strings whose inner chunks :func:`decode_strings` decodes."""
    return handles(meta) and meta["data_type"] == "string"


def decode_strings(raw: np.ndarray, offset, length, n: int) -> np.ndarray | None:
    """The ``n`` strings of the inner chunk at ``raw[offset:offset + length]`` (its CRC32C
    already checked), as an object array; ``None`` if it does not decode to ``n`` (damage)."""
    try:
        values = _VLEN.decode(numcodecs.blosc.decompress(raw[int(offset):int(offset + length) - 4]))
    except (RuntimeError, ValueError, TypeError):
        return None
    return values if len(values) == n else None


def _layout(meta: dict) -> tuple[int, int, dict, bool]:
    conf = _inner(meta)
    step = int(meta["chunk_grid"]["configuration"]["chunk_shape"][0])
    inner = int(conf["chunk_shape"][0])
    return step // inner, inner, conf["codecs"][1]["configuration"], meta["data_type"] == "string"


def _crc(data) -> bytes:
    return int(google_crc32c.value(data)).to_bytes(4, "little")


def encode(meta: dict, block: np.ndarray) -> bytes | None:
    """The bytes of one shard holding ``block`` (the shard's rows); ``None`` if it holds
    fill values only (Zarr does not store such a shard, and an unlisted one reads so)."""
    n_inner, inner, blosc, strings = _layout(meta)
    fill = meta["fill_value"] if not strings else (meta["fill_value"] or "")
    empty = block == fill
    parts, index, offset = [], np.full((n_inner, 2), _EMPTY, dtype="<u8"), 0
    for i in range(n_inner):
        if empty[i * inner:(i + 1) * inner].all():
            continue  # fill values only: absent from the shard, as Zarr writes it
        values = block[i * inner:(i + 1) * inner]
        raw = _VLEN.encode(values) if strings else np.ascontiguousarray(values).tobytes()
        packed = numcodecs.blosc.compress(raw, blosc["cname"].encode(), int(blosc["clevel"]),
                                          _SHUFFLES[blosc["shuffle"]], int(blosc.get("blocksize", 0)),
                                          int(blosc.get("typesize", 1)))
        parts += [packed, _crc(packed)]
        index[i] = (offset, len(packed) + 4)
        offset += len(packed) + 4
    if not parts:
        return None
    table = index.tobytes()
    return b"".join(parts + [table, _crc(table)])


def decode(meta: dict, raw: np.ndarray, out: np.ndarray) -> None:
    """Decode the shard ``raw`` (its bytes as uint8, checked against the manifest) into
    ``out`` (its rows, preset to fill values); ``ValueError`` if it does not decode."""
    n_inner, inner, _, strings = _layout(meta)
    table_bytes = n_inner * 16 + 4
    if raw.size < table_bytes or _crc(raw[-table_bytes:-4]) != raw[-4:].tobytes():
        raise ValueError("shard index checksum mismatch")
    table = raw[-table_bytes:-4].view("<u8").reshape(n_inner, 2)
    for i, (offset, length) in enumerate(table.tolist()):
        if offset == _EMPTY:
            continue
        chunk = raw[offset:offset + length]
        if chunk.size != length or length < 20 or _crc(chunk[:-4]) != chunk[-4:].tobytes():
            raise ValueError(f"inner chunk {i} checksum mismatch")
        payload = numcodecs.blosc.decompress(chunk[:-4])
        values = _VLEN.decode(payload) if strings else np.frombuffer(payload, dtype=out.dtype)
        if len(values) != inner:
            raise ValueError(f"inner chunk {i} holds {len(values)} values, not {inner}")
        out[i * inner:(i + 1) * inner] = values
