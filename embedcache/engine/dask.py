"""A build's model runs on Dask workers; the client stays the store's single writer.

``build(..., dask=...)`` (``embedcache build --dask ADDRESS|local[:N]``) plans batches exactly
as a local build does (:class:`embedcache.engine.Planner`), submits each one as a Dask task
(tokens in, pooled arrays out), and hands results to the writer as they complete
(``distributed.as_completed``), so commits happen while workers compute and the progress
display counts every worker's rows.

Each worker process loads a checkpoint once: tasks carry only a reference (where to load it
from, and the parameter digest it must have), and the loaded model and its compiled
functions are kept per process (:func:`_embedder`). A worker lost mid-task is Dask's to
handle: the scheduler reruns its tasks elsewhere (``distributed.scheduler.allowed-failures``).
Nothing here queues, retries or sends messages on its own.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np

from embedcache.engine.local import EmbeddingBatch
from embedcache.engine.planner import Planner
from embedcache.errors import CheckpointError, InputError
from embedcache.request import BuildRequest, Output, RunOptions

__all__ = ["DaskEmbedder", "check_spec", "connect", "worker_loads"]


def check_spec(dask) -> int | None:
    """Refuse a malformed ``dask=`` value (:class:`InputError` naming ``--dask``) before any
    work; returns N for ``"local:N"`` (2 for ``"local"``), else ``None``."""
    from distributed import Client

    if isinstance(dask, Client):
        return None
    if not isinstance(dask, str) or not dask.strip():
        raise InputError(f"--dask takes a scheduler address (tcp://host:8786) or local[:N], not {dask!r}")
    spec = dask.strip()
    if spec != "local" and not spec.startswith("local:"):
        return None
    n = spec.partition(":")[2] or "2"
    if not n.isdigit() or int(n) < 1:
        raise InputError(f"--dask {spec!r}: local:N takes a number of workers N >= 1, e.g. --dask local:4")
    return int(n)


@contextlib.contextmanager
def connect(dask) -> Iterator:
    """A ``distributed.Client`` for ``dask``: a client (used as is), ``"local"`` or
    ``"local:N"`` (a local cluster of N single-threaded worker processes, default 2, closed
    on exit), or a scheduler address such as ``tcp://host:8786``."""
    from distributed import Client, LocalCluster

    n = check_spec(dask)
    if isinstance(dask, Client):
        yield dask
        return
    spec = dask.strip()
    if n is not None:
        # One thread per worker process: the model's own threads do the parallel work.
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            yield client
        return
    try:
        client = Client(spec, timeout="30s")
    except (OSError, TimeoutError) as exc:
        raise InputError(f"--dask {spec}: no Dask scheduler answered ({exc}); check the address, or use "
                         "--dask local:N for workers on this machine.") from None
    with client:
        yield client


@dataclass(frozen=True)
class _CheckpointRef:
    """What a worker needs to load the client's checkpoint, and the digest it must find."""

    model: str
    digest: str
    cache_dir: str | None


# Per worker process: the embedders made so far, and how many checkpoints were loaded.
_EMBEDDERS: dict = {}
_CHECKPOINTS: dict = {}


def worker_loads() -> int:
    """Checkpoints this process has loaded for Dask tasks (one per checkpoint, however many tasks)."""
    return len(_CHECKPOINTS)


def _embedder(ref: _CheckpointRef, request: BuildRequest, outputs: tuple, run: RunOptions):
    from embedcache.checkpoints import load_checkpoint
    from embedcache.engine.local import Embedder

    if ref not in _CHECKPOINTS:
        checkpoint = load_checkpoint(ref.model, cache_dir=ref.cache_dir)
        if checkpoint.digest != ref.digest:
            raise CheckpointError(
                f"the worker loaded {ref.model} with parameter digest {checkpoint.digest[:16]}..., not the "
                f"client's {ref.digest[:16]}...: the workers must see the same checkpoint files as the client."
            )
        _CHECKPOINTS[ref] = checkpoint
    key = (ref, request, outputs, run)
    if key not in _EMBEDDERS:
        # One device per worker (dask-cuda gives each worker its own GPU as device 0); the
        # client plans batches for one device's token budget. The request comes settled.
        _EMBEDDERS[key] = Embedder(_CHECKPOINTS[ref], request, outputs=outputs, run=run)
    return _EMBEDDERS[key]


