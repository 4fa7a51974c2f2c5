"""Reading sequence files: FASTA, CSV, TSV, Parquet and BED regions of a reference genome.

Every input reaches the build through :func:`iter_records`, which streams a file in
chunks (memory is bounded by ``chunk_size``, not by the file), checks each record and
normalizes its sequence under the alphabet policy (:func:`embedcache.alphabet.normalize`),
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
    and ``browser`` lines are skipped.

Duplicate ids and duplicate sequences are kept, in file order: the store is addressed by
sequence content, so they cost nothing. The long-sequence policy is not applied here; it
needs the tokenizer and belongs to the build.
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
import zlib
from contextlib import contextmanager
from os import PathLike
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

# pandas' own list of missing-value markers ("", "NA", "nan", ...). We apply it to the label
# and split columns only: in the sequence and id columns "NA" or "nan" are literal text.
from pandas._libs.parsers import STR_NA_VALUES

from embedcache.alphabet import ALPHABET_POLICIES, DEFAULT_ALPHABET, normalize, reverse_complement
from embedcache.errors import AlphabetError, InputError

__all__ = ["FORMATS", "detect_format", "iter_records", "read_records"]

FORMATS = ("fasta", "csv", "tsv", "parquet", "bed")

_EXTENSIONS = {
    ".fa": "fasta",
    ".fasta": "fasta",
    ".fna": "fasta",
    ".fas": "fasta",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".bed": "bed",
}
_ACCEPTED = (
    ".fa .fasta .fna .fas (FASTA), .csv, .tsv and .bed, each optionally followed by .gz, "
    "and .parquet .pq"
)
_GZIP_MAGIC = b"\x1f\x8b"
# What a damaged gzip stream or a binary file raises while being read as text.
_UNREADABLE = (gzip.BadGzipFile, EOFError, zlib.error, UnicodeDecodeError)
_TABLE_ROLES = ("sequence", "id", "name", "label", "split")
_BED_STRANDS = ("+", "-", ".")


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
    name = path.name.lower()
    compressed = name.endswith(".gz")
    suffix = Path(name[: -len(".gz")] if compressed else name).suffix
    fmt = _EXTENSIONS.get(suffix)
    if fmt is None or (compressed and fmt == "parquet"):
        raise InputError(
            f"{path}: cannot tell the format from the extension. Accepted: {_ACCEPTED}. "
            f"Rename the file, or name its format explicitly (format= one of {', '.join(FORMATS)})."
        )
    return fmt


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
        The alphabet policy passed to :func:`embedcache.alphabet.normalize`:
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
        BED ``chrom``, ``start``, ``end``, ``strand``. Rows are in file order.

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
    _check_file(path, "input")
    if format is None:
        format = detect_format(path)
    elif format not in FORMATS:
        raise InputError(f"{path}: unknown format {format!r}; choose one of {', '.join(FORMATS)}.")
    if alphabet not in ALPHABET_POLICIES:
        raise InputError(f"unknown alphabet policy {alphabet!r}; choose one of {', '.join(ALPHABET_POLICIES)}.")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    if format == "bed":
        if reference is None:
            raise InputError(
                f"{path} is a BED file of regions, and regions need the genome they come from: "
                "pass --reference genome.fa (reference= in Python)."
            )
        reference = Path(reference)
        _check_file(reference, "reference genome")
        return _bed_chunks(path, reference, alphabet, int(chunk_size))
    if format == "fasta":
        return _fasta_chunks(path, alphabet, int(chunk_size))
    if format == "parquet":
        return _parquet_chunks(path, alphabet, int(chunk_size))
    return _table_chunks(path, "\t" if format == "tsv" else ",", format, alphabet, int(chunk_size))


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


# -- shared helpers -----------------------------------------------------------------------


def _check_file(path: Path, what: str) -> None:
    if not path.exists():
        raise InputError(f"{what} file {path} does not exist; check the path.")
    if path.is_dir():
        raise InputError(
            f"{what} {path} is a directory, not a sequence file; give the files inside it "
            f"(e.g. {path}/*.fa or {path}/*.csv)."
        )
    if not path.is_file():
        raise InputError(f"{what} {path} is not a file; give the path of a file.")


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == _GZIP_MAGIC


def _stem(path: Path) -> str:
    """The file name without compression and format extensions: ``tasks.csv.gz`` -> ``tasks``."""
    name = path.name
    if name.lower().endswith(".gz"):
        name = name[: -len(".gz")]
    return Path(name).stem


def _text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` over a plain or gzip text file.

    A corrupt gzip stream or bytes that are not UTF-8 become an :class:`InputError`
    naming the file and the line instead of a traceback.
    """
    opener = gzip.open if _is_gzip(path) else open
    lineno = 0
    with opener(path, "rb") as handle:
        try:
            for lineno, raw in enumerate(handle, 1):
                yield lineno, raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(
                f"{path}, line {lineno}: bytes that are not UTF-8 text. Is it a binary file, "
                "or compressed with something other than gzip? Give a plain or gzip text file."
            ) from None
        except _UNREADABLE as exc:
            raise InputError(
                f"{path}: corrupt or truncated gzip data after line {lineno} ({exc}). "
                "Download or compress the file again (gzip -t checks it)."
            ) from None


