"""Reading sequence files: FASTA, CSV, TSV, Parquet and BED regions of a reference genome.

Every input reaches the build through :func:`iter_records`, which streams a file in
chunks (memory is bounded by ``chunk_size``, not by the file), checks each record and
normalizes its sequence under the alphabet policy (:func:`embedcache.sequences.alphabet.normalize`),
so the same biological sequence always gives the same bytes and the same cache row.

Formats
-------
``fasta``
    Plain or gzip (recognised by its magic bytes, whatever the extension), multi-line
    records, blank lines and Windows line endings allowed. The id is the first
    whitespace-delimited word of the header (``<file stem>:<record>`` for an empty one).
``csv``, ``tsv``
    A header row naming a ``sequence`` column (any case, surrounding spaces ignored),
    optionally ``id`` (else ``name``; a missing id becomes ``<file stem>:<record>``),
    ``label`` and ``split``; plain or gzip. Blank lines are skipped. Line numbers in messages assume no field spans several lines.
``parquet``
    The same columns; ``sequence`` must hold strings.
``bed``
    Regions ``chrom start end [name score strand ...]`` (0-based, half-open) cut from a
    reference genome (``reference=``, FASTA, plain or bgzip) through a ``pyfaidx`` index,
    which is written next to the genome as ``.fai`` (and ``.gzi``) as ``samtools faidx``
    would, or into a temporary directory when the genome's directory is read-only. A
    region on the ``-`` strand is reverse-complemented after normalization. The id is the
    name column unless absent or ``.``, else ``chrom:start-end(strand)``. ``#``, ``track``
    and ``browser`` lines are skipped. Task columns (``label``, ``split``, others) follow the
    sixth, named by a header line ``#chrom start end name score strand label split``
    (:mod:`~embedcache.sequences.readers.bed`).

Duplicate ids and duplicate sequences are kept, in file order: the store is addressed by
sequence content, so they cost nothing. The long-sequence policy is not applied here; it
needs the tokenizer and belongs to the build.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from os import PathLike
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from embedcache.errors import InputError
from embedcache.sequences.alphabet import ALPHABET_POLICIES, DEFAULT_ALPHABET
from embedcache.sequences.readers.bed import bed_chunks
from embedcache.sequences.readers.common import ACCEPTED, check_file
from embedcache.sequences.readers.fasta import fasta_chunks
from embedcache.sequences.readers.parquet import parquet_chunks
from embedcache.sequences.readers.table import table_chunks
from embedcache.util.formats import file_format

__all__ = ["FORMATS", "READERS", "Reader", "detect_format", "iter_records", "read_records", "sequence_of"]


@dataclass(frozen=True)
class Reader:
    """One input format: its extensions, whether gzip may wrap it, whether it needs a genome,
    and ``chunks(path, alphabet, chunk_size, reference=...)`` yielding record frames."""

    name: str
    extensions: tuple[str, ...]
    chunks: Callable[..., Iterator[pd.DataFrame]]
    gzip: bool = True
    needs_reference: bool = False


def _no_reference(chunks):
    return lambda path, alphabet, chunk_size, reference=None: chunks(path, alphabet=alphabet, chunk_size=chunk_size)


# The registry: one module per format; a new format is one module and one entry here.
READERS: dict[str, Reader] = {r.name: r for r in (
    Reader("fasta", (".fa", ".fasta", ".fna", ".fas"), _no_reference(fasta_chunks)),
    Reader("csv", (".csv",), _no_reference(partial(table_chunks, sep=",", kind="csv"))),
    Reader("tsv", (".tsv",), _no_reference(partial(table_chunks, sep="\t", kind="tsv"))),
    Reader("parquet", (".parquet", ".pq"), _no_reference(parquet_chunks), gzip=False),
    Reader("bed", (".bed",), lambda path, alphabet, chunk_size, reference=None:
           bed_chunks(path, reference, alphabet, chunk_size), needs_reference=True),
)}
FORMATS = tuple(READERS)


def detect_format(path: str | PathLike) -> str:
    """Return the format of ``path`` from its extension.

    Parameters
    ----------
    path
        An input file name. A trailing ``.gz`` is allowed on FASTA, CSV, TSV and BED.

    Returns
    -------
    str
        One of :data:`FORMATS`.

    Raises
    ------
    InputError
        If the extension is not one of the accepted ones; the message lists them.
    """
    path = Path(path)
    found = file_format(path, {r.name: r.extensions for r in READERS.values()})
    if found is None or found.compression not in (None, ".gz") or (
            found.compression and not READERS[found.name].gzip):
        raise InputError(
            f"{path}: cannot tell the format from the extension. Accepted: {ACCEPTED}. "
            f"Rename the file, or name its format explicitly (format= one of {', '.join(FORMATS)})."
        )
    return found.name


def iter_records(
    path: str | PathLike,
    *,
    reference: str | PathLike | None = None,
    alphabet: str = DEFAULT_ALPHABET,
    chunk_size: int = 10_000,
    format: str | None = None,
) -> Iterator[pd.DataFrame]:
    """Stream the records of a sequence file as DataFrames of at most ``chunk_size`` rows.

    Parameters
    ----------
    path
        A FASTA, CSV, TSV, Parquet or BED file (see the module documentation).
    reference
        The genome FASTA (plain or bgzip) that BED regions are cut from. Required for
        BED, ignored for the other formats.
    alphabet
        The alphabet policy passed to :func:`embedcache.sequences.alphabet.normalize`:
        ``"iupac-to-n"`` (default) or ``"strict"``.
    chunk_size
        The most rows per DataFrame.
    format
        One of :data:`FORMATS`; by default :func:`detect_format` reads it from the extension.

    Yields
    ------
    pandas.DataFrame
        Columns ``id`` (str), ``sequence`` (normalized str), ``record`` (int, the 1-based
        record number in the file), then ``label`` and ``split`` when a table has them
        (values and dtype as in the file; a CSV's dtype is inferred per chunk), and for
        BED ``chrom``, ``start``, ``end``, ``strand`` and the task columns its header names
        (text; missing values as None). Rows are in file order.

    Raises
    ------
    InputError
        A file that is missing, does not parse, has no records, lacks a ``sequence``
        column, or holds an empty record; a BED file without a reference or with a region
        the reference does not have. The message names the file, the record and the fix.
        Arguments are checked when this function is called; the file's contents as the
        chunks are read.
    AlphabetError
        A sequence outside the alphabet policy, with the file, record and position named.
    """
    path = Path(path)
    check_file(path, "input")
    if format is None:
        format = detect_format(path)
    elif format not in FORMATS:
        raise InputError(f"{path}: unknown format {format!r}; choose one of {', '.join(FORMATS)}.")
    if alphabet not in ALPHABET_POLICIES:
        raise InputError(f"unknown alphabet policy {alphabet!r}; choose one of {', '.join(ALPHABET_POLICIES)}.")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    reader = READERS[format]
    if reader.needs_reference:
        if reference is None:
            raise InputError(
                f"{path} is a BED file of regions, and regions need the genome they come from: "
                "pass --reference genome.fa (reference= in Python)."
            )
        reference = Path(reference)
        check_file(reference, "reference genome")
    return reader.chunks(path, alphabet, int(chunk_size), reference=reference)


def read_records(
    path: str | PathLike,
    *,
    reference: str | PathLike | None = None,
    alphabet: str = DEFAULT_ALPHABET,
    chunk_size: int = 10_000,
    format: str | None = None,
) -> pd.DataFrame:
    """Read a whole sequence file into one DataFrame (for small files such as task tables).

    Parameters and errors are those of :func:`iter_records`; the result is its chunks
    concatenated, with a fresh 0-based index.
    """
    chunks = list(
        iter_records(path, reference=reference, alphabet=alphabet, chunk_size=chunk_size, format=format)
    )
    return pd.concat(chunks, ignore_index=True)


def sequence_of(path: str | PathLike, record_id: str, *, reference: str | PathLike | None = None) -> str:
    """The (normalized) sequence of the record ``record_id`` in a sequence file (a BED file's
    regions cut from ``reference``).

    Raises
    ------
    InputError
        No record has that id, or several with different sequences do.
    """
    table = read_records(path, reference=reference)
    found = table.loc[table["id"] == record_id, "sequence"].unique()
    if len(found) == 0:
        shown = ", ".join(table["id"].head(5))
        raise InputError(f"{path} has no record with id {record_id!r} (ids such as {shown}); "
                         "check --sequence-id, or pass the sequence itself with --sequence.")
    if len(found) > 1:
        raise InputError(f"{path} holds {len(found)} different sequences with id {record_id!r}; "
                         "pass the sequence itself with --sequence.")
    return str(found[0])
