"""`embedcache` command line: parse, call the library, print. No logic of its own."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cli.options import STORAGE_HELP, open_cache

app = typer.Typer(
    name="embedcache",
    help="Compute Nucleotide Transformer embeddings once and cache them in a Zarr store.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _root() -> None:
    """Compute Nucleotide Transformer embeddings once and cache them in a Zarr store."""


@app.command()
def convert(
    model: str = typer.Argument(..., help="Released model name (e.g. 50M_multi_species_v2) or checkpoint directory."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Destination directory (default: in place for a directory, "
        "$EMBEDCACHE_HOME/checkpoints/NAME for a released name)."
    ),
) -> None:
    """Write a non-executable copy (safetensors) of a checkpoint; later loads use it instead of the pickle."""
    from embedcache.checkpoints import CONVERTED_FILE, convert_checkpoint, load_checkpoint

    written = convert_checkpoint(model, out)
    typer.echo(f"wrote {written / CONVERTED_FILE}")
    typer.echo(f"digest {load_checkpoint(written).digest}")


@app.command()
def models() -> None:
    """List the released models of every family (and whether their files are here, offline)."""
    from embedcache.checkpoints import released_models

    rows = released_models()
    typer.echo(f"{'name':<30} {'family':<6} {'params':>6} {'layers':>6} {'width':>5} {'context (bp)':>12}  "
               f"{'local':<5}  tokenizer")
    for r in rows:
        layers, width = (str(r[k]) if r[k] else "?" for k in ("layers", "width"))
        typer.echo(f"{r['name']:<30} {r['family']:<6} {r['parameters']:>6} {layers:>6} {width:>5} "
                   f"{r['context']:>12,}  {'yes' if r['local'] else 'no':<5}  {r['tokenizer']}")
    typer.echo("Pass a name to --model; files come from the Hugging Face repository InstaDeepAI/... "
               "(`hf download REPO`), or pass a checkpoint directory.")


def _layer_option(single: bool = False):
    """A Typer callback parsing ``--layers`` (``12``, ``1,6,final``, ``1-6``, ``all``) or one
    ``--layer`` with the library's one parser (:mod:`embedcache.util.ranges`), refused while
    options are parsed (exit 2)."""

    def parse(text: str | None):
        from embedcache.errors import InputError
        from embedcache.util.ranges import parse_layer, parse_layers

        if text is None or not text.strip():
            return None
        try:
            return parse_layer(text) if single else parse_layers(text)
        except InputError as exc:
            raise typer.BadParameter(str(exc)) from None

    return parse


def _choices(option: str, many: bool = False):
    """A Typer callback refusing values the request does not allow while options are parsed
    (exit 2), before any checkpoint is loaded."""

    def check(value: str | None) -> str | None:
        from embedcache.request import CHOICES

        if value is None:
            return None
        allowed = CHOICES[option]
        for v in [x.strip() for x in value.split(",") if x.strip()] if many else [value]:
            if v not in allowed:
                raise typer.BadParameter(f"{v!r} is not one of: {', '.join(allowed)}", param_hint=option)
        return value

    return check


def _maps(text: str) -> list[tuple[int, int]]:
    out = []
    for item in (x.strip() for x in text.split(",") if x.strip()):
        layer, sep, head = item.partition(":")
        if not sep or not layer.isdigit() or not head.isdigit():
            raise typer.BadParameter(f"--attention takes LAYER:HEAD pairs such as 1:4,7:16 (1-based), not {item!r}")
        out.append((int(layer), int(head)))
    return out


def _shard(text: Optional[str]):
    """``--shard I/N`` as a typed value, refused while options are parsed (exit 2)."""
    if text is None:
        return None
    from embedcache.errors import InputError
    from embedcache.request import Shard

    try:
        return Shard.parse(text)
    except InputError as exc:
        raise typer.BadParameter(str(exc), param_hint="--shard") from None


def _devices(text: Optional[str]):
    """``--devices N`` as a count, refused while options are parsed (exit 2)."""
    from embedcache.errors import InputError
    from embedcache.request import check_devices

    try:
        return check_devices(text)
    except InputError as exc:
        raise typer.BadParameter(str(exc), param_hint="--devices") from None


@app.command()
def build(
    inputs: list[Path] = typer.Argument(..., help="FASTA (.fa, .fa.gz), CSV/TSV/Parquet with a `sequence` column, or BED (with --reference)."),
    model: str = typer.Option(..., "--model", help="Released model name, checkpoint directory, or a model key of the cache."),
    cache: str = typer.Option(..., "--cache", help="The Zarr store to write (created if missing): a path or a URL such as s3://bucket/cache.zarr."),
    layers: Optional[str] = typer.Option(None, "--layers", callback=_layer_option(), help="1-based layers to pool: 12, a list 1,6,12, a range 1-6, all (default: the last); NTv3 also has 'final' (full resolution), e.g. 1-6,final."),
    pool: Optional[str] = typer.Option(None, "--pool", callback=_choices("--pool", many=True), help="Poolings: cls (position 0) and/or mean (real tokens, CLS excluded); default both (NTv3: mean, it has no CLS)."),
    attention: str = typer.Option("", "--attention", help="Attention maps as LAYER:HEAD, 1-based, e.g. 1:4,7:16."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Tokens per sequence, CLS included, embedded in one pass (default 512; NTv3: bases, default 131072 or its context)."),
    species: Optional[str] = typer.Option(None, "--species", help="Species of a post-trained NTv3 model (part of the model key), e.g. human."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Cap on sequences per batch."),
    dtype: str = typer.Option("float32", "--dtype", callback=_choices("--dtype"), help="Compute dtype: float32 or bfloat16."),
    store_dtype: str = typer.Option("float32", "--store-dtype", callback=_choices("--store-dtype"), help="Stored dtype: float32 or float16 (half the disk)."),
    alphabet: str = typer.Option("iupac-to-n", "--alphabet", callback=_choices("--alphabet"), help="iupac-to-n (ambiguity codes become N) or strict."),
    long: str = typer.Option("error", "--long", callback=_choices("--long"), help="Sequences over --max-tokens: error, truncate or tile."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="Genome FASTA for BED inputs."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    allow_random_weights: bool = typer.Option(
        False, "--allow-random-weights",
        help="If a released model's weights are not available, use its architecture with seeded random "
        "weights (recorded as such; the embeddings carry no biology)."),
    storage_option: list[str] = typer.Option([], "--storage-option", help=STORAGE_HELP),
    shard: Optional[str] = typer.Option(None, "--shard", callback=_shard, metavar="I/N",
                       help="Compute only share I of N (0 <= I < N) of the unique sequences, chosen by "
                       "digest: N jobs (e.g. a SLURM array) over the same inputs cover each sequence once."),
    dask: Optional[str] = typer.Option(None, "--dask", metavar="ADDRESS|local[:N]",
                                       help="Embed on a Dask cluster (scheduler address), or on N local "
                                       "worker processes; this process writes the store."),
    devices: Optional[str] = typer.Option(None, "--devices", callback=_devices, metavar="N",
                                          help="Split each batch over the first N local accelerators "
                                          "(default: all of them)."),
) -> None:
    """Embed the sequences the cache lacks; reuse everything it holds (several builds may share a cache)."""
    report = open_cache(cache, storage_option).build(
        list(inputs), model=model, layers=layers,
        pools=None if pool is None else [p.strip() for p in pool.split(",") if p.strip()], attention=_maps(attention),
        max_tokens=max_tokens, species=species, batch_size=batch_size, dtype=dtype, store_dtype=store_dtype,
        alphabet=alphabet, long=long, reference=reference, quiet=quiet, allow_random_weights=allow_random_weights,
        shard=shard, dask=dask, devices=devices,
    )
    typer.echo(report.summary())


@app.command()
def info(path: str = typer.Argument(..., help="The cache (Zarr store): a path or URL."),
         input: Optional[Path] = typer.Option(None, "--input", help="Say how many of this file's sequences are done, per array."),
         reference: Optional[Path] = typer.Option(None, "--reference", help="Genome FASTA for a BED --input."),
         shards: Optional[int] = typer.Option(None, "--shards", min=1, metavar="N",
                                              help="With --input: list the shard indices I of `build --shard I/N` "
                                              "that still have work (a sequence lacking a row or an array)."),
         storage_option: list[str] = typer.Option([], "--storage-option", help=STORAGE_HELP)) -> None:
    """List the models of a cache: rows, arrays and how full each is, policies, size on disk."""
    if shards is not None and input is None:
        raise typer.BadParameter("--shards needs --input FILE (the input the shards share)", param_hint="--shards")
    if input is not None:
        progress = open_cache(path, storage_option).progress(input, reference=reference, shards=shards)
        if not progress:
            typer.echo(f"{path}: no models yet; nothing of {input} is done"
                       + (f"; shards with work left: {', '.join(map(str, range(shards)))}" if shards else ""))
        for m in progress:
            typer.echo(f"model {m['name']}  key {m['key']}: {input} has {m['unique']} unique sequences, "
                       f"{m['rows']} in the cache")
            for name, done in m["arrays"].items():
                typer.echo(f"  {name:<20} {done:>10} / {m['unique']} done")
            if shards is not None:
                left = m["shards_left"]
                typer.echo(f"  shards with work left ({len(left)} of {shards}): {','.join(map(str, left)) or 'none'}")
        return
    models = open_cache(path, storage_option).info()
    if not models:
        typer.echo(f"{path}: no models yet")
    for m in models:
        typer.echo(f"model {m.name}  key {m.key}  digest {m.digest[:16]}..."
                   + ("  RANDOM WEIGHTS (no biology)" if m.random_weights else ""))
        typer.echo(f"  rows {m.rows}  feature_dim {m.feature_dim}  max_tokens {m.max_tokens}  "
                   f"long {m.long}  alphabet {m.alphabet}  dtype {m.dtype}  store {m.store_dtype}  "
                   f"disk {m.disk_bytes / 2**20:.1f} MiB")
        for name, filled in m.filled.items():
            typer.echo(f"  {name:<20} {filled:>10} / {m.rows} rows")


@app.command()
def export(
    cache: str = typer.Option(..., "--cache", help="The cache (Zarr store): a path or URL."),
    input: Path = typer.Option(..., "--input", help="The sequence file whose records to export, in its order "
                               "(FASTA, CSV/TSV/Parquet, or BED with --reference)."),
    out: Path = typer.Option(..., "--out", help="Output: .npz (+ .npz.json provenance), .parquet or .h5."),
    layer: Optional[str] = typer.Option(None, "--layer", callback=_layer_option(single=True), help="1-based layer, or final for NTv3 (default: the last)."),
    pool: Optional[str] = typer.Option(None, "--pool", callback=_choices("--pool"), help="cls or mean (default mean)."),
    model: Optional[str] = typer.Option(None, "--model", help="Released model name, checkpoint directory or model key (needed when the cache holds several)."),
    species: Optional[str] = typer.Option(None, "--species", help="Species of a post-trained NTv3 model's group."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="Genome FASTA for a BED input."),
    storage_option: list[str] = typer.Option([], "--storage-option", help=STORAGE_HELP),
) -> None:
    """Write cached features of an input file's records, with their ids, in file order, and their provenance."""
    store = open_cache(cache, storage_option)
    written = store.export(input, out, model=model, layer=layer, pool=pool, reference=reference, species=species)
    chosen = store.provenance(model=model, layer=layer, pool=pool, species=species)
    typer.echo(f"wrote {written}: layer {chosen['layer']}, pool {chosen['pool']}, model {chosen['model_name']} "
               f"(key {chosen['model_key']})" + (", RANDOM WEIGHTS (no biology)" if chosen["random_weights"] else ""))


