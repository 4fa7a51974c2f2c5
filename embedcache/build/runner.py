"""A build's second pass: engines, the compute loop and the writer (under the store's lock)."""

from __future__ import annotations

import contextlib
import os
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from embedcache.build.inputs import windows
from embedcache.build.plan import plan_rows
from embedcache.build.progress import Progress
from embedcache.errors import ModelOutputError
from embedcache.request import BuildRequest, Output, RunOptions
from embedcache.store import ModelSpec, Store, StoreWriting, sequence_digest

__all__ = ["compute", "engines"]


@contextlib.contextmanager
def engines(checkpoint, family, request: BuildRequest, run: RunOptions, *, cache_dir):
    """Yields ``make(outputs)``: an engine computing exactly ``outputs`` of the settled
    ``request``, on this machine's devices or on the Dask workers of ``run.dask``."""
    if run.dask is None:
        from embedcache import engine

        yield lambda outputs: engine.Embedder(checkpoint, request, outputs=outputs, family=family, run=run)
        return
    from embedcache.engine.dask import DaskEmbedder, connect

    with connect(run.dask) as client:
        yield lambda outputs: DaskEmbedder(client, checkpoint, request, outputs=outputs, family=family, run=run,
                                           cache_dir=cache_dir)


def compute(store: Store, checkpoint, family, request: BuildRequest, spec: ModelSpec, sources, unique: set,
             make_engine, run: RunOptions) -> tuple["_Runner", dict]:
    """The second pass: every store write of a build is here. Returns the runner and, per
    output, how many of ``unique`` the store held when it began."""
    attrs = {
        "model_name": checkpoint.name,
        "source": str(checkpoint.source),
        "architecture": checkpoint.hyperparams,
        "variant": checkpoint.variant,
        **family.attrs(),
        "window_tokens": spec.max_tokens - family.prefix,
        "random_weights": bool(getattr(checkpoint, "random_weights", False)),
    }
    outputs = request.outputs
    with StoreWriting(store, timeout=run.lock_timeout) as writing:
        writer = writing.group(spec, attrs, commit_seconds=float(os.environ.get("EMBEDCACHE_COMMIT_SECONDS", 2.0)))
        writer.ensure_arrays([o.name for o in outputs],
                             # ``mlm`` holds the LM head's logits, the family's logits_dim wide.
                             feature_dim={o.name: family.logits_dim if o.pool == "mlm" else family.feature_dim(o.layer)
                                          for o in outputs if o.pool},
                             attention_size=family.attention_size(spec.max_tokens))
        # Planned again: another build may have committed rows since the first plan.
        snapshot = writer.snapshot()
        todo, held = plan_rows(snapshot, unique, outputs)
        writer.planned_on(snapshot)
        runner = _Runner(make_engine, family, request, writer, Progress(len(todo), run.quiet), model=checkpoint.name)
        try:
            for _, chunks in sources:
                for df in chunks():
                    for needed, entries in _todo_in_chunk(df, todo).items():
                        runner.add(needed, entries, family.encode_batch([e[1] for e in entries]))
            runner.finish()
            writer.flush()
        except BaseException as exc:  # Ctrl-C, disk full...: the command line says what was kept, and where
            exc.rows_committed = writer.rows_written
            exc.store = str(store.path)
            raise
        finally:
            runner.progress.close()
    return runner, held


def _todo_in_chunk(df, todo: dict) -> dict[tuple, list]:
    """The chunk's sequences still to compute, as ``(digest, sequence, row, record id)`` grouped
    by the outputs each lacks; each leaves ``todo``, so a later duplicate is not computed again."""
    groups: dict[tuple, list] = defaultdict(list)
    for s, record_id in zip(df["sequence"].tolist(), df["id"].tolist()):
        d = sequence_digest(s)
        if d in todo:
            row, needed = todo.pop(d)
            groups[needed].append((d, s, row, record_id))
    return groups


@dataclass
class _Item:
    """A sequence being computed: where its row goes, and its windows' running sums."""

    digest: str
    sequence: str
    row: int | None
    record_id: str
    n_tokens: int
    n_windows: int
    needed: tuple
    arrived: int = 0
    weight: float = 0.0
    sums: dict = field(default_factory=dict)