class _ChunkBuilder:
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


# -- FASTA --------------------------------------------------------------------------------


def _fasta_chunks(path: Path, alphabet: str, chunk_size: int) -> Iterator[pd.DataFrame]:
    chunks = _ChunkBuilder(("id", "sequence", "record"), chunk_size)
    stem = _stem(path)
    record = 0
    header_line = 0
    seq_id = ""
    parts: list[str] = []

    def finish() -> pd.DataFrame | None:
        seq = "".join(parts)
        if not seq:
            raise InputError(
                f"{path}: record {record} ({seq_id!r}, header on line {header_line}) has an empty "
                "sequence. Remove the record or give it its sequence."
            )
        where = f"{path.name}:{seq_id} (record {record}, header on line {header_line})"
        return chunks.add(seq_id, normalize(seq, alphabet=alphabet, record=where), record)

    for lineno, line in _text_lines(path):
        line = line.strip()
        if not line:
            continue
        if line.startswith(">"):
            if record:
                if (frame := finish()) is not None:
                    yield frame
            record += 1
            header_line = lineno
            words = line[1:].split(maxsplit=1)
            seq_id = words[0] if words else f"{stem}:{record}"
            parts = []
        elif not record:
            raise InputError(
                f"{path} is not a FASTA file: line {lineno}, its first non-blank line, does not "
                "start with '>'. Give a FASTA file, or a table with the right extension "
                f"(accepted: {_ACCEPTED})."
            )
        else:
            parts.append(line)
    if not record:
        raise InputError(f"{path}: no FASTA records (the file is empty or blank). Give a file with sequences.")
    if (frame := finish()) is not None:
        yield frame
    if (frame := chunks.flush()) is not None:
        yield frame


# -- CSV / TSV / Parquet ------------------------------------------------------------------


def _match_columns(path: Path, found: list[str], kind: str) -> dict[str, str]:
    """Map the roles ``sequence``, ``id``, ``name``, ``label``, ``split`` to the file's column names."""
    by_role: dict[str, str] = {}
    for column in found:
        role = str(column).strip().lower()
        if role not in _TABLE_ROLES:
            continue
        if role in by_role:
            raise InputError(
                f"{path}: columns {by_role[role]!r} and {column!r} both read as {role!r} "
                "(names are matched ignoring case and spaces). Rename or drop one."
            )
        by_role[role] = column
    if "sequence" not in by_role:
        separated = {"csv": "comma", "tsv": "tab"}.get(kind)
        hint = f" Is the delimiter right? A .{kind} file must be {separated}-separated." if separated else ""
        raise InputError(
            f"{path}: no 'sequence' column; found columns {[str(c) for c in found]}. A {kind} input "
            "needs a header naming a 'sequence' column (optional: id or name, label, split)." + hint
        )
    return by_role


def _table_frames(path, chunks, roles, id_column, carried, locate, alphabet) -> Iterator[pd.DataFrame]:
    """:func:`_table_frame` over pandas chunks of a table, numbering records from 1 across chunks."""
    next_record = 1
    for chunk in chunks:
        records = np.arange(next_record, next_record + len(chunk))
        next_record += len(chunk)
        yield _table_frame(
            path,
            chunk[roles["sequence"]].to_numpy(dtype=object),
            chunk[id_column].to_numpy(dtype=object) if id_column else None,
            {r: chunk[roles[r]] for r in carried},
            records,
            locate,
            alphabet,
        )


def _table_frame(
    path: Path,
    seqs: np.ndarray,
    ids: np.ndarray | None,
    extra: dict[str, pd.Series],
    records: np.ndarray,
    locate: Callable[[int], str],
    alphabet: str,
) -> pd.DataFrame:
    """Check and normalize one chunk of table rows; ``ids`` and ``seqs`` may hold missing values.

    ``locate(record)`` describes where a record is ("row 7, line 9"); it is called only on
    error because finding a CSV line costs a scan of the file.
    """
    stem = _stem(path)
    out_ids = []
    out_seqs = []
    for i, record in enumerate(records):
        seq_id = ids[i] if ids is not None else None
        seq_id = ("" if pd.isna(seq_id) else str(seq_id).strip()) or f"{stem}:{record}"
        seq = seqs[i].strip() if isinstance(seqs[i], str) else ""
        if not seq:
            raise InputError(
                f"{path}: {locate(record)} (id {seq_id!r}) has an empty or missing sequence. "
                "Fill it in or remove the row."
            )
        try:
            seq = normalize(seq, alphabet=alphabet, record=f"{path.name}:{seq_id} (row {record})")
        except AlphabetError:
            # Run again to raise the same error with the line named, found only now.
            normalize(seq, alphabet=alphabet, record=f"{path.name}:{seq_id} ({locate(record)})")
            raise
        out_ids.append(seq_id)
        out_seqs.append(seq)
    frame = pd.DataFrame({"id": out_ids, "sequence": out_seqs, "record": records.astype(np.int64)})
    for role, values in extra.items():
        frame[role] = values.reset_index(drop=True)
    return frame