def _embed_batch(ref, request, outputs, run, length: int, part: list) -> list[EmbeddingBatch]:
    """The Dask task: one batch of ``(tag, tokens)`` at padded length ``length``, as the
    client planned it, embedded on this worker."""
    return list(_embedder(ref, request, outputs, run).run(length, part))


class DaskEmbedder:
    """:class:`embedcache.engine.Embedder`'s ``add``/``finish`` with batches run by Dask workers.

    Batches are planned here, with the settings the workers' embedders use, so a task is one
    full (or final partial) batch. At most ``2 x workers`` tasks are in flight: enough to
    keep every worker busy while results are written, and a bound on the client's memory.
    """

    def __init__(self, client, checkpoint, request: BuildRequest, *, outputs: Sequence[Output],
                 run: RunOptions | None = None, cache_dir=None, family=None) -> None:
        from distributed import as_completed

        from embedcache.families import family_for

        self.client = client
        # The workers' embedders pick the same family from the checkpoint and the request's species.
        family = family or family_for(checkpoint, species=request.species)
        self.request = request if request.settled else request.for_model(family)
        self.outputs = tuple(outputs)
        run = run or RunOptions()
        # One device per worker; its default budget depends on the workers' backend, and the
        # client's plan must be the workers' (they get it as a plain RunOptions).
        self.worker_run = RunOptions(batch_size=run.batch_size, devices=1,
                                     token_budget=run.budget(1, on_cpu=_workers_on_cpu(client)))
        limit = self.request.max_tokens
        self.planner = Planner(limit, self.worker_run.token_budget, run.batch_size, ladder=family.ladder(limit),
                               mix=family.masks_padding)
        random = bool(getattr(checkpoint, "random_weights", False))
        self.ref = _CheckpointRef(model=checkpoint.name if random else str(checkpoint.source),
                                  digest=checkpoint.digest, cache_dir=None if cache_dir is None else str(cache_dir))
        self._done = as_completed()
        self._in_flight = 0
        self._limit = 2 * max(len(client.scheduler_info()["workers"]), 1)

    def add(self, tags: Iterable, token_arrays: Sequence[np.ndarray]) -> Iterator[EmbeddingBatch]:
        """Queue token arrays under ``tags``; submit full batches; yield results that came back."""
        n_tokens = [len(a) for a in token_arrays]
        for length, part in self.planner.add(list(zip(tags, token_arrays)), n_tokens):
            yield from self._submit(length, part)
        for future in self._done.next_batch(block=False) if self._done.has_ready() else ():
            yield from self._result(future)

    def finish(self) -> Iterator[EmbeddingBatch]:
        """Submit the partial batches and yield every remaining result, as each completes."""
        for length, part in self.planner.finish():
            yield from self._submit(length, part)
        for future in self._done:
            yield from self._result(future)

    def _submit(self, length: int, part: list) -> Iterator[EmbeddingBatch]:
        while self._in_flight >= self._limit:
            yield from self._result(next(self._done))
        future = self.client.submit(_embed_batch, self.ref, self.request, self.outputs, self.worker_run,
                                    length, part, pure=False)
        self._in_flight += 1
        self._done.add(future)

    def _result(self, future) -> Iterator[EmbeddingBatch]:
        self._in_flight -= 1
        yield from future.result()
        future.release()


def _workers_on_cpu(client) -> bool:
    backends = client.run(_backend)
    return all(b == "cpu" for b in backends.values())


def _backend() -> str:
    import jax

    return jax.default_backend()
