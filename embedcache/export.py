"""Writing exported features: npz, Parquet or HDF5, streamed chunk by chunk, all or nothing.

Every export carries its provenance (what :meth:`embedcache.EmbeddingCache.provenance`
returns, and the input): as Parquet key-value metadata under ``embedcache`` (JSON), as the
HDF5 file's root attributes, or beside an npz in ``<out>.npz.json``. Beside the features and
ids, each record column the reader gives is written (a table's ``label`` and ``split``; a BED
file's ``chrom``, ``start``, ``end``, ``strand`` and task columns).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from embedcache.errors import InputError
from embedcache.util.atomic import write_atomically
from embedcache.util.formats import file_format

__all__ = ["EXPORT_FORMATS", "check_export_path", "write_export"]

#: Export format -> the suffixes that choose it.
_WRITERS = {"npz": (".npz",), "parquet": (".parquet",), "h5": (".h5", ".hdf5")}
EXPORT_FORMATS = tuple(s for suffixes in _WRITERS.values() for s in suffixes)
# Reader columns not exported beside the features (the sequence is in the cache; ``record``
# is a position in the input).
_NOT_EXPORTED = ("id", "sequence", "record")


def check_export_path(out: Path) -> str:
    """The export format of ``out`` (``npz``, ``parquet`` or ``h5``, by its suffix), or an
    :class:`InputError` listing the suffixes."""
    found = file_format(out, _WRITERS)
    if found is None or found.compression:
        raise InputError(f"{out}: export writes {', '.join(EXPORT_FORMATS)}; choose one of those extensions")
    return found.name


def write_export(frames, out: Path, provenance: dict) -> Path:
    """Write ``(records DataFrame, (n, D) features)`` chunks to ``out``, whose suffix picks the
    format, with ``provenance``, through temporary files so that a failure leaves nothing; returns ``out``."""
    fmt = check_export_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = {"npz": _write_npz, "parquet": _write_parquet, "h5": _write_h5}[fmt]

    def write(tmp: str) -> None:
        writer(frames, Path(tmp), provenance)
        if fmt == "npz":
            _write_sidecar(out, provenance)

    return write_atomically(out, write)


def _columns(df) -> dict:
    """The record columns of a chunk as arrays a writer takes: text as str, numbers as they are."""
    out = {"id": df["id"].astype(str).to_numpy(dtype=str)}
    for c in df.columns:
        if c not in _NOT_EXPORTED:
            values = df[c].to_numpy()
            out[c] = values.astype(str) if values.dtype.kind in "OUS" else values
    return out


def _write_sidecar(out: Path, provenance: dict) -> None:
    sidecar = out.with_name(out.name + ".json")
    write_atomically(sidecar, lambda tmp: Path(tmp).write_text(json.dumps(provenance, indent=1, default=str) + "\n"))


def _write_npz(frames, path: Path, provenance: dict) -> None:
    parts: dict[str, list] = {}
    for df, x in frames:
        for c, values in {**_columns(df), "X": x}.items():
            parts.setdefault(c, []).append(values)
    arrays = {c: np.concatenate(v) for c, v in parts.items()}
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _write_parquet(frames, path: Path, provenance: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    try:
        for df, x in frames:
            columns = _columns(df)
            columns.update({f"f{j}": x[:, j] for j in range(x.shape[1])})
            table = pa.table(columns)
            if writer is None:
                schema = table.schema.with_metadata({"embedcache": json.dumps(provenance, default=str)})
                writer = pq.ParquetWriter(path, schema)
            writer.write_table(table.cast(writer.schema))
    finally:
        if writer is not None:
            writer.close()


def _write_h5(frames, path: Path, provenance: dict) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        for k, v in provenance.items():
            if v is not None:  # HDF5 attributes have no null
                f.attrs[k] = v
        n = 0
        for df, x in frames:
            b = len(df)
            data = {"X": x, **_columns(df)}
            if n == 0:
                for name, values in data.items():
                    dt = h5py.string_dtype() if values.dtype.kind in "OU" else values.dtype
                    f.create_dataset(name, shape=(0, *values.shape[1:]), maxshape=(None, *values.shape[1:]),
                                     dtype=dt, chunks=True)
            for name, values in data.items():
                f[name].resize((n + b, *f[name].shape[1:]))
                f[name][n : n + b] = values.astype(object) if values.dtype.kind == "U" else values
            n += b
