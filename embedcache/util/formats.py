"""A file's format, as its name says it: the one place suffixes are read.

Each caller names the formats it takes (format -> suffixes): the sequence readers' registry,
the exports, the variant tables and the score outputs; :func:`file_format` finds which one a
path's last suffix names, after a compression suffix (``.gz``, ``.bgz``), case-insensitively.

>>> file_format("Scores.TSV.gz", TABLE_FORMATS)
FileFormat(name='tsv', compression='.gz', stem='Scores')
>>> file_format("x.bed", TABLE_FORMATS) is None
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

__all__ = ["COMPRESSIONS", "FileFormat", "TABLE_FORMATS", "file_format", "format_stem"]

#: Compression suffixes a format suffix may carry (``.bgz``: block gzip, as bgzip writes it).
COMPRESSIONS = (".gz", ".bgz")

#: The tables the variant commands read and write (``.txt`` is tab-separated).
TABLE_FORMATS: Mapping[str, Sequence[str]] = {
    "csv": (".csv",), "tsv": (".tsv", ".txt"), "parquet": (".parquet", ".pq")}


@dataclass(frozen=True)
class FileFormat:
    """What a file name says: the format, the compression suffix (None: plain) and the name
    without both (``regions.bed.gz`` -> ``regions``)."""

    name: str
    compression: str | None
    stem: str

    @property
    def separator(self) -> str:
        """The field separator of a text table (csv: ``,``; anything else: a tab)."""
        return "," if self.name == "csv" else "\t"


def file_format(path: str | PathLike, formats: Mapping[str, Sequence[str]]) -> FileFormat | None:
    """The format among ``formats`` (name -> suffixes, with the dot) that ``path``'s name
    ends in, optionally followed by a compression suffix; None when it names none of them
    (the caller says which it takes: its message knows the option)."""
    name = Path(path).name
    lower = name.lower()
    compression = next((c for c in COMPRESSIONS if lower.endswith(c)), None)
    if compression:
        name, lower = name[: -len(compression)], lower[: -len(compression)]
    for fmt, suffixes in formats.items():
        for suffix in suffixes:
            if lower.endswith(suffix) and len(lower) > len(suffix):
                return FileFormat(fmt, compression, name[: -len(suffix)])
    return None


def format_stem(path: str | PathLike, formats: Mapping[str, Sequence[str]]) -> str:
    """``path``'s name without its format and compression suffixes (the whole name when it
    names none of ``formats``)."""
    found = file_format(path, formats)
    return Path(path).name if found is None else found.stem
