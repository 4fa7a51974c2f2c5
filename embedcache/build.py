"""The build job: sequences in, missing embeddings and attention maps computed and stored.

The pipeline, per input chunk (memory is bounded by a chunk and the writer's buffer, not
by the input):

1. **Scan** (first pass, nothing written): read and normalize every record
   (:func:`embedcache.readers.iter_records`), count its tokens, apply the long-sequence
   policy, and collect the digests of the unique sequences. Every input error surfaces
   here, before the store is touched, so bad input leaves the store's bytes unchanged.
2. **Plan**: compare the unique digests with the committed rows of the model group; a
   sequence whose row holds every requested array is reused. Nothing missing: done, and
   the store was only read.
3. **Compute** (second pass, under the writer's lock): re-read the inputs, tokenize the
   missing sequences (truncating or cutting windows as the policy says), run
   :class:`embedcache.engine.Embedder` over them, asking for exactly the arrays each one
   lacks, and hand rows to :class:`embedcache.store.GroupWriter` as batches come.

Long-sequence policy (``long=``; part of the model key):

``"error"`` (default)
    A sequence over ``max_tokens`` tokens (CLS included) stops the build before anything
    is written, naming its file, record and token count.
``"truncate"``
    The longest prefix of tokens that fits (``max_tokens``, CLS included) is embedded.
    The row keeps the whole sequence and digest; ``n_tokens`` is the embedded count.
``"tile"``
    A long sequence is cut into windows of ``max_tokens - 1`` tokens (each prefixed with
    CLS) that overlap by ``window_overlap`` tokens, the last window ending at the last
    token. Each window is embedded; CLS and mean embeddings are averaged over windows,
    weighted by each window's tokens. ``n_windows`` records the number of windows per row;
    with the window size and overlap in the group's attributes, that fixes each window.
    Attention maps of tiled sequences are not defined and are refused.

NTv3 has no CLS: its tokens are bases, ``max_tokens`` counts bases, windows are
``max_tokens`` bases with no prefix, and each window is padded with ``N`` to its own padded
length (a multiple of 2**num_downsamples) exactly as a sequence of that length would be.

Commits: rows are committed every 4,096 rows, 64 MiB of buffered values or 2 seconds,
whichever comes first, so a killed build loses at most that much work. The environment
variable ``EMBEDCACHE_COMMIT_SECONDS`` changes the interval (each commit rewrites the
partly filled shards, so much shorter intervals cost I/O).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from embedcache.alphabet import DEFAULT_ALPHABET, normalize_many
from embedcache.errors import CheckpointError, InputError, SequenceTooLongError
from embedcache.progress import Progress
from embedcache.quality import IdConflicts
from embedcache.request import BuildRequest, Output, check_devices
from embedcache.store import ModelSpec, Store, StoreWriting, sequence_digest

__all__ = ["BuildReport", "build"]


@dataclass
class BuildReport:
    """What a build did.

    Attributes
    ----------
    cache, model_key, model_name
        Where it wrote, and which model group.
    random_weights
        True when the model is a random-weight stand-in for a released one: the pipeline
        ran, but the embeddings carry no biology.
    records
        Records read from all inputs, duplicates included.
    unique
        Distinct normalized sequences among them.
    computed
        Unique sequences the model ran on (some or all of their arrays were missing).
    reused
        Unique sequences that already held every requested array: the model did not run.
    others
        Unique sequences left to the other shards (``shard=``): this job neither computed
        nor checked them.
    shard
        ``"i/n"`` when the build took one share of the sequences, else ``None``.
    new_rows
        Rows appended to the store (sequences it did not hold at all).
    arrays
        Per array name, ``{"computed": n, "reused": m}`` over the unique sequences.
    tokens
        Tokens the model ran on (CLS included, every window counted).
    truncated, tiled
        Unique sequences shortened or cut into windows by the long-sequence policy.
    seconds
        Wall time of the build.
    write_seconds
        Of that, the time spent committing rows to the store (waiting for the commit lock included).
    """

    cache: str
    model_key: str
    model_name: str
    random_weights: bool = False
    records: int = 0
    unique: int = 0
    computed: int = 0
    reused: int = 0
    others: int = 0
    shard: str | None = None
    new_rows: int = 0
    arrays: dict = field(default_factory=dict)
    tokens: int = 0
    truncated: int = 0
    tiled: int = 0
    seconds: float = 0.0
    write_seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """A few lines for people."""
        lines = [
            f"model {self.model_name} (key {self.model_key}) in {self.cache}",
            f"{self.records} records, {self.unique} unique sequences: {self.computed} computed, "
            f"{self.reused} reused; {self.new_rows} new rows; {self.tokens} tokens in {self.seconds:.1f} s",
        ]
        if self.shard:
            lines.insert(1, f"shard {self.shard}: {self.computed} computed, {self.reused} reused, "
                            f"{self.others} left to other shards")
        if self.random_weights:
            lines.insert(0, f"RANDOM WEIGHTS: {self.model_name} is the released architecture with seeded "
                            "random weights; these embeddings carry no biology.")
        if self.truncated or self.tiled:
            lines.append(f"long sequences: {self.truncated} truncated, {self.tiled} tiled")
        for name, counts in sorted(self.arrays.items()):
            lines.append(f"  {name}: {counts['computed']} computed, {counts['reused']} reused")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------


def _sources(inputs, *, alphabet: str, reference, chunk_size: int) -> list[tuple[str, Callable]]:
    """``(name, chunks)`` per input, ``chunks()`` reading it (again) as normalized DataFrame chunks:
    a file through the readers, or the sequences given in Python."""
    from embedcache.readers import iter_records

    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = list(inputs)
    if not inputs:
        raise InputError("no input: pass sequence files or a list of sequences")
    kinds = {_input_kind(x) for x in inputs}
    if len(kinds) > 1 or kinds == {None}:
        raise InputError(
            "inputs must be all file paths or all DNA sequences (str); got "
            f"{', '.join(sorted(k or 'other objects' for k in kinds))}"
        )
    if kinds == {"sequence"}:
        frame = _sequence_frame(inputs, alphabet)
        return [("<sequences>", lambda: iter([frame]))]
    sources = []
    for path in inputs:
        # Arguments (format, reference, existence) are checked now, before any work.
        iter_records(path, reference=reference, alphabet=alphabet, chunk_size=chunk_size)
        sources.append((str(path), lambda p=path: iter_records(
            p, reference=reference, alphabet=alphabet, chunk_size=chunk_size)))
    return sources


def _input_kind(x) -> str | None:
    # A string of letters that names no file is a sequence (an empty one is an empty
    # sequence, refused later by name); anything path-like is a path.
    if isinstance(x, os.PathLike):
        return "path"
    if not isinstance(x, str):
        return None
    if x == "" or (x.isalpha() and not os.path.isfile(x)):
        return "sequence"
    return "path"


def _sequence_frame(seqs: Sequence[str], alphabet: str) -> pd.DataFrame:
    empty = next((i for i, s in enumerate(seqs) if not s), None)
    if empty is not None:
        raise InputError(f"sequence #{empty + 1} is empty; remove it (an empty sequence has nothing to embed)")
    return pd.DataFrame({"id": [f"#{i + 1}" for i in range(len(seqs))], "record": np.arange(1, len(seqs) + 1),
                         "sequence": normalize_many(seqs, alphabet=alphabet)})


# --------------------------------------------------------------------------------------
# Scan
# --------------------------------------------------------------------------------------


@dataclass
class _Scan:
    records: int = 0
    unique: set = field(default_factory=set)
    long: int = 0  # unique sequences over max_tokens (truncated or tiled, as the policy says)


def _scan(sources, family, request: BuildRequest) -> _Scan:
    scan, limit = _Scan(), request.max_tokens
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


def _windows(tokens: np.ndarray, spec: BuildRequest, prefix: int) -> list[np.ndarray]:
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


# --------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------


def build(
    cache,
    inputs,
    *,
    model,
    layers: Sequence[int | str] | None = None,
    pools: Sequence[str] | None = None,
    attention: Sequence[tuple[int, int]] = (),
    max_tokens: int | None = None,
    species: str | None = None,
    batch_size: int | None = None,
    token_budget: int | None = None,
    dtype: str = "float32",
    store_dtype: str = "float32",
    alphabet: str = DEFAULT_ALPHABET,
    long: str = "error",
    window_overlap: int | None = None,
    reference=None,
    quiet: bool = False,
    lock_timeout: float = 10.0,
    chunk_size: int = 10_000,
    cache_dir=None,
    allow_random_weights: bool = False,
    shard=None,
    dask=None,
    devices: int | None = None,
) -> BuildReport:
    """Compute what the store lacks for ``inputs`` and write it; see the module docs.

    Parameters
    ----------
    cache
        Store path (created if missing).
    inputs
        A sequence file path, several paths, or a list of DNA sequences.
    model
        A released model name, a checkpoint directory, or a model key already in the
        store (its checkpoint is reloaded from the recorded name or directory and must
        still have the recorded parameter digest; the group's policies are used).
    layers, pools, attention, max_tokens, dtype, store_dtype, alphabet, long, window_overlap
        The request (:class:`embedcache.request.BuildRequest`): 1-based layers to pool
        (default the last; ``"final"`` too for NTv3), ``"cls"``/``"mean"`` (default: all the
        model has; NTv3 has ``mean`` only), ``(layer, head)`` maps, tokens per pass (CLS
        included; default 512, NTv3: bases, default 131,072 or the context), compute and
        stored dtypes, alphabet policy
        (:mod:`embedcache.alphabet`), long-sequence policy (``"error"``, ``"truncate"``,
        ``"tile"``) and the windows' overlap (default ``max_tokens // 8``).
    species
        The species a post-trained NTv3 model is conditioned on (part of the model key);
        missing or unknown, the error lists the checkpoint's species.
    batch_size, token_budget
        Caps on rows and padded tokens per batch (see :class:`embedcache.engine.Embedder`).
    reference
        Genome FASTA for BED inputs.
    quiet
        No progress output.
    lock_timeout
        Seconds to wait for another writer before :class:`~embedcache.errors.StoreLockedError`.
    chunk_size
        Records per chunk read from a file.
    cache_dir
        Hugging Face cache for released models.
    allow_random_weights
        When a released model's weights are not available, build with its architecture and
        seeded random weights instead of failing (see
        :func:`embedcache.checkpoints.load_checkpoint`). The model group, the report and
        ``embedcache info`` say so: such embeddings carry no biology.
    shard
        ``(i, n)`` (or ``"i/n"``): compute only share ``i`` of ``n`` of the unique sequences,
        chosen by digest (:class:`embedcache.request.Shard`), so that ``n`` concurrent jobs
        over the same inputs cover every sequence once with no merge step.
    dask
        A ``distributed.Client``, a scheduler address, or ``"local"``/``"local:N"`` (a local
        cluster of N single-threaded worker processes): batches are embedded by the Dask
        workers, and this process writes the results as they arrive
        (:mod:`embedcache.distributed`).
    devices
        Split each batch over the first N local devices of JAX's default backend (default:
        all of them; :func:`embedcache.engine.local_devices`). Not with ``dask``: each Dask
        worker uses one device (run one worker per device).

    Returns
    -------
    BuildReport
    """
    t0 = time.perf_counter()
    # Option values are checked here, before a checkpoint or an input is read.
    request = BuildRequest(layers=None if layers is None else tuple(layers),
                           pools=None if pools is None else tuple(pools), attention=tuple(attention),
                           max_tokens=max_tokens, alphabet=alphabet, long=long, window_overlap=window_overlap,
                           dtype=dtype, store_dtype=store_dtype, species=species, shard=shard)
    devices = check_devices(devices)
    if dask is not None:
        from embedcache.distributed import check_spec

        check_spec(dask)
        if devices is not None:
            raise InputError("--devices is for a build on this machine; with --dask each worker uses one device: "
                             "start one worker per device (e.g. dask-cuda's LocalCUDACluster) and drop --devices.")
    elif devices is not None:
        from embedcache.engine import local_devices

        local_devices(devices)  # that many exist: said before a checkpoint is read
    store = cache if isinstance(cache, Store) else Store(cache)
    checkpoint, family, request, spec = _model_and_request(store, model, request, cache_dir=cache_dir,
                                                           allow_random_weights=allow_random_weights)
    sources = _sources(inputs, alphabet=request.alphabet, reference=reference, chunk_size=chunk_size)
    scan = _scan(sources, family, request)
    mine = scan.unique if request.shard is None else {d for d in scan.unique if request.shard.owns(d)}
    report = BuildReport(cache=str(store.path), model_key=spec.key, model_name=checkpoint.name,
                         random_weights=bool(getattr(checkpoint, "random_weights", False)), records=scan.records,
                         unique=len(scan.unique), others=len(scan.unique) - len(mine),
                         shard=request.shard and str(request.shard),
                         truncated=scan.long if request.long == "truncate" else 0,
                         tiled=scan.long if request.long == "tile" else 0)
    del scan
    todo, held = _plan(store.group(spec.key) if spec.key in store.keys() else None, mine, request.outputs)
    computed = dict.fromkeys(request.outputs, 0)
    if todo:
        del todo  # planned again by the writer
        with _engines(dask, checkpoint, request, family, batch_size=batch_size, token_budget=token_budget,
                      devices=devices, cache_dir=cache_dir) as make_engine:
            runner, held = _compute(store, checkpoint, family, request, spec, sources, mine, make_engine,
                                    lock_timeout=lock_timeout, quiet=quiet)
        report.computed, report.tokens = runner.progress.done, runner.progress.tokens
        report.new_rows = runner.writer.rows_written
        report.write_seconds = runner.writer.commit_seconds_total
        computed = runner.computed
    report.arrays = {o.name: {"computed": computed[o], "reused": held[o]} for o in request.outputs}
    report.reused = report.unique - report.others - report.computed
    report.seconds = time.perf_counter() - t0
    return report


def _model_and_request(store: Store, model, request: BuildRequest, *, cache_dir, allow_random_weights):
    """Load the checkpoint; settle the request against it and the model spec (hence the key).

    A model key of the store brings its own policies and its recorded checkpoint, which
    must still hold the parameters the key was made from.
    """
    from embedcache.checkpoints import load_checkpoint
    from embedcache.families import family_for

    if isinstance(model, str) and model in store.keys():  # keys() also refuses a foreign store
        group = store.group(model)
        spec = group.spec
        # Random stand-ins are made again from their name; real weights from where they were read.
        recorded = group.model_name if group.attrs.get("random_weights") else group.attrs.get("source")
        checkpoint = load_checkpoint(recorded or group.model_name, cache_dir=cache_dir)
        if checkpoint.digest != spec.param_digest:
            raise CheckpointError(
                f"the checkpoint at {checkpoint.source} has parameter digest {checkpoint.digest[:16]}..., "
                f"but model group {model} of {store.path} was built with {spec.param_digest[:16]}...: the "
                "weights changed. Pass the original checkpoint with --model PATH (a new group is made for "
                "new weights), or build into a new cache."
            )
        request = replace(request, **{k: getattr(spec, k) for k in request.spec_fields()})
        family = family_for(checkpoint, species=request.species)
        return checkpoint, family, request.for_model(family), spec
    checkpoint = load_checkpoint(model, cache_dir=cache_dir, allow_random_weights=allow_random_weights)
    family = family_for(checkpoint, species=request.species)
    request = request.for_model(family)
    return checkpoint, family, request, ModelSpec(param_digest=checkpoint.digest, **request.spec_fields())


def _plan(group, unique: set, outputs: tuple[Output, ...]) -> tuple[dict, dict]:
    """What the model group (``None``: not created yet) lacks of ``outputs`` for the
    ``unique`` digests: ``{digest: (row or None, the outputs it lacks)}`` for those lacking
    any, and per output how many of ``unique`` hold it. Costs what ``unique`` costs."""
    digests = list(unique)
    rows = group.rows_of(digests) if group is not None and digests else np.full(len(digests), -1)
    found = rows >= 0
    lacks = np.ones((len(digests), len(outputs)), dtype=bool)
    if found.any():
        for j, o in enumerate(outputs):
            lacks[found, j] = ~group.filled(o.name, rows[found])
    held = {o: len(digests) - int(lacks[:, j].sum()) for j, o in enumerate(outputs)}
    todo = {}
    for d, row, row_lacks in zip(digests, rows.tolist(), lacks.tolist()):
        if any(row_lacks):
            todo[d] = (row if row >= 0 else None, tuple(o for o, lack in zip(outputs, row_lacks) if lack))
    return todo, held


@contextlib.contextmanager
def _engines(dask, checkpoint, request: BuildRequest, family, *, devices, cache_dir, **engine_kw):
    """Yields ``make(outputs)``: an engine computing exactly ``outputs``, on this machine's
    ``devices`` or on the Dask workers of ``dask``."""
    if dask is None:
        from embedcache import engine

        yield lambda outputs: engine.Embedder(checkpoint, request, outputs=outputs, family=family, devices=devices,
                                              **engine_kw)
        return
    from embedcache.distributed import DaskEmbedder, connect

    with connect(dask) as client:
        yield lambda outputs: DaskEmbedder(client, checkpoint, request, outputs=outputs, family=family,
                                           cache_dir=cache_dir, **engine_kw)


def _compute(store: Store, checkpoint, family, request: BuildRequest, spec: ModelSpec, sources, unique: set,
             make_engine, *, lock_timeout: float, quiet: bool) -> tuple["_Runner", dict]:
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
    with StoreWriting(store, timeout=lock_timeout) as writing:
        writer = writing.group(spec, attrs, commit_seconds=float(os.environ.get("EMBEDCACHE_COMMIT_SECONDS", 2.0)))
        writer.ensure_arrays([o.name for o in outputs],
                             feature_dim={o.name: family.feature_dim(o.layer) for o in outputs if o.pool},
                             attention_size=family.attention_size(spec.max_tokens))
        # Planned again: another build may have committed rows since the first plan.
        todo, held = _plan(writer.snapshot(), unique, outputs)
        runner = _Runner(make_engine, family, request, writer, Progress(len(todo), quiet))
        try:
            for _, chunks in sources:
                for df in chunks():
                    for needed, entries in _todo_in_chunk(df, todo).items():
                        runner.add(needed, entries, family.encode_batch([s for _, s, _ in entries]))
            runner.finish()
            writer.flush()
        except BaseException as exc:  # Ctrl-C, disk full...: the command line says what was kept
            exc.rows_committed = writer.rows_written
            raise
        finally:
            runner.progress.close()
    return runner, held


def _todo_in_chunk(df, todo: dict) -> dict[tuple, list]:
    """The chunk's sequences still to compute, as ``(digest, sequence, row)`` grouped by the
    outputs each lacks; each leaves ``todo``, so a later duplicate is not computed again."""
    groups: dict[tuple, list] = defaultdict(list)
    for s in df["sequence"].tolist():
        d = sequence_digest(s)
        if d in todo:
            row, needed = todo.pop(d)
            groups[needed].append((d, s, row))
    return groups


@dataclass
class _Item:
    """A sequence being computed: where its row goes, and its windows' running sums."""

    digest: str
    sequence: str
    row: int | None
    n_tokens: int
    n_windows: int
    needed: tuple
    arrived: int = 0
    weight: float = 0.0
    sums: dict = field(default_factory=dict)


