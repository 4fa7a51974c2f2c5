"""Parquet tables with a ``sequence`` column (see :mod:`embedcache.sequences.readers`)."""


from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pandas as pd

from embedcache.errors import InputError
from embedcache.sequences.readers.table import match_columns, table_frames

__all__ = ["parquet_chunks"]


def parquet_chunks(path: Path, alphabet: str, chunk_size: int) -> Iterator[pd.DataFrame]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:  # a column name that is not UTF-8
        raise InputError(f"{path} is not a readable Parquet file ({exc}). Write it again, or check its extension.") from None
    schema = parquet.schema_arrow
    roles = match_columns(path, list(schema.names), "parquet")
    seq_type = schema.field(roles["sequence"]).type
    is_string_view = getattr(pa.types, "is_string_view", lambda _: False)  # pyarrow >= 16
    if not (pa.types.is_string(seq_type) or pa.types.is_large_string(seq_type) or is_string_view(seq_type)):
        raise InputError(
            f"{path}: column {roles['sequence']!r} holds {seq_type}, not strings. "
            "Store the sequences as text."
        )
    carried = [r for r in ("label", "split") if r in roles]
    id_column = roles.get("id", roles.get("name"))
    for column in [id_column, *(roles[r] for r in carried)]:
        # A list or struct per row is no id or label (found by fuzzing: it failed deep in pandas).
        if column is not None and pa.types.is_nested(schema.field(column).type):
            raise InputError(
                f"{path}: column {column!r} holds {schema.field(column).type}, not one value per row. "
                "Store ids, labels and splits as plain text or numbers."
            )
    wanted = [roles["sequence"], *([id_column] if id_column else []), *(roles[r] for r in carried)]
    rows = 0
    with parquet:
        try:
            chunks = (
                batch.to_pandas()
                for batch in parquet.iter_batches(batch_size=chunk_size, columns=wanted)
                if batch.num_rows
            )
            for frame in table_frames(
                path, chunks, roles, id_column, carried, lambda record: f"row {record}", alphabet
            ):
                rows += len(frame)
                yield frame
        except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
            # UnicodeDecodeError: a string column holding bytes that are not UTF-8 (found by fuzzing).
            raise InputError(f"{path}: Parquet data unreadable after row {rows} ({exc}). Write the file again.") from None
    if rows == 0:
        raise InputError(f"{path}: no rows. Give a file with sequences.")
