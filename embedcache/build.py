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
import hashlib
import os
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from embedcache.alphabet import DEFAULT_ALPHABET, normalize
from embedcache.errors import CheckpointError, InputError, SequenceTooLongError
from embedcache.progress import Progress
from embedcache.quality import IdConflicts
from embedcache.request import BuildRequest, Output, check_devices
from embedcache.store import ModelSpec, Store

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


@dataclass
class _Source:
    """One input: a file read through the readers, or sequences given in Python."""

    name: str
    chunks: Callable[[], Iterator[pd.DataFrame]]


def _sources(inputs, *, alphabet: str, reference, chunk_size: int) -> list[_Source]:
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
        return [_Source("<sequences>", lambda: iter([frame]))]
    sources = []
    for path in inputs:
        # Arguments (format, reference, existence) are checked now, before any work.
        iter_records(path, reference=reference, alphabet=alphabet, chunk_size=chunk_size)
        sources.append(_Source(str(path), lambda p=path: iter_records(
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
    normalized = []
    for i, s in enumerate(seqs):
        record = f"sequence #{i + 1}"
        if not s:
            raise InputError(f"{record} is empty; remove it (an empty sequence has nothing to embed)")
        normalized.append(normalize(s, alphabet=alphabet, record=record))
    return pd.DataFrame({"id": [f"#{i + 1}" for i in range(len(seqs))], "sequence": normalized,
                         "record": np.arange(1, len(seqs) + 1)})


def _digests(seqs: Iterable[str]) -> list[str]:
    return [hashlib.sha256(s.encode("ascii")).hexdigest() for s in seqs]


# --------------------------------------------------------------------------------------
# Scan
# --------------------------------------------------------------------------------------


@dataclass
class _Scan:
    records: int = 0
    unique: set = field(default_factory=set)
    truncated: int = 0
    tiled: int = 0


def _scan(sources, family, spec: BuildRequest) -> _Scan:
    scan = _Scan()
    limit, model_max, note = spec.max_tokens, family.max_tokens, family.token_note
    for source in sources:
        ids = IdConflicts(source.name)
        for df in source.chunks():
            seqs = df["sequence"].tolist()
            ids.update(df["id"].to_numpy(), seqs)
            counts = family.count_tokens(seqs)
            over = np.flatnonzero(counts > limit)
            if over.size and spec.long == "error":
                i = int(over[0])
                raise SequenceTooLongError(
                    f"{source.name}: record {df['id'].iloc[i]} (record #{df['record'].iloc[i]}) has "
                    f"{counts[i]} tokens{note}, over the limit of {limit} (--max-tokens). "
                    f"Pass --long truncate to embed its first {limit} tokens, --long tile to embed it "
                    f"in overlapping windows, or a larger --max-tokens (this model takes up to {model_max})."
                )
            if over.size and spec.long == "tile" and spec.attention:
                i = int(over[0])
                raise InputError(
                    f"{source.name}: record {df['id'].iloc[i]} (record #{df['record'].iloc[i]}) has "
                    f"{counts[i]} tokens, over {limit}, and --long tile cuts it into windows, which have "
                    "no attention map for the whole sequence. Drop --attention for this input, use "
                    "--long truncate, or a larger --max-tokens."
                )
            is_over = counts > limit
            for d, long_one in zip(_digests(seqs), is_over.tolist()):
                if d not in scan.unique:
                    scan.unique.add(d)
                    if long_one:
                        if spec.long == "truncate":
                            scan.truncated += 1
                        else:
                            scan.tiled += 1
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
    outputs = request.outputs
    sources = _sources(inputs, alphabet=request.alphabet, reference=reference, chunk_size=chunk_size)
    scan = _scan(sources, family, request)
    unique = len(scan.unique)
    if request.shard is not None:
        scan.unique = {d for d in scan.unique if request.shard.owns(d)}
    random_weights = bool(getattr(checkpoint, "random_weights", False))
    report = BuildReport(cache=str(store.path), model_key=spec.key, model_name=checkpoint.name,
                         random_weights=random_weights, records=scan.records, unique=unique,
                         others=unique - len(scan.unique), shard=request.shard and str(request.shard),
                         truncated=scan.truncated, tiled=scan.tiled)
    names = [o.name for o in outputs]
    missing, held = _plan(store, spec.key, scan.unique, names)
    report.arrays = {n: {"computed": 0, "reused": held[n]} for n in names}
    if missing:
        engine_kw = dict(batch_size=batch_size, token_budget=token_budget, family=family)
        if dask is None:
            engine_kw["devices"] = devices
        with _executor(dask, cache_dir) as executor:
            runner = _compute(store, checkpoint, family, request, spec, sources, scan, lock_timeout=lock_timeout,
                              quiet=quiet, engine_kw={**engine_kw, **executor})
        report.computed, report.new_rows, report.tokens = runner.done, runner.writer.rows_written, runner.tokens
        report.write_seconds = runner.writer.commit_seconds_total
        report.arrays = {o.name: {"computed": runner.computed[o], "reused": runner.held[o.name]} for o in outputs}
    report.reused = report.unique - report.others - report.computed
    report.seconds = time.perf_counter() - t0
    return report


def _compute(store: Store, checkpoint, family, request: BuildRequest, spec: ModelSpec, sources, scan, *,
             lock_timeout: float, quiet: bool, engine_kw: dict) -> "_Runner":
    """The second pass, under the writer's lock: every store write of a build is here."""
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
    names = [o.name for o in outputs]
    with store.writing(timeout=lock_timeout) as writing:
        writer = writing.group(spec, attrs, commit_seconds=float(os.environ.get("EMBEDCACHE_COMMIT_SECONDS", 2.0)))
        writer.ensure_arrays(names, feature_dim={o.name: family.feature_dim(o.layer) for o in outputs if o.pool},
                             attention_size=family.attention_size(spec.max_tokens))
        snapshot = writer.snapshot()
        # Re-planned under the lock: another build may have committed rows since the scan.
        index = snapshot.index(scan.unique)
        filled = {o: snapshot.filled(o.name) for o in outputs}
        missing, held = _plan(snapshot, spec.key, scan.unique, names)
        del scan
        runner = _Runner(checkpoint, request, engine_kw, writer, Progress(len(missing), quiet), held)
        try:
            for source in sources:
                for df in source.chunks():
                    for needed, entries in _missing_in_chunk(df, missing, index, filled, outputs).items():
                        runner.add(needed, entries, family.encode_batch([s for _, s, _ in entries]))
            runner.finish()
            writer.flush()
        except BaseException as exc:  # Ctrl-C, disk full...: the command line says what was kept
            exc.rows_committed = writer.rows_written
            raise
        finally:
            runner.progress.close()
    return runner


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


def _plan(source, key: str, unique: set, names: Sequence[str]) -> tuple[set, dict]:
    """Which unique digests lack some requested array, and per array how many hold it.

    ``source`` is a :class:`Store` (read before taking the lock) or a model group snapshot.
    """
    if isinstance(source, Store):
        if key not in source.keys():
            return set(unique), {n: 0 for n in names}
        source = source.group(key)
    index = source.index(unique)
    filled = {n: source.filled(n) for n in names}
    missing, held = set(), dict.fromkeys(names, 0)
    for d in unique:
        row = index.get(d)
        if row is None:
            missing.add(d)
            continue
        complete = True
        for n in names:
            if filled[n][row]:
                held[n] += 1
            else:
                complete = False
        if not complete:
            missing.add(d)
    return missing, held


def _missing_in_chunk(df, missing: set, index: dict, filled: dict, outputs) -> dict[tuple, list]:
    """The chunk's sequences still missing, grouped by the outputs each lacks."""
    groups: dict[tuple, list] = defaultdict(list)
    seqs = df["sequence"].tolist()
    for d, s in zip(_digests(seqs), seqs):
        if d not in missing:
            continue
        missing.discard(d)  # duplicates later in the input are now handled
        row = index.get(d)
        needed = tuple(outputs) if row is None else tuple(o for o in outputs if not filled[o][row])
        groups[needed].append((d, s, row))
    return groups


@contextlib.contextmanager
def _executor(dask, cache_dir):
    """Extra engine arguments: a Dask client (and the checkpoint's cache for its workers), or none."""
    if dask is None:
        yield {}
        return
    from embedcache.distributed import connect

    with connect(dask) as client:
        yield {"client": client, "cache_dir": cache_dir}


def _engine(checkpoint, needed: tuple, request: BuildRequest, engine_kw: dict):
    """An Embedder computing exactly the outputs in ``needed``: here, or on Dask workers."""
    if "client" in engine_kw:
        from embedcache.distributed import DaskEmbedder

        kw = dict(engine_kw)
        return DaskEmbedder(kw.pop("client"), checkpoint, request, outputs=needed, **kw)
    from embedcache.engine import Embedder

    return Embedder(checkpoint, request, outputs=needed, **engine_kw)


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

    def __init__(self, checkpoint, request: BuildRequest, engine_kw: dict, writer, progress, held: dict):
        self.checkpoint, self.request, self.engine_kw = checkpoint, request, engine_kw
        self.family = engine_kw["family"]
        self.map_size = self.family.attention_size(request.max_tokens)
        self.writer, self.progress, self.held = writer, progress, held
        self.engines: dict[tuple, object] = {}
        self.items: dict[int, _Item] = {}
        self.computed: dict[Output, int] = defaultdict(int)
        self.done = self.tokens = self._next = 0

    def add(self, needed: tuple, entries: list, tokens: list) -> None:
        """Queue sequences (``(digest, sequence, row)`` with their token arrays) lacking ``needed``."""
        if needed not in self.engines:
            self.engines[needed] = _engine(self.checkpoint, needed, self.request, self.engine_kw)
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
        T = self.map_size
        finished = 0
        for r, tag in enumerate(batch.index.tolist()):
            item = self.items[tag]
            values = {}
            for o in item.needed:
                if o.pool:
                    values[o.name] = batch.pooled[(o.layer, o.pool)][r]
                else:
                    full = np.zeros((T, T), dtype=np.float32)
                    m = batch.attention[(o.layer, o.head)][r]
                    full[: m.shape[0], : m.shape[1]] = m
                    values[o.name] = full
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
        self.done += finished
        self.tokens += int(np.sum(batch.n_tokens))
        self.progress.advance(finished, int(np.sum(batch.n_tokens)))