class _Runner:
    """Hands windows to one engine per set of needed outputs (its planner batches them across
    input chunks), and writes a row when all its windows have come back."""

    def __init__(self, make_engine, family, request: BuildRequest, writer, progress):
        self.make_engine, self.family, self.request = make_engine, family, request
        self.map_size = family.attention_size(request.max_tokens)
        self.writer, self.progress = writer, progress
        self.engines: dict[tuple, object] = {}
        self.items: dict[int, _Item] = {}
        self.computed: dict[Output, int] = defaultdict(int)
        self._next = 0

    def add(self, needed: tuple, entries: list, tokens: list) -> None:
        """Queue sequences (``(digest, sequence, row)`` with their token arrays) lacking ``needed``."""
        if needed not in self.engines:
            self.engines[needed] = self.make_engine(needed)
        tags, windows = [], []
        for (d, s, row), t in zip(entries, tokens):
            parts = _windows(t, self.request, self.family.prefix)
            n_tok = min(len(t), self.request.max_tokens) if self.request.long == "truncate" else len(t)
            self.items[self._next] = _Item(d, s, row, n_tok, len(parts), needed)
            tags += [self._next] * len(parts)
            self._next += 1
            windows += parts
        for batch in self.engines[needed].add(tags, windows):
            self._take(batch)

    def finish(self) -> None:
        """Run everything still queued."""
        for engine in self.engines.values():
            for batch in engine.finish():
                self._take(batch)

    def _take(self, batch) -> None:
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
