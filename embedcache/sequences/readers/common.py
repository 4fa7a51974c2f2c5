"""Helpers every reader shares: file checks, gzip, text lines, chunk assembly."""


from __future__ import annotations

import gzip
import io
import re
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from embedcache.errors import InputError

__all__ = ["ACCEPTED", "ChunkBuilder", "GZIP_MAGIC", "TABLE_ROLES", "UNREADABLE", "check_file", "is_gzip", "text_lines"]


ACCEPTED = (
    ".fa .fasta .fna .fas (FASTA), .csv, .tsv and .bed, each optionally followed by .gz, "
    "and .parquet .pq"
)
GZIP_MAGIC = b"\x1f\x8b"
# What a damaged gzip stream or a binary file raises while being read as text.
UNREADABLE = (gzip.BadGzipFile, EOFError, zlib.error, UnicodeDecodeError)
TABLE_ROLES = ("sequence", "id", "name", "label", "split")
# What surrogateescape decodes a byte that is not UTF-8 to.
_UNDECODED = re.compile("[\udc80-\udcff]")


# -- shared helpers -----------------------------------------------------------------------


def check_file(path: Path, what: str) -> None:
    if not path.exists():
        raise InputError(f"{what} file {path} does not exist; check the path.")
    if path.is_dir():
        raise InputError(
            f"{what} {path} is a directory, not a sequence file; give the files inside it "
            f"(e.g. {path}/*.fa or {path}/*.csv)."
        )
    if not path.is_file():
        raise InputError(f"{what} {path} is not a file; give the path of a file.")


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def file_stem(path: Path) -> str:
    """The file name without compression and format extensions: ``tasks.csv.gz`` -> ``tasks``."""
    name = path.name
    if name.lower().endswith(".gz"):
        name = name[: -len(".gz")]
    return Path(name).stem


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` over a plain or gzip UTF-8 text file.

    A leading byte-order mark is dropped, and ``\\n``, ``\\r\\n`` and a lone ``\\r`` (old Mac
    files) all end a line, as every editor reads them. A corrupt gzip stream or bytes that
    are not UTF-8 become an :class:`InputError` naming the file and the line instead of a
    traceback.
    """
    opener = gzip.open if is_gzip(path) else open
    lineno = 0
    # Bad bytes are decoded as lone surrogates (surrogateescape) and found line by line, so the
    # message can name the line: a strict decoder fails per buffer, not per line.
    with opener(path, "rb") as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape",
                                                     newline=None) as handle:
        try:
            for lineno, line in enumerate(handle, 1):
                if not line.isascii() and _UNDECODED.search(line):
                    raise InputError(
                        f"{path}, line {lineno}: bytes that are not UTF-8 text. Is it a binary file, "
                        "or compressed with something other than gzip? Give a plain or gzip text file."
                    )
                yield lineno, line
        except UNREADABLE as exc:
            raise InputError(
                f"{path}: corrupt or truncated gzip data after line {lineno} ({exc}). "
                "Download or compress the file again (gzip -t checks it)."
            ) from None


class ChunkBuilder:
    """Collect rows column by column and hand them out as DataFrames of ``chunk_size`` rows."""

    def __init__(self, columns: tuple[str, ...], chunk_size: int):
        self.columns = columns
        self.chunk_size = chunk_size
        self.data: dict[str, list] = {c: [] for c in columns}

    def add(self, *values) -> pd.DataFrame | None:
        for column, value in zip(self.columns, values):
            self.data[column].append(value)
        if len(self.data["id"]) >= self.chunk_size:
            return self.flush()
        return None

    def flush(self) -> pd.DataFrame | None:
        if not self.data["id"]:
            return None
        frame = pd.DataFrame(self.data)
        frame["record"] = frame["record"].astype(np.int64)
        self.data = {c: [] for c in self.columns}
        return frame
