"""BED regions cut from a reference genome through a pyfaidx index (see :mod:`embedcache.sequences.readers`)."""


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

__all__ = ["bed_chunks"]


_BED_STRANDS = ("+", "-", ".")


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
def _genome(reference: Path):
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
    chunks = ChunkBuilder(("id", "sequence", "record", "chrom", "start", "end", "strand"), chunk_size)
    record = 0
    with _genome(reference) as genome:
        lengths = {name: len(genome[name]) for name in genome.keys()}
        for lineno, line in text_lines(path):
            fields = _bed_fields(line)
            if not fields:
                continue
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
            seq = normalize(genome[chrom][start:end], alphabet=alphabet, record=where)
            if strand == "-":
                seq = reverse_complement(seq)
            if (frame := chunks.add(seq_id, seq, record, chrom, start, end, strand)) is not None:
                yield frame
    if not record:
        raise InputError(f"{path}: no regions (only blank, comment, track or browser lines). Give a BED file with regions.")
    if (frame := chunks.flush()) is not None:
        yield frame


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
