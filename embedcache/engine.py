"""Batched, length-bucketed inference: token arrays in, pooled embeddings and attention maps out.

Why buckets: a jitted function compiles once per input shape. Padding every sequence to
``max_tokens`` (what the official tokenizer does) keeps one shape but wastes most of the
compute on short sequences; padding each batch to its own longest row wastes little but
compiles endlessly. So every sequence goes to the smallest of a fixed ladder of padded
lengths (:data:`BUCKET_LADDER`, spaced by at most 1.5x, so at most a third of a batch is
padding), and each batch holds as many rows as fit a token budget, rounded down to a
power of two. A partial last batch is padded to the next power of two rows. The number of
compilations is then bounded by (#buckets x log2(rows)), whatever the input.

Outputs at real positions do not depend on padding or on batch composition (tested).
An out-of-memory error halves the batch for that bucket and goes on; nothing silently
moves to another device.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from embedcache.errors import InputError, SequenceTooLongError
from embedcache.model import NTConfig, forward, prepare_params
from embedcache.tokenizer import Tokenizer

__all__ = [
    "BUCKET_LADDER",
    "POOLS",
    "EmbeddingBatch",
    "Embedder",
    "bucket_lengths",
    "plan_batches",
]

log = logging.getLogger(__name__)

BUCKET_LADDER = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096)
POOLS = ("cls", "mean")
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def bucket_lengths(max_tokens: int) -> tuple[int, ...]:
    """The padded lengths used for a run whose longest allowed sequence is ``max_tokens``."""
    return tuple(b for b in BUCKET_LADDER if b < max_tokens) + (int(max_tokens),)


def _pow2_floor(n: int) -> int:
    return 1 << (max(int(n), 1).bit_length() - 1)


def _pow2_ceil(n: int) -> int:
    return 1 << (max(int(n), 1) - 1).bit_length()


def plan_batches(
    n_tokens: np.ndarray, *, max_tokens: int, token_budget: int, max_rows: int | None = None
) -> list[tuple[int, np.ndarray]]:
    """Group sequences into ``(padded_length, indices)`` batches.

    Parameters
    ----------
    n_tokens
        Tokens per sequence (CLS included); all must be ``<= max_tokens``.
    max_tokens
        Longest padded length.
    token_budget
        Padded tokens per batch (rows x padded length) to aim for.
    max_rows
        Optional cap on rows per batch (``--batch-size``).

    Returns
    -------
    list of (int, ndarray)
        Batches in bucket order, each with indices into ``n_tokens`` (input order kept
        within a bucket).
    """
    n_tokens = np.asarray(n_tokens)
    ladder = np.asarray(bucket_lengths(max_tokens))
    which = np.searchsorted(ladder, n_tokens, side="left")
    plans = []
    for b, length in enumerate(ladder):
        idx = np.flatnonzero(which == b)
        if idx.size == 0:
            continue
        rows = _rows_for(int(length), token_budget, max_rows)
        for start in range(0, idx.size, rows):
            plans.append((int(length), idx[start : start + rows]))
    return plans


def _rows_for(length: int, token_budget: int, max_rows: int | None) -> int:
    rows = _pow2_floor(max(token_budget // length, 1))
    if max_rows is not None:
        rows = min(rows, max(int(max_rows), 1))
    return rows


@dataclass
class EmbeddingBatch:
    """Results for one batch.

    Attributes
    ----------
    index
        Positions of the batch's sequences in the list given to :meth:`Embedder.embed`.
    n_tokens
        Real tokens per sequence, CLS included.
    pooled
        ``(layer, pool) -> (b, D)`` float32: ``"cls"`` is position 0; ``"mean"`` is the
        mean over the real tokens after CLS (the one token for a CLS-only sequence).
    attention
        ``(layer, head) -> (b, T, T)`` float32 attention probabilities, ``T`` the batch's
        padded length, zero past each row's ``n_tokens`` (queries and keys).
    """

    index: np.ndarray
    n_tokens: np.ndarray
    pooled: dict
    attention: dict


@dataclass
class EmbedderStats:
    """Counters of a run, for progress and benchmarks."""

    sequences: int = 0
    real_tokens: int = 0
    padded_tokens: int = 0
    compile_seconds: float = 0.0
    compiled_shapes: list = field(default_factory=list)
    oom_halvings: int = 0


class Embedder:
    """Runs a Nucleotide Transformer over token arrays in length-bucketed batches.

    Parameters
    ----------
    checkpoint
        Anything with ``.config`` (:class:`~embedcache.model.NTConfig`) and ``.params``
        (the flat checkpoint tree), e.g. :class:`embedcache.checkpoints.Checkpoint`.
    layers
        1-based layers to pool.
    pools
        Any of ``"cls"``, ``"mean"``.
    attention
        ``(layer, head)`` pairs, 1-based, whose attention maps to return.
    max_tokens
        Longest sequence in tokens, CLS included (and the largest padded length).
    token_budget
        Padded tokens per batch; default 4,096 on CPU, 32,768 on accelerators.
    batch_size
        Optional cap on rows per batch.
    dtype
        ``"float32"`` (default, exact) or ``"bfloat16"`` (accelerators; outputs float32).
    """

    def __init__(
        self,
        checkpoint: Any,
        *,
        layers: Sequence[int] = (),
        pools: Sequence[str] = POOLS,
        attention: Sequence[tuple[int, int]] = (),
        max_tokens: int = 512,
        token_budget: int | None = None,
        batch_size: int | None = None,
        dtype: str = "float32",
    ) -> None:
        cfg: NTConfig = checkpoint.config
        self.config = cfg
        self.layers = tuple(sorted({int(x) for x in layers}))
        self.pools = tuple(p for p in POOLS if p in set(pools))
        self.attention = tuple(sorted({(int(a), int(b)) for a, b in attention}))
        unknown = set(pools) - set(POOLS)
        if unknown:
            raise InputError(f"unknown pooling {sorted(unknown)}; choose from {list(POOLS)}")
        _validate_request(cfg, self.layers, self.attention)
        if self.layers and not self.pools:
            raise InputError("layers were requested with no pooling; pass pools=['cls'] and/or 'mean'")
        if not 1 <= max_tokens <= cfg.max_tokens:
            raise InputError(
                f"max_tokens={max_tokens} is outside 1..{cfg.max_tokens}, the model's positional range"
            )
        if dtype not in _DTYPES:
            raise InputError(f"dtype {dtype!r} is not one of {list(_DTYPES)}")
        self.max_tokens = int(max_tokens)
        on_cpu = jax.default_backend() == "cpu"
        self.token_budget = int(token_budget or (4096 if on_cpu else 32768))
        self.batch_size = batch_size
        self.dtype = dtype
        self.stats = EmbedderStats()
        self._row_cap: dict[int, int] = {}
        self._params = prepare_params(checkpoint.params, _DTYPES[dtype])
        self._pad = cfg.pad_token_id
        # Filler tokens for warm-up and padding rows; <cls> has the same id in both vocabularies.
        self._cls = Tokenizer.cls_id
        self._fn = jax.jit(self._compute)
        self._seen_shapes: set[tuple[int, int]] = set()

    # -- the jitted computation -------------------------------------------------------
    def _compute(self, params, tokens):
        out = forward(
            params, tokens, config=self.config, layers=self.layers, attention=self.attention,
            dtype=_DTYPES[self.dtype],
        )
        real = tokens != self._pad
        body = real.at[:, 0].set(False)
        n_body = jnp.sum(body, axis=1, keepdims=True)
        pooled = {}
        for layer in self.layers:
            h = out["embeddings"][layer]
            if "cls" in self.pools:
                pooled[(layer, "cls")] = h[:, 0]
            if "mean" in self.pools:
                total = jnp.sum(jnp.where(body[..., None], h, 0.0), axis=1)
                mean = total / jnp.maximum(n_body, 1)
                pooled[(layer, "mean")] = jnp.where(n_body > 0, mean, h[:, 0])
        pair = (real[:, :, None] & real[:, None, :]).astype(jnp.float32)
        maps = {key: (a * pair) for key, a in out["attention"].items()}
        return {"pooled": pooled, "attention": maps}

    def _call(self, tokens: np.ndarray) -> dict:
        """Run one padded (rows, T) batch and bring the results to the host."""
        shape = tokens.shape
        first = shape not in self._seen_shapes
        t0 = time.perf_counter()
        result = jax.device_get(self._fn(self._params, tokens))
        if first:
            # The first call of a shape is dominated by compilation; counted apart.
            self._seen_shapes.add(shape)
            self.stats.compile_seconds += time.perf_counter() - t0
            self.stats.compiled_shapes.append(shape)
        return result

    # -- public -------------------------------------------------------------------------
    def warmup(self, lengths: Sequence[int] | None = None) -> float:
        """Compile the full-size batch shape of each padded length given (default: all
        buckets); returns the seconds spent. Benchmarks use it to report compile time apart."""
        t0 = time.perf_counter()
        for length in lengths or bucket_lengths(self.max_tokens):
            rows = _rows_for(int(length), self.token_budget, self.batch_size)
            tokens = np.full((rows, int(length)), self._pad, np.int32)
            tokens[:, 0] = self._cls
            self._call(tokens)
        return time.perf_counter() - t0

    def embed(self, token_arrays: Sequence[np.ndarray]) -> Iterator[EmbeddingBatch]:
        """Embed token arrays (CLS first, no padding); yields batches in bucket order.

        Raises
        ------
        SequenceTooLongError
            If an array is longer than ``max_tokens`` (the build applies the
            long-sequence policy before this point).
        """
        n_tokens = np.fromiter((len(a) for a in token_arrays), dtype=np.int64, count=len(token_arrays))
        too_long = np.flatnonzero(n_tokens > self.max_tokens)
        if too_long.size:
            i = int(too_long[0])
            raise SequenceTooLongError(
                f"sequence #{i + 1} has {n_tokens[i]} tokens (CLS included), over max_tokens="
                f"{self.max_tokens}; {too_long.size} sequence(s) are too long"
            )
        if (n_tokens < 1).any():
            raise InputError("every token array must hold at least the CLS token")
        plans = plan_batches(
            n_tokens, max_tokens=self.max_tokens, token_budget=self.token_budget, max_rows=self.batch_size
        )
        for length, idx in plans:
            yield from self._run_bucket(token_arrays, n_tokens, length, idx)

    def _run_bucket(self, token_arrays, n_tokens, length: int, idx: np.ndarray):
        cap = self._row_cap.get(length)
        queue = deque(_split(idx, cap) if cap else [idx])
        while queue:
            part = queue.popleft()
            tokens = self._pad_batch(token_arrays, part, length)
            try:
                raw = self._call(tokens)
            except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled
                if not _is_out_of_memory(exc) or part.size == 1:
                    raise
                half = _pow2_floor(part.size // 2) if part.size > 1 else 1
                self._row_cap[length] = half
                self.stats.oom_halvings += 1
                log.warning(
                    "out of memory on a batch of %d x %d tokens; going on with %d rows",
                    part.size, length, half,
                )
                queue.extendleft(reversed(_split(part, half)))
                continue
            yield self._unpack(raw, part, n_tokens[part], length, tokens.shape[0])

    def _pad_batch(self, token_arrays, part: np.ndarray, length: int) -> np.ndarray:
        rows = _pow2_ceil(part.size)
        tokens = np.full((rows, length), self._pad, dtype=np.int32)
        # Filler rows hold a lone CLS so that no softmax row is entirely masked.
        tokens[part.size :, 0] = self._cls
        for r, i in enumerate(part):
            a = token_arrays[i]
            tokens[r, : len(a)] = a
        return tokens

    def _unpack(self, raw: dict, part: np.ndarray, n_tok: np.ndarray, length: int, rows: int):
        b = part.size
        self.stats.sequences += b
        self.stats.real_tokens += int(n_tok.sum())
        self.stats.padded_tokens += rows * length
        pooled = {k: np.asarray(v[:b], dtype=np.float32) for k, v in raw["pooled"].items()}
        maps = {k: np.asarray(v[:b], dtype=np.float32) for k, v in raw["attention"].items()}
        return EmbeddingBatch(index=part, n_tokens=n_tok, pooled=pooled, attention=maps)


def _split(idx: np.ndarray, rows: int) -> list[np.ndarray]:
    return [idx[s : s + rows] for s in range(0, idx.size, rows)]


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = str(exc)
    return "RESOURCE_EXHAUSTED" in text or "Out of memory" in text or "out of memory" in text


def _validate_request(cfg: NTConfig, layers, attention) -> None:
    for layer in layers:
        if not 1 <= layer <= cfg.num_layers:
            raise InputError(f"layer {layer} does not exist: the model has layers 1..{cfg.num_layers}")
    for layer, head in attention:
        if not 1 <= layer <= cfg.num_layers or not 1 <= head <= cfg.attention_heads:
            raise InputError(
                f"attention map {layer}:{head} does not exist: the model has layers "
                f"1..{cfg.num_layers} and heads 1..{cfg.attention_heads} (both 1-based)"
            )
