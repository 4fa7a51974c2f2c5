"""The build job: sequences in, missing embeddings and attention maps computed and stored.

The pipeline, per input chunk (memory is bounded by a chunk and the writer's buffer, not
by the input):

1. **Scan** (first pass, nothing written): read and normalize every record
   (:func:`embedcache.sequences.readers.iter_records`), count its tokens, apply the long-sequence
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

import time


from embedcache.build.inputs import open_sources, scan_sources
from embedcache.build.plan import plan_rows, settle
from embedcache.build.report import BuildReport
from embedcache.build.runner import compute, engines
from embedcache.request import split_settings
from embedcache.store import Store

__all__ = ["BuildReport", "build"]


def build(cache, inputs, *, model, reference=None, cache_dir=None, allow_random_weights: bool = False,
          checkpoint=None, **settings) -> BuildReport:
    """Compute what the store lacks for ``inputs`` and write it; see the module docs.

    Parameters
    ----------
    cache
        Store path or URL (created if missing), or an open :class:`~embedcache.store.Store`.
    inputs
        A sequence file path, several paths, or a list of DNA sequences.
    model
        A released model name, a checkpoint directory, or a model key already in the
        store (its checkpoint is reloaded from the recorded name or directory and must
        still have the recorded parameter digest; the group's policies are used).
    reference
        Genome FASTA for BED inputs.
    cache_dir
        Hugging Face cache for released models.
    allow_random_weights
        When a released model's weights are not available, build with its architecture and
        seeded random weights instead of failing (see
        :func:`embedcache.checkpoints.load_checkpoint`). The model group, the report and
        ``embedcache info`` say so: such embeddings carry no biology.
    checkpoint
        ``model`` already loaded (:func:`embedcache.checkpoints.load_checkpoint`), so that a
        caller building several times in one process (``score_variants``) loads it once.
    **settings
        What to compute, the fields of :class:`~embedcache.request.BuildRequest` (``layers``,
        ``pools``, ``attention``, ``max_tokens``, ``species``, ``alphabet``, ``long``,
        ``window_overlap``, ``dtype``, ``store_dtype``, ``shard``), and how to run, the fields of
        :class:`~embedcache.request.RunOptions` (``batch_size``, ``token_budget``, ``devices``,
        ``dask``, ``lock_timeout``, ``chunk_size``, ``quiet``); each documented there once.

    Returns
    -------
    BuildReport
    """
    t0 = time.perf_counter()
    # Every option value is checked here, before a checkpoint or an input is read.
    request, run = split_settings(settings)
    if run.dask is not None:
        from embedcache.engine.dask import check_spec

        check_spec(run.dask)
    elif run.devices is not None:
        from embedcache.engine import local_devices

        local_devices(run.devices)  # that many exist: said before a checkpoint is read
    store = cache if isinstance(cache, Store) else Store(cache)
    # The request is settled against the model once, here, and handed on as it is.
    checkpoint, family, request, spec = settle(store, model, request, cache_dir=cache_dir,
                                               allow_random_weights=allow_random_weights, checkpoint=checkpoint)
    sources = open_sources(inputs, alphabet=request.alphabet, reference=reference, chunk_size=run.chunk_size)
    scan = scan_sources(sources, family, request)
    mine = scan.unique if request.shard is None else {d for d in scan.unique if request.shard.owns(d)}
    report = BuildReport(cache=str(store.path), model_key=spec.key, model_name=checkpoint.name,
                         random_weights=bool(getattr(checkpoint, "random_weights", False)), records=scan.records,
                         unique=len(scan.unique), others=len(scan.unique) - len(mine),
                         shard=request.shard and str(request.shard),
                         truncated=scan.long if request.long == "truncate" else 0,
                         tiled=scan.long if request.long == "tile" else 0)
    del scan
    todo, held = plan_rows(store.group(spec.key) if spec.key in store.keys() else None, mine, request.outputs)
    computed = dict.fromkeys(request.outputs, 0)
    if todo:
        del todo  # planned again by the writer
        with engines(checkpoint, family, request, run, cache_dir=cache_dir) as make_engine:
            runner, held = compute(store, checkpoint, family, request, spec, sources, mine, make_engine, run)
        report.computed, report.tokens = runner.progress.done, runner.progress.tokens
        report.new_rows = runner.writer.rows_written
        report.write_seconds = runner.writer.commit_seconds_total
        computed = runner.computed
    report.arrays = {o.name: {"computed": computed[o], "reused": held[o]} for o in request.outputs}
    report.reused = report.unique - report.others - report.computed
    report.seconds = time.perf_counter() - t0
    return report
