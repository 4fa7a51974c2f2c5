"""FASTA, plain or gzip (see :mod:`embedcache.sequences.readers`)."""


from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pandas as pd

from embedcache.errors import InputError
from embedcache.sequences.alphabet import normalize
from embedcache.sequences.readers.common import ACCEPTED, ChunkBuilder, file_stem, text_lines

__all__ = ["fasta_chunks"]


# -- FASTA --------------------------------------------------------------------------------


def fasta_chunks(path: Path, alphabet: str, chunk_size: int) -> Iterator[pd.DataFrame]:
    chunks = ChunkBuilder(("id", "sequence", "record"), chunk_size)
    stem = file_stem(path)
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

    for lineno, line in text_lines(path):
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
                f"(accepted: {ACCEPTED})."
            )
        else:
            parts.append(line)
    if not record:
        raise InputError(f"{path}: no FASTA records (the file is empty or blank). Give a file with sequences.")
    if (frame := finish()) is not None:
        yield frame
    if (frame := chunks.flush()) is not None:
        yield frame