class _Runner:
    """Hands windows to one engine per set of needed outputs (its planner batches them across
    input chunks), and writes a row when all its windows have come back."""

    def __init__(self, make_engine, family, request: BuildRequest, writer, progress, *, model: str):
        self.make_engine, self.family, self.request, self.model = make_engine, family, request, model
        self.map_size = family.attention_size(request.max_tokens)
        self.writer, self.progress = writer, progress
        self.engines: dict[tuple, object] = {}
        self.items: dict[int, _Item] = {}
        self.computed: dict[Output, int] = defaultdict(int)
        self._next = 0

    def add(self, needed: tuple, entries: list, tokens: list) -> None:
        """Queue sequences (``(digest, sequence, row, record id)`` with their token arrays) lacking ``needed``."""
        if needed not in self.engines:
            self.engines[needed] = self.make_engine(needed)
        tags, queued = [], []
        for (d, s, row, record_id), t in zip(entries, tokens):
            parts = windows(t, self.request, self.family.prefix)
            n_tok = min(len(t), self.request.max_tokens) if self.request.long == "truncate" else len(t)
            self.items[self._next] = _Item(d, s, row, record_id, n_tok, len(parts), needed)
            tags += [self._next] * len(parts)
            self._next += 1
            queued += parts
        for batch in self.engines[needed].add(tags, queued):
            self._take(batch)

    def finish(self) -> None:
        """Run everything still queued."""
        for engine in self.engines.values():
            for batch in engine.finish():
                self._take(batch)

    def _check_finite(self, batch) -> None:
        """Refuse a batch holding NaN or infinity before any of its rows reaches the writer, so
        none of it is committed: a damaged model or an overflow must not become cached data."""
        named = [(f"layer {layer} {pool} embedding", v) for (layer, pool), v in batch.pooled.items()]
        named += [(f"attention map (layer {layer}, head {head})", v) for (layer, head), v in batch.attention.items()]
        for what, values in named:
            bad = ~np.isfinite(values).reshape(len(values), -1).all(axis=1)
            if bad.any():
                item = self.items[batch.index.tolist()[int(np.argmax(bad))]]
                raise ModelOutputError(
                    f"model {self.model} computed non-finite values (NaN or infinity) in the {what} of "
                    f"record {item.record_id!r} (sequence digest {item.digest[:16]}; {int(bad.sum())} of the batch's "
                    f"{len(values)} windows are affected); nothing of the batch was stored. The weights "
                    "themselves are finite (checked at load), so the arithmetic overflowed: under --dtype bfloat16 "
                    "rerun with --dtype float32; under float32 the weights are damaged or were never trained "
                    "for this input (download the checkpoint again)."
                )

    def _take(self, batch) -> None:
        self._check_finite(batch)
        T, finished = self.map_size, 0
        for r, tag in enumerate(batch.index.tolist()):
            item = self.items[tag]
            values = {}
            for o in item.needed:
                if o.pool:
                    values[o.name] = batch.pooled[(o.layer, o.pool)][r]
                else:  # stored at the group's map size, zero past the batch's padded length
                    m = batch.attention[(o.layer, o.head)][r]
                    values[o.name] = np.pad(m, [(0, T - m.shape[0]), (0, T - m.shape[1])])
            if item.n_windows > 1:
                # Tiled: pooled values averaged over windows, weighted by their tokens.
                weight = float(batch.n_tokens[r] - self.family.prefix)
                for name, v in values.items():
                    item.sums[name] = item.sums.get(name, 0.0) + weight * v
                item.weight += weight
                item.arrived += 1
                if item.arrived < item.n_windows:
                    continue
                values = {name: (v / item.weight).astype(np.float32) for name, v in item.sums.items()}
            del self.items[tag]
            if item.row is None:
                self.writer.add_new_row(item.digest, item.sequence, item.n_tokens, item.n_windows, values)
            else:
                self.writer.add_old_row(item.row, values)
            for o in item.needed:
                self.computed[o] += 1
            finished += 1
        self.progress.advance(finished, int(np.sum(batch.n_tokens)))