@app.command()
def verify(path: str = typer.Argument(..., help="The cache (Zarr store): a path or URL."),
           repair: bool = typer.Option(False, "--repair", help="Mark the rows of damaged chunks not filled (and "
                                       "rewrite those chunks without them), so the next build recomputes them."),
           storage_option: list[str] = typer.Option([], "--storage-option", help=STORAGE_HELP)) -> None:
    """Check every chunk, digest, index entry and value of a cache; exit 1 if anything is wrong.

    With --repair, damage to stored values is repaired: rerun the same `embedcache build`
    afterwards to recompute exactly the rows that were lost."""
    cache = open_cache(path, storage_option)
    if repair:
        report = cache.repair()
        for array, n in report.unfilled.items():
            typer.echo(f"repaired: {n} row(s) of {array} marked for recomputation")
        for key, n in report.dropped.items():
            typer.echo(f"repaired: {n} row(s) of {key} whose sequence or digest was lost dropped (recomputed as new rows)")
        for key in report.index_rebuilt:
            typer.echo(f"repaired: the digest index of {key} rebuilt from the digests")
        for p in report.unrepaired:
            typer.echo(f"problem (not repairable in place): {p}", err=True)
        if report.unrepaired:
            typer.echo(f"{path}: {len(report.unrepaired)} problem(s) cannot be repaired in place; build the "
                       "inputs into a new cache", err=True)
            raise typer.Exit(1)
        if "zarr.json" in report.rewritten:
            typer.echo(f"repaired: the root document zarr.json of {path} rewritten")
        if report.unfilled or report.dropped or report.index_rebuilt or report.rewritten:
            typer.echo(f"{path}: repaired. Rerun the same `embedcache build` to recompute those rows.")
        else:
            typer.echo(f"{path}: nothing to repair")
        return
    problems = cache.verify()
    for p in problems:
        typer.echo(f"problem: {p}", err=True)
    if problems:
        typer.echo(f"{path}: {len(problems)} problem(s) found. Repair them with `embedcache verify {path} --repair` "
                   "(lost values and rows are marked for recomputation, the index rebuilt), then rerun the same "
                   "`embedcache build`.", err=True)
        raise typer.Exit(1)
    rows = sum(m.rows for m in cache.models())
    typer.echo(f"{path}: ok ({rows} rows checked)")
    left = cache.leftovers()
    if left.objects:
        typer.echo(f"{path}: {len(left.objects)} leftover object(s) ({left.nbytes / 2**20:.1f} MiB) that no commit "
                   f"refers to (writers that lost a commit or died); not data. `embedcache gc {path}` removes them.")


