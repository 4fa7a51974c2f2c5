"""A build's inputs: sources read in chunks, the scan (first pass: counts, policy, digests), windows."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from embedcache.sequences.alphabet import normalize_many
from embedcache.errors import InputError, SequenceTooLongError
from embedcache.sequences.quality import IdConflicts
from embedcache.request import BuildRequest
from embedcache.store import sequence_digest

__all__ = ["Scan", "input_kind", "open_sources", "scan_sources", "sequence_frame", "windows"]


# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------


def open_sources(inputs, *, alphabet: str, reference, chunk_size: int) -> list[tuple[str, Callable]]:
    """``(name, chunks)`` per input, ``chunks()`` reading it (again) as normalized DataFrame chunks:
    a file through the readers, or the sequences given in Python."""
    from embedcache.sequences.readers import iter_records

    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = list(inputs)
    if not inputs:
        raise InputError("no input: pass sequence files or a list of sequences")
    kinds = {input_kind(x) for x in inputs}
    if len(kinds) > 1 or kinds == {None}:
        raise InputError(
            "inputs must be all file paths or all DNA sequences (str); got "
            f"{', '.join(sorted(k or 'other objects' for k in kinds))}"
        )
    if kinds == {"sequence"}:
        frame = sequence_frame(inputs, alphabet)
        return [("<sequences>", lambda: iter([frame]))]
    sources = []
    for path in inputs:
        # Arguments (format, reference, existence) are checked now, before any work.
        iter_records(path, reference=reference, alphabet=alphabet, chunk_size=chunk_size)
        sources.append((str(path), lambda p=path: iter_records(
            p, reference=reference, alphabet=alphabet, chunk_size=chunk_size)))
    return sources


def input_kind(x) -> str | None:
    # A string of letters that names no file is a sequence (an empty one is an empty
    # sequence, refused later by name); anything path-like is a path.
    if isinstance(x, os.PathLike):
        return "path"
    if not isinstance(x, str):
        return None
    if x == "" or (x.isalpha() and not os.path.isfile(x)):
        return "sequence"
    return "path"


def sequence_frame(seqs: Sequence[str], alphabet: str) -> pd.DataFrame:
    empty = next((i for i, s in enumerate(seqs) if not s), None)
    if empty is not None:
        raise InputError(f"sequence #{empty + 1} is empty; remove it (an empty sequence has nothing to embed)")
    return pd.DataFrame({"id": [f"#{i + 1}" for i in range(len(seqs))], "record": np.arange(1, len(seqs) + 1),
                         "sequence": normalize_many(seqs, alphabet=alphabet)})


# --------------------------------------------------------------------------------------
# Scan
# --------------------------------------------------------------------------------------


@dataclass
class Scan:
    records: int = 0
    unique: set = field(default_factory=set)
    long: int = 0  # unique sequences over max_tokens (truncated or tiled, as the policy says)


def scan_sources(sources, family, request: BuildRequest) -> Scan:
    scan, limit = Scan(), request.max_tokens
    for name, chunks in sources:
        ids = IdConflicts(name)
        for df in chunks():
            seqs = df["sequence"].tolist()
            ids.update(df["id"].to_numpy(), seqs)
            counts = family.count_tokens(seqs)
            over = counts > limit
            if over.any() and (request.long == "error" or (request.long == "tile" and request.attention)):
                i = int(np.argmax(over))
                what = (f"{name}: record {df['id'].iloc[i]} (record #{df['record'].iloc[i]}) has "
                        f"{counts[i]} tokens{family.token_note}, over the limit of {limit} (--max-tokens)")
                if request.long == "error":
                    raise SequenceTooLongError(
                        f"{what}. Pass --long truncate to embed its first {limit} tokens, --long tile to embed "
                        f"it in overlapping windows, or a larger --max-tokens (this model takes up to "
                        f"{family.max_tokens}).")
                raise InputError(f"{what}, and --long tile cuts it into windows, which have no attention map for the "
                                 "whole sequence. Drop --attention for this input, use --long truncate, or a larger "
                                 "--max-tokens.")
            for d, long_one in zip(map(sequence_digest, seqs), over.tolist()):
                if d not in scan.unique:
                    scan.unique.add(d)
                    scan.long += long_one
            scan.records += len(seqs)
        ids.warn(stacklevel=4)  # build() -> EmbeddingCache.build -> the caller
    return scan


# --------------------------------------------------------------------------------------
# Windows
# --------------------------------------------------------------------------------------


def windows(tokens: np.ndarray, spec: BuildRequest, prefix: int) -> list[np.ndarray]:
    """The token arrays embedded for one sequence under the long-sequence policy; the
    ``prefix`` leading tokens (CLS; none for NTv3) start every window."""
    n = len(tokens)
    if n <= spec.max_tokens:
        return [tokens]
    if spec.long == "truncate":
        return [tokens[: spec.max_tokens]]
    body, width = tokens[prefix:], spec.max_tokens - prefix
    stride = width - spec.window_overlap
    starts = list(range(0, len(body) - width, stride)) + [len(body) - width]
    return [np.concatenate([tokens[:prefix], body[s : s + width]]) for s in starts]
