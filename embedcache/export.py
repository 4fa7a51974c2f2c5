"""Writing exported features: npz, Parquet or HDF5, streamed chunk by chunk, all or nothing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from embedcache.errors import InputError

__all__ = ["EXPORT_FORMATS", "check_export_path", "write_export"]

EXPORT_FORMATS = (".npz", ".parquet", ".h5", ".hdf5")


def check_export_path(out: Path) -> str:
    """The export format of ``out`` (its suffix), or an :class:`InputError` listing the formats."""
    suffix = out.suffix.lower()
    if suffix not in EXPORT_FORMATS:
        raise InputError(f"{out}: export writes {', '.join(EXPORT_FORMATS)}; choose one of those extensions")
    return suffix


def write_export(frames, out: Path) -> Path:
    """Write ``(records DataFrame, (n, D) features)`` chunks to ``out``, whose suffix picks the
    format, through a temporary file so that a failure leaves nothing; returns ``out``."""
    suffix = check_export_path(out)
    tmp = out.with_name(f".{out.name}.partial")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        {".npz": _write_npz, ".parquet": _write_parquet}.get(suffix, _write_h5)(frames, tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


_EXTRA = ("label", "split")


def _write_npz(frames, path: Path) -> None:
    ids, xs, extra = [], [], {c: [] for c in _EXTRA}
    for df, x in frames:
        ids.extend(df["id"].astype(str))
        xs.append(x)
        for c in _EXTRA:
            if c in df:
                extra[c].extend(df[c].tolist())
    arrays = {"id": np.array(ids), "X": np.concatenate(xs)}
    arrays.update({c: np.array(v) for c, v in extra.items() if len(v) == len(ids) and v})
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _write_parquet(frames, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    try:
        for df, x in frames:
            columns = {"id": df["id"].astype(str).to_numpy()}
            columns.update({c: df[c].to_numpy() for c in _EXTRA if c in df})
            columns.update({f"f{j}": x[:, j] for j in range(x.shape[1])})
            table = pa.table(columns)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table.cast(writer.schema))
    finally:
        if writer is not None:
            writer.close()


def _write_h5(frames, path: Path) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        n = 0
        for df, x in frames:
            b = len(df)
            if n == 0:
                f.create_dataset("X", shape=(0, x.shape[1]), maxshape=(None, x.shape[1]), dtype="f4", chunks=True)
                f.create_dataset("id", shape=(0,), maxshape=(None,), dtype=h5py.string_dtype(), chunks=True)
                for c in _EXTRA:
                    if c in df:
                        dt = h5py.string_dtype() if df[c].dtype == object else df[c].to_numpy().dtype
                        f.create_dataset(c, shape=(0,), maxshape=(None,), dtype=dt, chunks=True)
            for name, values in [("X", x), ("id", df["id"].astype(str).to_numpy(dtype=object))] + [
                (c, df[c].to_numpy(dtype=object) if df[c].dtype == object else df[c].to_numpy())
                for c in _EXTRA if c in f
            ]:
                f[name].resize((n + b, *f[name].shape[1:]))
                f[name][n : n + b] = values
            n += b