@app.command()
def gc(path: str = typer.Argument(..., help="The cache (Zarr store): a path or URL."),
       older_than: float = typer.Option(3600.0, "--older-than", min=0.0,
                                        help="Only leftovers older than this many seconds (a younger one may "
                                             "belong to a commit being written now)."),
       storage_option: list[str] = typer.Option([], "--storage-option", help=STORAGE_HELP)) -> None:
    """Delete leftover objects no commit refers to (from writers that lost a commit or died).

    Never data: a commit only refers to objects written before it was swapped in. Keep
    --older-than above the longest a commit may take while builds are running."""
    done = open_cache(path, storage_option).gc(older_than=older_than)
    typer.echo(f"{path}: removed {len(done.objects)} leftover object(s) ({done.nbytes / 2**20:.1f} MiB)")


@app.command()
def upgrade(path: str = typer.Argument(..., help="The cache (Zarr store): a path or URL."),
            storage_option: list[str] = typer.Option([], "--storage-option", help=STORAGE_HELP)) -> None:
    """Upgrade a cache written by an older embedcache to this version's format, in place.

    Safe to interrupt and rerun; a cache already in this format is left untouched."""
    from embedcache.store import ENCODING_VERSION

    done = open_cache(path, storage_option).upgrade()
    if done:
        typer.echo(f"{path}: upgraded {len(done)} model group(s) ({', '.join(done)}) to format version "
                   f"{ENCODING_VERSION}")
    else:
        typer.echo(f"{path}: already format version {ENCODING_VERSION}; nothing to do")


