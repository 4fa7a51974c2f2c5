"""BED regions cut from a reference genome through a pyfaidx index (see :mod:`embedcache.sequences.readers`).

Task columns: a BED file may carry columns after the sixth (strand), such as a class label
and a split, named by a header line that names every column, with or without a leading
``#`` (as bedtools and bioframe write it)::

    #chrom  start  end  name  score  strand  label  split
    chr1    100    600  p1    0      +       1      train

Named columns past the sixth are carried as record columns (``label`` and ``split`` are the
task roles ``classify`` reads, any other, e.g. ``gene``, is exported with the features);
without a header they are ignored. Pad a BED3 or BED4 with ``.`` for name, score and strand.
"""


from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pandas as pd

from embedcache.errors import InputError
from embedcache.sequences.alphabet import normalize, reverse_complement
from embedcache.sequences.readers.common import ChunkBuilder, text_lines

# pandas' missing-value markers, as the table reader applies them to label and split.
from pandas._libs.parsers import STR_NA_VALUES

__all__ = ["bed_chunks", "open_genome"]


_BED_STRANDS = ("+", "-", ".")
_BED_COLUMNS = ("chrom", "start", "end", "name", "score", "strand")
# Names a task column may not take: they are the reader's own columns.
_RESERVED = (*_BED_COLUMNS, "id", "sequence", "record")
_MISSING = {*STR_NA_VALUES, "."}


# -- BED ----------------------------------------------------------------------------------


def _open_genome(reference: Path, index_dir: Path | None):
    import pyfaidx

    index = {} if index_dir is None else {
        "indexname": str(index_dir / f"{reference.name}.fai"),
        "gzi_indexname": str(index_dir / f"{reference.name}.gzi"),
    }
    try:
        return pyfaidx.Fasta(str(reference), as_raw=True, **index)
    except pyfaidx.UnsupportedCompressionFormat:
        raise InputError(
            f"reference {reference} is gzip-compressed, but not with bgzip, so it cannot be read "
            "by position. Decompress it (gunzip) or recompress it with bgzip (from htslib)."
        ) from None
    except (pyfaidx.FastaIndexingError, ValueError, ImportError, RuntimeError) as exc:
        # ValueError: a duplicated sequence name, or bytes that are not text. RuntimeError:
        # pyfaidx's "unhandled exception during fasta indexing" (e.g. a NUL byte; found by fuzzing).
        raise InputError(
            f"reference {reference} cannot be indexed as a FASTA genome: {exc}. "
            "Give a FASTA file with unique names and equal line lengths within each sequence "
            "(samtools faidx checks it)."
        ) from None


@contextmanager
def open_genome(reference: Path):
    """An indexed genome; the index goes to a temporary directory if it cannot be written beside it."""
    index_dir = None
    try:
        genome = _open_genome(reference, None)
    except OSError:
        # pyfaidx reports an index it cannot write (read-only directory) as a bare OSError.
        index_dir = Path(tempfile.mkdtemp(prefix="embedcache-fai-"))
        try:
            genome = _open_genome(reference, index_dir)
        except OSError as exc:
            shutil.rmtree(index_dir, ignore_errors=True)
            raise InputError(f"reference {reference} cannot be read or indexed: {exc}.") from None
        except BaseException:
            shutil.rmtree(index_dir, ignore_errors=True)
            raise
    try:
        yield genome
    finally:
        genome.close()
        if index_dir is not None:
            shutil.rmtree(index_dir, ignore_errors=True)


