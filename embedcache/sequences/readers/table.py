"""CSV and TSV tables with a ``sequence`` column, plain or gzip (see :mod:`embedcache.sequences.readers`)."""


from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

# pandas' own list of missing-value markers ("", "NA", "nan", ...). We apply it to the label
# and split columns only: in the sequence and id columns "NA" or "nan" are literal text.
from pandas._libs.parsers import STR_NA_VALUES

from embedcache.errors import AlphabetError, InputError
from embedcache.sequences.alphabet import normalize
from embedcache.sequences.readers.common import TABLE_ROLES, UNREADABLE, is_gzip, file_stem, text_lines

__all__ = ["match_columns", "table_chunks", "table_frames"]


# -- CSV / TSV / Parquet ------------------------------------------------------------------


def match_columns(path: Path, found: list[str], kind: str) -> dict[str, str]:
    """Map the roles ``sequence``, ``id``, ``name``, ``label``, ``split`` to the file's column names."""
    by_role: dict[str, str] = {}
    for column in found:
        role = str(column).strip().lower()
        if role not in TABLE_ROLES:
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


def table_frames(path, chunks, roles, id_column, carried, locate, alphabet) -> Iterator[pd.DataFrame]:
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
    stem = file_stem(path)
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
    for lineno, line in text_lines(path):
        if line.strip(blank_chars):
            seen += 1
            if seen == row:
                return lineno
    return None


def _strict_header(path: Path, sep: str, label: str) -> list[str]:
    """The header's column names, after checking that every row has as many fields as it.

    pandas is lenient where a silent misreading is the result: a row with one field more
    than the header turns its first field into an index and shifts the rest (``id`` reads
    the sequence, ``sequence`` the next field), a short row is padded with missing values,
    and a repeated column name is renamed ``name.1``. So the file is parsed once with the
    :mod:`csv` module first, which sees rows as they are, and refused naming the line.
    """
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))  # a genome-scale sequence is one field
    blank = " \t\r\n".replace(sep, "")
    header: list[str] | None = None
    header_line = 0
    lines = text_lines(path)
    reader = csv.reader((line for _, line in lines), delimiter=sep)
    try:
        first = 1  # the line a row starts on: a quoted field may span lines
        for row in reader:
            start, first = first, reader.line_num + 1
            # pandas skips lines that hold only whitespace other than the delimiter.
            if not row or (len(row) == 1 and not row[0].strip(blank)):
                continue
            if header is None:
                header, header_line = row, reader.line_num
                _refuse_repeated(path, header, header_line)
                continue
            if len(row) != len(header):
                trailing = f" (a trailing {_SEP_NAMES.get(sep, repr(sep))})" if len(row) == len(header) + 1 and row[-1] == "" else ""
                where = f"line {start}" if start == reader.line_num else (
                    f"lines {start}-{reader.line_num} (one row: is a quote left open on line {start}?)")
                raise InputError(
                    f"{path}, {where} does not parse as {label}: {len(row)} field{'s' * (len(row) != 1)}{trailing} "
                    f"where the header (line {header_line}) has {len(header)} ({', '.join(map(repr, header))}). Every "
                    f"row needs as many fields as the header: remove the extra or add the missing fields, or quote "
                    f"a field that holds the delimiter (\"...\")."
                )
    except csv.Error as exc:
        raise InputError(f"{path}, line {reader.line_num}: does not parse as {label} ({exc}). "
                         "Check the quoting (a field with a quote must be quoted, its quotes doubled).") from None
    finally:
        lines.close()
    if header is None:
        raise InputError(f"{path} is empty; a {label} input needs a header row naming a 'sequence' column.")
    return header


_SEP_NAMES = {",": "comma", "\t": "tab"}


def _refuse_repeated(path: Path, header: list[str], line: int) -> None:
    seen: set[str] = set()
    for name in header:
        if name in seen and name.strip():
            raise InputError(
                f"{path}, line {line}: the header names column {name!r} twice, so which one holds the "
                "data is ambiguous. Rename or drop one of them."
            )
        seen.add(name)


def table_chunks(path: Path, sep: str, kind: str, alphabet: str, chunk_size: int) -> Iterator[pd.DataFrame]:
    compression = "gzip" if is_gzip(path) else None
    label = kind.upper()
    names = _strict_header(path, sep, label)
    try:
        header = list(pd.read_csv(path, sep=sep, nrows=0, compression=compression).columns)
    except pd.errors.EmptyDataError:
        raise InputError(
            f"{path} is empty; a {label} input needs a header row naming a 'sequence' column."
        ) from None
    except (pd.errors.ParserError, *UNREADABLE) as exc:
        raise InputError(f"{path} does not parse as {label}: {exc}. Give a {label} text file (plain or gzip).") from None
    if len(header) != len(names):
        raise InputError(f"{path}: the header reads as {len(names)} or {len(header)} columns depending on the parser "
                         f"({names!r}). Quote the header's fields, or remove stray quotes.")
    roles = {role: header[names.index(name)] for role, name in match_columns(path, names, kind).items()}
    carried = [r for r in ("label", "split") if r in roles]
    id_column = roles.get("id", roles.get("name"))

    def locate(record: int) -> str:
        line = _table_line(path, sep, record)
        return f"row {record}" + (f" (line {line})" if line is not None else "")

    # Every row has the header's width (checked above); unused columns are read as text,
    # which costs no type inference. index_col=False: never take a column for an index.
    reader = pd.read_csv(
        path,
        sep=sep,
        index_col=False,
        compression=compression,
        chunksize=chunk_size,
        dtype={c: str for c in header if c not in {roles[r] for r in carried}},
        keep_default_na=False,
        na_values={roles[r]: list(STR_NA_VALUES) for r in carried},
    )
    rows = 0
    try:
        with reader:
            for frame in table_frames(path, reader, roles, id_column, carried, locate, alphabet):
                rows += len(frame)
                yield frame
    except (pd.errors.ParserError, *UNREADABLE) as exc:
        raise InputError(
            f"{path} does not parse as {label} (after data row {rows}): {exc}. "
            "Check the delimiter and quoting: every row needs as many fields as the header."
        ) from None
    if rows == 0:
        raise InputError(f"{path}: a header but no rows. Give a file with sequences.")