@app.command("attention-plot")
def attention_plot(
    cache: str = typer.Option(..., "--cache", help="The cache (Zarr store) holding the map (build --attention L:H)."),
    layer: int = typer.Option(..., "--layer", help="1-based layer."),
    head: int = typer.Option(..., "--head", help="1-based head (the official key attention_map_layer_L_number_N is head min(N+2, heads))."),
    out: Path = typer.Option(..., "--out", help="PNG file to write."),
    sequence_id: Optional[str] = typer.Option(None, "--sequence-id", help="Id of the record in --input."),
    input: Optional[Path] = typer.Option(None, "--input", help="Sequence file holding --sequence-id (FASTA, "
                                         "CSV/TSV/Parquet, or BED with --reference)."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="Genome FASTA for a BED --input."),
    sequence: Optional[str] = typer.Option(None, "--sequence", help="The DNA sequence itself (instead of --sequence-id)."),
    model: Optional[str] = typer.Option(None, "--model", help="Released model name, checkpoint directory or model key (needed when the cache holds several)."),
) -> None:
    """Draw one cached attention map (query x key) of a sequence, k-mer tokens on the axes."""
    from embedcache import EmbeddingCache
    from embedcache.errors import InputError, MissingRowsError

    if (sequence is None) == (sequence_id is None) or (sequence_id is not None and input is None):
        raise InputError("attention-plot needs either --sequence SEQ, or --sequence-id ID with --input FILE.")
    from embedcache.attention_plot import attention_figure, save_png
    from embedcache.sequences.readers import sequence_of

    seq = sequence if sequence is not None else sequence_of(input, sequence_id, reference=reference)
    try:
        figure = attention_figure(EmbeddingCache(cache), seq, layer=layer, head=head, model=model)
    except MissingRowsError as exc:
        if input is None:
            raise
        raise exc.for_source(input, reference=reference, ids=[sequence_id]) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    save_png(figure, out)
    typer.echo(f"wrote {out}")