def bed_chunks(path: Path, reference: Path, alphabet: str, chunk_size: int) -> Iterator[pd.DataFrame]:
    columns = ("id", "sequence", "record", "chrom", "start", "end", "strand")
    chunks, extra = None, {}  # extra: task column name -> field index, from the header line
    record = 0
    with open_genome(reference) as genome:
        lengths = {name: len(genome[name]) for name in genome.keys()}
        for lineno, line in text_lines(path):
            if chunks is None and (header := _header(line)) is not None:
                extra = _task_columns(path, lineno, header)
                continue
            fields = _bed_fields(line)
            if not fields:
                continue
            if chunks is None:
                chunks = ChunkBuilder(columns + tuple(extra), chunk_size)
            chrom, start, end, name, strand = _parse_bed_line(path, lineno, fields)
            if chrom not in lengths:
                shown = ", ".join(list(lengths)[:5]) + (", ..." if len(lengths) > 5 else "")
                raise InputError(
                    f"{path}, line {lineno}: chromosome {chrom!r} is not in the reference {reference} "
                    f"(it has {len(lengths)}: {shown}). Check the naming ('chr1' or '1') and the genome build."
                )
            if end > lengths[chrom]:
                raise InputError(
                    f"{path}, line {lineno}: region {chrom}:{start}-{end} ends past the end of {chrom} "
                    f"({lengths[chrom]} bp in {reference}). Check the genome build, or clip the region."
                )
            record += 1
            seq_id = name if name not in ("", ".") else f"{chrom}:{start}-{end}({strand})"
            # The letters come from the genome: name it too, a bad byte is in that file.
            where = f"{path.name}:{seq_id} (line {lineno}; {chrom}:{start}-{end} of the reference {reference.name})"
            try:
                bases = genome[chrom][start:end]
            except UnicodeDecodeError:  # found by fuzzing: pyfaidx decodes the slice it read
                raise InputError(
                    f"reference {reference}: the bases of {chrom}:{start}-{end} (asked for by {path}, line {lineno}) "
                    "hold bytes that are not UTF-8 text. Give a FASTA genome of plain letters (samtools faidx "
                    "checks it)."
                ) from None
            seq = normalize(bases, alphabet=alphabet, record=where)
            if strand == "-":
                seq = reverse_complement(seq)
            task = [_task_value(fields, i) for i in extra.values()]
            if (frame := chunks.add(seq_id, seq, record, chrom, start, end, strand, *task)) is not None:
                yield frame
    if not record:
        raise InputError(f"{path}: no regions (only blank, comment, track or browser lines). Give a BED file with regions.")
    if (frame := chunks.flush()) is not None:
        yield frame


def _header(line: str) -> list[str] | None:
    """The column names of a header line (``#chrom start end ...`` or ``chrom start end ...``), else None."""
    fields = [f.strip() for f in line.strip().lstrip("#").strip().split("\t" if "\t" in line else None)]
    if len(fields) >= 3 and fields[0].lower() in ("chrom", "chr", "chromosome") \
            and fields[1].lower() in ("start", "chromstart"):
        return fields
    return None


def _task_columns(path: Path, lineno: int, header: list[str]) -> dict[str, int]:
    """Task columns (past strand) of a header line: name -> field index."""
    named = [h.lower() for h in header[: len(_BED_COLUMNS)]]
    for role in ("label", "split"):
        if role in named:
            raise InputError(
                f"{path}, line {lineno}: the header names column {named.index(role) + 1} {role!r}, but columns "
                "1-6 of a BED file are chrom, start, end, name, score, strand. Put task columns after the "
                "sixth: pad with '.' for name, score and strand (e.g. chr1 100 600 . 0 + 1).")
    extra: dict[str, int] = {}
    for i, name in enumerate(header[len(_BED_COLUMNS):], len(_BED_COLUMNS)):
        key = name.lower() if name.lower() in ("label", "split") else name
        if not key or key.lower() in _RESERVED or key in extra:
            raise InputError(f"{path}, line {lineno}: column {i + 1} of the header is named {name!r}, which is "
                             "empty, repeated or one of the reader's own columns "
                             f"({', '.join(_RESERVED)}); rename it.")
        extra[key] = i
    return extra


def _task_value(fields: list[str], i: int) -> str | None:
    value = fields[i].strip() if i < len(fields) else ""
    return None if value in _MISSING else value


def _bed_fields(line: str) -> list[str]:
    """The fields of a BED line, or ``[]`` for a line that holds no region."""
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return []
    # BED is tab-separated; whitespace-separated files are common enough to accept too.
    fields = [f.strip() for f in stripped.split("\t")] if "\t" in stripped else stripped.split()
    if fields[0] in ("track", "browser"):
        return []
    return fields


def _parse_bed_line(path: Path, lineno: int, fields: list[str]) -> tuple[str, int, int, str, str]:
    if len(fields) < 3:
        raise InputError(
            f"{path}, line {lineno}: {len(fields)} field(s) where a BED line needs at least three, "
            "tab-separated: chrom, start, end (then optionally name, score, strand). Fix or remove the line."
        )
    chrom = fields[0]
    try:
        start, end = int(fields[1]), int(fields[2])
    except ValueError:
        raise InputError(
            f"{path}, line {lineno}: start {fields[1]!r} and end {fields[2]!r} must be whole numbers "
            "(0-based, half-open). Fix or remove the line."
        ) from None
    if start < 0 or start >= end:
        raise InputError(
            f"{path}, line {lineno}: region {chrom}:{start}-{end} is empty or negative; BED needs "
            "0 <= start < end (0-based, half-open). Fix or remove the line."
        )
    name = fields[3] if len(fields) > 3 else ""
    strand = fields[5] if len(fields) > 5 else "."
    if strand not in _BED_STRANDS:
        raise InputError(
            f"{path}, line {lineno}: strand {strand!r} must be '+', '-' or '.' (column 6). Fix the line."
        )
    return chrom, start, end, name, strand
