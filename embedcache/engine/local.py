"""Device execution of planned batches: token arrays in, pooled embeddings and attention maps out.

Batches come from :class:`embedcache.engine.planner.Planner` (why buckets, and how leftovers
are batched, is said there). Sequences are queued per padded length across calls to :meth:`Embedder.add` (one planner for
a whole build, whatever its input chunks), and a full batch is dispatched as soon as it is
there. One batch stays in flight: the host pads, unpacks and writes while the device computes
the next one (JAX dispatches asynchronously).

Every batch is split across all local devices of JAX's default backend (data parallel): a
1-D mesh over the devices, rows sharded along it, parameters replicated on each; ``devices=N``
(``--devices N``) keeps the first N. Rows are padded to a multiple of the device count, so
every device gets an equal share. The Dask path gives each worker one device
(:mod:`embedcache.engine.dask`).

Outputs at real positions do not depend on padding or on batch composition, nor on the
number of devices (tested). An out-of-memory error halves the batch for that bucket and goes
on; nothing silently moves to another device.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from embedcache.engine.planner import Planner, _pow2_ceil, _pow2_floor
from embedcache.errors import InputError
from embedcache.request import BuildRequest, Output, RunOptions, check_devices

__all__ = ["EmbeddingBatch", "Embedder", "enable_compile_cache", "local_devices"]

log = logging.getLogger(__name__)


_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def enable_compile_cache() -> str | None:
    """Keep compiled programs on disk so that later runs skip compilation; returns the folder.

    ``$EMBEDCACHE_COMPILE_CACHE`` moves it (default ``$EMBEDCACHE_HOME/xla-cache``); ``off``
    disables it. A folder already set through JAX's own configuration is left alone.
    """
    if jax.config.jax_compilation_cache_dir:
        return jax.config.jax_compilation_cache_dir
    path = os.environ.get("EMBEDCACHE_COMPILE_CACHE")
    if path is not None and path.strip().lower() in ("", "off", "0", "none"):
        return None
    if path is None:
        from embedcache.checkpoints import embedcache_home

        path = str(embedcache_home() / "xla-cache")
    jax.config.update("jax_compilation_cache_dir", path)
    return path


def local_devices(count: int | None = None) -> list:
    """The first ``count`` local devices of JAX's default backend (all of them for ``None``);
    an :class:`InputError` naming ``--devices`` and how many exist if there are fewer."""
    count, devices = check_devices(count), jax.local_devices()
    if count is not None and count > len(devices):
        raise InputError(f"--devices {count}: this machine has {len(devices)} {jax.default_backend()} device(s); "
                         f"pass --devices {len(devices)} or fewer, or leave it out to use them all.")
    return devices[:count]


@dataclass
class EmbeddingBatch:
    """Results for one batch.

    Attributes
    ----------
    index
        The tags given to :meth:`Embedder.add` for the batch's sequences (positions in the
        list given to :meth:`Embedder.embed`).
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
    """Runs a model over token arrays in length-bucketed batches.

    Parameters
    ----------
    checkpoint
        Anything with ``.config``, ``.params`` and ``.variant`` (the flat checkpoint tree),
        e.g. :class:`embedcache.checkpoints.Checkpoint`.
    request
        The :class:`~embedcache.request.BuildRequest` (layers, pools, maps, ``max_tokens``,
        ``dtype``, species); checked against the model family.
    outputs
        The subset of ``request.outputs`` to compute (default: all of them).
    run
        :class:`~embedcache.request.RunOptions`: ``token_budget`` (default 4,096 padded tokens per
        device on CPU, 32,768 on accelerators), ``batch_size`` (a cap on rows per batch; rows
        are still padded to a multiple of the devices) and ``devices`` (the first N local
        devices, default all; see :func:`local_devices`).
    family
        The model family object (default :func:`embedcache.families.family_for`): its
        tokens, padded lengths, forward and pooling.
    """

    def __init__(self, checkpoint: Any, request: BuildRequest, *, outputs: Sequence[Output] | None = None,
                 run: RunOptions | None = None, family: Any = None) -> None:
        from embedcache.families import family_for

        run = run or RunOptions()
        self.family = family or family_for(checkpoint, species=request.species)
        # A build hands over its request settled; a request made by hand is settled here.
        request = request if request.settled else request.for_model(self.family)
        self.request = request
        self.outputs = tuple(dict.fromkeys(request.outputs if outputs is None else outputs))
        if not self.outputs:
            raise InputError("nothing to compute: no outputs requested")
        self.devices = local_devices(run.devices)
        budget = run.budget(len(self.devices), on_cpu=jax.default_backend() == "cpu")
        self.planner = Planner(request.max_tokens, budget, run.batch_size, ladder=self.family.ladder(request.max_tokens),
                               mix=self.family.masks_padding)
        self.stats = EmbedderStats()
        enable_compile_cache()
        # Data parallel: rows split over a 1-D mesh of the devices, parameters copied to each.
        self._params = jax.device_put(self.family.prepare_params(checkpoint.params, _DTYPES[request.dtype]),
                                      _shardings(self.devices)[1])
        self._fn, self._seen_shapes = _compiled(self.family, self.outputs, request.dtype, self.devices)
        # The family names pooled outputs "layer/pool"; each maps back to its (layer, pool).
        self._pool_keys = {f"{o.layer}/{o.pool}": (o.layer, o.pool) for o in self.outputs if o.pool}
        self._row_cap: dict[int, int] = {}
        self._in_flight: deque = deque()

    def _call(self, tokens: np.ndarray, n_tokens: np.ndarray):
        """Dispatch one padded (rows, T) batch, rows split over the devices; returns device
        arrays sharded the same way (computed asynchronously)."""
        shape = tokens.shape
        if shape in self._seen_shapes:
            return self._fn(self._params, tokens, n_tokens)
        # The first call of a shape traces and compiles before it dispatches: counted apart.
        t0 = time.perf_counter()
        out = self._fn(self._params, tokens, n_tokens)
        self._seen_shapes.add(shape)
        self.stats.compile_seconds += time.perf_counter() - t0
        self.stats.compiled_shapes.append(shape)
        return out

    # -- public -------------------------------------------------------------------------
    def warmup(self, lengths: Sequence[int] | None = None) -> float:
        """Compile the full-size batch shape of each padded length given (default: all
        buckets); returns the seconds spent. Benchmarks use it to report compile time apart."""
        t0 = time.perf_counter()
        for length in lengths or self.planner.ladder.tolist():
            rows = self._padded_rows(self.planner.rows_for(int(length)))
            tokens = np.tile(self.family.filler(int(length)), (rows, 1))
            jax.block_until_ready(self._call(tokens, np.full(rows, int(length), np.int32)))
        return time.perf_counter() - t0

    def embed(self, token_arrays: Sequence[np.ndarray]) -> Iterator[EmbeddingBatch]:
        """Embed token arrays (as the family's tokenizer makes them, unpadded); ``index``
        holds their positions.

        Raises
        ------
        SequenceTooLongError
            If an array is longer than ``max_tokens`` (the build applies the
            long-sequence policy before this point).
        """
        yield from self.add(range(len(token_arrays)), token_arrays)
        yield from self.finish()

    def add(self, tags: Iterable, token_arrays: Sequence[np.ndarray]) -> Iterator[EmbeddingBatch]:
        """Queue token arrays under the caller's ``tags``; run every batch that is full, and
        yield the batches whose results came back."""
        n_tokens = [len(a) for a in token_arrays]
        for length, part in self.planner.add(list(zip(tags, token_arrays)), n_tokens):
            yield from self._submit(length, part)

    def finish(self) -> Iterator[EmbeddingBatch]:
        """Run what is still queued (partial batches) and yield every remaining result."""
        for length, part in self.planner.finish():
            yield from self._submit(length, part)
        yield from self._drain()

    def run(self, length: int, part: list) -> Iterator[EmbeddingBatch]:
        """Run one batch planned elsewhere (``(tag, tokens)`` rows at padded length ``length``,
        as a :class:`Planner` of the same settings made it: the Dask client's) and yield its
        results."""
        yield from self._submit(length, part)
        yield from self._drain()

    # -- execution ------------------------------------------------------------------------
    def _submit(self, length: int, part: list) -> Iterator[EmbeddingBatch]:
        cap = self._row_cap.get(length)
        if cap and len(part) > cap:
            for s in range(0, len(part), cap):
                yield from self._submit(length, part[s : s + cap])
            return
        tokens = self._pad_batch(part, length)
        n_tokens = np.zeros(tokens.shape[0], dtype=np.int32)
        n_tokens[: len(part)] = [len(a) for _, a in part]
        n_tokens[len(part) :] = length  # filler rows
        try:
            out = self._call(tokens, n_tokens)
        except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled
            yield from self._halve(exc, length, part)
            return
        self._in_flight.append((length, part, tokens.shape[0], out))
        if len(self._in_flight) > 1:
            yield from self._collect()

    def _drain(self) -> Iterator[EmbeddingBatch]:
        while self._in_flight:
            yield from self._collect()

    def _collect(self) -> Iterator[EmbeddingBatch]:
        length, part, rows, out = self._in_flight.popleft()
        try:
            raw = jax.device_get(out)
        except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled
            yield from self._halve(exc, length, part)
            return
        yield self._unpack(raw, part, length, rows)

    def _halve(self, exc: Exception, length: int, part: list) -> Iterator[EmbeddingBatch]:
        # At one row per device, a smaller part would be padded back to the same shape.
        if not _is_out_of_memory(exc) or self._padded_rows(len(part)) <= len(self.devices):
            raise exc
        half = _pow2_floor(len(part) // 2)
        self._row_cap[length] = half
        self.stats.oom_halvings += 1
        log.warning("out of memory on a batch of %d x %d tokens; going on with %d rows", len(part), length, half)
        yield from self._submit(length, part)

    def _padded_rows(self, n: int) -> int:
        """Rows a batch of ``n`` sequences is padded to: the next power of two (few shapes to
        compile), rounded up to a multiple of the device count (an equal share each)."""
        k = len(self.devices)
        return -(-_pow2_ceil(n) // k) * k

    def _pad_batch(self, part: list, length: int) -> np.ndarray:
        tokens = np.tile(self.family.filler(length), (self._padded_rows(len(part)), 1))
        for r, (_, a) in enumerate(part):
            tokens[r, len(a) :] = self.family.pad_id
            tokens[r, : len(a)] = a
        return tokens

    def _unpack(self, raw: dict, part: list, length: int, rows: int) -> EmbeddingBatch:
        b = len(part)
        n_tok = np.fromiter((len(a) for _, a in part), dtype=np.int64, count=b)
        self.stats.sequences += b
        self.stats.real_tokens += int(n_tok.sum())
        self.stats.padded_tokens += rows * length
        pooled = {self._pool_keys[k]: np.asarray(v[:b], dtype=np.float32) for k, v in raw["pooled"].items()}
        maps = {k: np.asarray(v[:b], dtype=np.float32) for k, v in raw["attention"].items()}
        return EmbeddingBatch(index=np.asarray([t for t, _ in part]), n_tokens=n_tok, pooled=pooled, attention=maps)


# Jitted forwards are kept per process, keyed by what they compute (family, configuration,
# outputs, dtype), not per Embedder: a later build in the same process (a notebook, a Dask
# worker, a benchmark) neither traces nor loads its programs again. Parameters are arguments,
# never captured, so no weights are held here. Each entry keeps the shapes it has compiled.
_COMPILED: dict = {}


def _shardings(devices: Sequence) -> tuple:
    """``(rows split over the devices, replicated on each)`` on a 1-D mesh of ``devices``."""
    mesh = Mesh(np.asarray(devices), ("rows",))
    return NamedSharding(mesh, PartitionSpec("rows")), NamedSharding(mesh, PartitionSpec())


def _compiled(family, outputs: tuple, dtype: str, devices: Sequence) -> tuple:
    """``(jitted forward, set of compiled batch shapes)`` for ``outputs`` of ``family``, its
    batches split over ``devices`` (parameters replicated on each)."""
    key = (type(family).__name__, repr(family.config), family.pad_id, getattr(family, "species_token", None),
           outputs, dtype, tuple(devices))
    if key not in _COMPILED:
        pooled = [o for o in outputs if o.pool]
        layers, pools = list(dict.fromkeys(o.layer for o in pooled)), sorted({o.pool for o in pooled})
        maps, wanted = [(o.layer, o.head) for o in outputs if o.head], {f"{o.layer}/{o.pool}" for o in pooled}

        def compute(params, tokens, n_tokens):
            out = family.compute(params, tokens, n_tokens, layers=layers, pools=pools, attention=maps,
                                 dtype=_DTYPES[dtype])
            return {"pooled": {k: v for k, v in out["pooled"].items() if k in wanted}, "attention": out["attention"]}

        by_row, replicated = _shardings(devices)
        _COMPILED[key] = (jax.jit(compute, in_shardings=(replicated, by_row, by_row), out_shardings=by_row), set())
    return _COMPILED[key]


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = str(exc)
    return "RESOURCE_EXHAUSTED" in text or "Out of memory" in text or "out of memory" in text