@app.command()
def variants(
    variants: Optional[Path] = typer.Argument(None, help="VCF (.vcf, .vcf.gz, .bcf) or CSV/TSV/Parquet table with chrom, pos (1-based), ref, alt [, id, label]; omit with --saturate."),
    reference: Path = typer.Option(..., "--reference", help="The genome FASTA the variants are called on (plain or bgzip)."),
    model: str = typer.Option(..., "--model", help="Released model name, checkpoint directory, or a model key of the cache."),
    cache: str = typer.Option(..., "--cache", help="The Zarr store holding the windows' embeddings (created if missing)."),
    out: Path = typer.Option(..., "--out", help="Scores: .parquet, .csv or .tsv."),
    flank: Optional[int] = typer.Option(None, "--flank", help="Bases each side of the variant (default: the largest whose ACGT window fits --max-tokens)."),
    layers: Optional[str] = typer.Option(None, "--layers", callback=_layer_option(), help="Layers of the distance scores (default: the last), e.g. 6,12, 1-6, final or all."),
    pool: str = typer.Option("mean", "--pool", callback=_choices("--pool", many=True), help="Poolings compared: mean, center (the variant's token), cls."),
    scores: str = typer.Option("llr,cosine,l2", "--scores", help="Scores: llr (masked LM, SNVs), cosine, l2."),
    strands: str = typer.Option("forward", "--strands", help="forward, or both (mean over the reverse complement too)."),
    label_field: Optional[str] = typer.Option(None, "--label-field", help="INFO key (VCF) or column (table) holding labels."),
    positive: Optional[str] = typer.Option(None, "--positive", help="The positive label value, for labels other than 0/1 (the output's label is then 0/1)."),
    ref_mismatch: str = typer.Option("error", "--ref-mismatch", help="error, or skip (count and list) alleles whose REF differs from the reference."),
    saturate: Optional[str] = typer.Option(None, "--saturate", metavar="CHROM:START-END", help="Score every SNV of a region (1-based, inclusive) instead of a file."),
    report: Optional[Path] = typer.Option(None, "--report", help="With labels: a directory for metrics.json, ROC/PR plots and report.html."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Tokens per window (default 512; NTv3: bases)."),
    species: Optional[str] = typer.Option(None, "--species", help="Species of a post-trained NTv3 model."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Cap on sequences per batch."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    allow_random_weights: bool = typer.Option(False, "--allow-random-weights", help="Use seeded random weights if a released model's are not available (scores then show the pipeline, not biology)."),
) -> None:
    """Score variants zero-shot: masked-LM llr and embedding distances of ref vs alt windows."""
    import shlex
    import sys

    from embedcache.variants import ScoreRun, write_scores

    store = open_cache(cache, [])
    table = store.score_variants(
        variants, reference=reference, model=model, flank=flank,
        layers=layers,
        pools=[p.strip() for p in pool.split(",") if p.strip()], scores=[s.strip() for s in scores.split(",") if s.strip()],
        strands=strands, label_field=label_field, positive=positive, ref_mismatch=ref_mismatch, saturate=saturate,
        max_tokens=max_tokens, species=species, quiet=quiet, allow_random_weights=allow_random_weights,
        **({} if batch_size is None else {"batch_size": batch_size}))
    run = ScoreRun.of(table)
    write_scores(table, out)
    typer.echo(f"wrote {out}: {run.summary()}")
    if run.ref_mismatches:
        typer.echo(f"REF mismatches skipped: {'; '.join(run.ref_mismatches[:5])}" + (" ..." if len(run.ref_mismatches) > 5 else ""))
    if report is not None and "label" in table:
        # The evaluation and report are the classifiers library's, reached through cli.variant_report.
        from cli.variant_report import report_variant_scores

        command = shlex.join(["embedcache", *sys.argv[1:]])
        for line in report_variant_scores(table, report, cache=store, positive=positive, command=command, provenance={
                "variants": str(variants or f"saturate {saturate}"), "reference": str(reference), "model": model,
                "model_key": run.model_key, "flank": run.flank, "strands": strands,
                "random_weights": run.random_weights}):
            typer.echo(line)
    elif report is not None:
        typer.echo("no labels (--label-field): no report written")


def main() -> None:
    from cli.errors import run_app

    run_app(app)


if __name__ == "__main__":
    main()