def _table_line(path: Path, sep: str, row: int) -> int | None:
    """The line number of data row ``row`` (1-based) of a delimited file, as pandas counts rows.

    pandas skips lines holding only whitespace other than the delimiter, before and after
    the header. Assumes no quoted field spans several lines.
    """
    blank_chars = " \t\r\n".replace(sep, "")
    seen = -1  # the first non-blank line is the header
    for lineno, line in _text_lines(path):
        if line.strip(blank_chars):
            seen += 1
            if seen == row:
                return lineno
    return None


def _table_chunks(path: Path, sep: str, kind: str, alphabet: str, chunk_size: int) -> Iterator[pd.DataFrame]:
    compression = "gzip" if _is_gzip(path) else None
    label = kind.upper()
    try:
        header = list(pd.read_csv(path, sep=sep, nrows=0, compression=compression).columns)
    except pd.errors.EmptyDataError:
        raise InputError(
            f"{path} is empty; a {label} input needs a header row naming a 'sequence' column."
        ) from None
    except (pd.errors.ParserError, *_UNREADABLE) as exc:
        raise InputError(f"{path} does not parse as {label}: {exc}. Give a {label} text file (plain or gzip).") from None
    roles = _match_columns(path, header, kind)
    carried = [r for r in ("label", "split") if r in roles]
    id_column = roles.get("id", roles.get("name"))

    def locate(record: int) -> str:
        line = _table_line(path, sep, record)
        return f"row {record}" + (f" (line {line})" if line is not None else "")

    # All columns are read, not only the used ones, so that pandas still refuses ragged rows;
    # the unused ones as text, which costs no type inference.
    reader = pd.read_csv(
        path,
        sep=sep,
        compression=compression,
        chunksize=chunk_size,
        dtype={c: str for c in header if c not in {roles[r] for r in carried}},
        keep_default_na=False,
        na_values={roles[r]: list(STR_NA_VALUES) for r in carried},
    )
    rows = 0
    try:
        with reader:
            for frame in _table_frames(path, reader, roles, id_column, carried, locate, alphabet):
                rows += len(frame)
                yield frame
    except (pd.errors.ParserError, *_UNREADABLE) as exc:
        raise InputError(
            f"{path} does not parse as {label} (after data row {rows}): {exc}. "
            "Check the delimiter and quoting: every row needs as many fields as the header."
        ) from None
    if rows == 0:
        raise InputError(f"{path}: a header but no rows. Give a file with sequences.")


def _parquet_chunks(path: Path, alphabet: str, chunk_size: int) -> Iterator[pd.DataFrame]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path} is not a readable Parquet file ({exc}). Write it again, or check its extension.") from None
    schema = parquet.schema_arrow
    roles = _match_columns(path, list(schema.names), "parquet")
    seq_type = schema.field(roles["sequence"]).type
    is_string_view = getattr(pa.types, "is_string_view", lambda _: False)  # pyarrow >= 16
    if not (pa.types.is_string(seq_type) or pa.types.is_large_string(seq_type) or is_string_view(seq_type)):
        raise InputError(
            f"{path}: column {roles['sequence']!r} holds {seq_type}, not strings. "
            "Store the sequences as text."
        )
    carried = [r for r in ("label", "split") if r in roles]
    id_column = roles.get("id", roles.get("name"))
    wanted = [roles["sequence"], *([id_column] if id_column else []), *(roles[r] for r in carried)]
    rows = 0
    with parquet:
        try:
            chunks = (
                batch.to_pandas()
                for batch in parquet.iter_batches(batch_size=chunk_size, columns=wanted)
                if batch.num_rows
            )
            for frame in _table_frames(
                path, chunks, roles, id_column, carried, lambda record: f"row {record}", alphabet
            ):
                rows += len(frame)
                yield frame
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"{path}: Parquet data unreadable after row {rows} ({exc}). Write the file again.") from None
    if rows == 0:
        raise InputError(f"{path}: no rows. Give a file with sequences.")


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
    except (pyfaidx.FastaIndexingError, ValueError, ImportError) as exc:
        # ValueError: a duplicated sequence name, or bytes that are not text.
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


def _bed_chunks(path: Path, reference: Path, alphabet: str, chunk_size: int) -> Iterator[pd.DataFrame]:
    chunks = _ChunkBuilder(("id", "sequence", "record", "chrom", "start", "end", "strand"), chunk_size)
    record = 0
    with _genome(reference) as genome:
        lengths = {name: len(genome[name]) for name in genome.keys()}
        for lineno, line in _text_lines(path):
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
            where = f"{path.name}:{seq_id} (line {lineno})"
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
