"""Scoring a variant set over the cache: :func:`score_variants` (``EmbeddingCache.score_variants``).

The plan: read and check the alleles (:mod:`embedcache.sequences.readers.variants`) or make
every SNV of a region (``saturate``); cut each allele's windows (:mod:`.windows`); build the
unique windows through the ordinary build path (content-addressed: a reference window shared by
several alleles, runs or tasks is embedded once); read their pooled embeddings back for the
distance scores (:mod:`.scores`); run one masked forward per unique reference window of an
SNV for ``llr``, cached in the store as the window's ``mlm`` pool (:mod:`.masked`). ``strands="both"`` does the same on the reverse-complement
windows and averages each score over the two strands.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from embedcache.errors import InputError
from embedcache.sequences.alphabet import normalize
from embedcache.sequences.readers.bed import open_genome
from embedcache.sequences.readers.variants import VariantSet, read_variants
from embedcache.variants.labels import label_column
from embedcache.variants.masked import lm_layer, snv_llr
from embedcache.variants.scores import SCORE_KINDS, cosine_distance, l2_distance, mean_strands, score_column
from embedcache.variants.windows import default_flank, reverse_complement_windows, variant_windows

__all__ = ["STRANDS", "ScoreRun", "cut_windows", "parse_region", "saturation_variants", "score_variants", "write_scores"]

STRANDS = ("forward", "both")
RANDOM_WEIGHTS_NOTE = "random weights: these scores show the pipeline, not biology"
_REGION = re.compile(r"^(?P<chrom>[^:]+):(?P<start>[0-9,]+)-(?P<end>[0-9,]+)$")
_SNV_BASES = set("ACGT")


@dataclass
class ScoreRun:
    """What a scoring run did, beside its table (``ScoreRun.of(table)``)."""

    variants: int = 0
    skipped: dict = field(default_factory=dict)
    ref_mismatches: tuple = ()
    windows: int = 0
    computed: int = 0
    reused: int = 0
    masked_forwards: int = 0  # computed in this run; rows already cached cost none
    model_key: str = ""
    random_weights: bool = False
    flank: int = 0

    @classmethod
    def of(cls, table: pd.DataFrame) -> "ScoreRun":
        """The run of a table :func:`score_variants` returned (kept JSON-able in ``table.attrs["run"]``)."""
        return cls(**table.attrs["run"])

    def summary(self) -> str:
        skipped = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in self.skipped.items() if v) or "none"
        text = (f"{self.variants} alleles scored (skipped: {skipped}); {self.windows} unique windows "
                f"({self.computed} embedded, {self.reused} from the cache); {self.masked_forwards} masked "
                f"forwards run; model {self.model_key}, flank {self.flank}")
        return text + (f"; {RANDOM_WEIGHTS_NOTE}" if self.random_weights else "")


def parse_region(text: str) -> tuple[str, int, int]:
    """``CHROM:START-END`` (1-based, inclusive; commas allowed) -> (chrom, start, end)."""
    m = _REGION.match(text.strip())
    if not m:
        raise InputError(f"region {text!r} is not CHROM:START-END (1-based, inclusive), e.g. chr17:43044295-43045294.")
    start, end = int(m["start"].replace(",", "")), int(m["end"].replace(",", ""))
    if not 1 <= start <= end:
        raise InputError(f"region {text!r}: START must be >= 1 and <= END.")
    return m["chrom"], start, end


def saturation_variants(region: str, reference) -> VariantSet:
    """Every SNV of a region: 3 alleles per A/C/G/T base (``N`` positions are skipped and counted)."""
    chrom, start, end = parse_region(region)
    rows: dict[str, list] = {c: [] for c in ("id", "chrom", "pos", "ref", "alt", "label", "record")}
    skipped = 0
    with open_genome(Path(reference)) as genome:
        contigs = {name: len(genome[name]) for name in genome.keys()}
        if chrom not in contigs:
            raise InputError(f"--saturate {region}: contig {chrom!r} is not in the reference {reference} "
                             f"(it has {', '.join(list(contigs)[:5])}{', ...' if len(contigs) > 5 else ''}). "
                             "Check the 'chr1' vs '1' naming.")
        if end > contigs[chrom]:
            raise InputError(f"--saturate {region}: {chrom} has {contigs[chrom]} bp in {reference}.")
        bases = normalize(str(genome[chrom][start - 1:end]))
    for offset, ref in enumerate(bases):
        pos = start + offset
        if ref not in _SNV_BASES:
            skipped += 1
            continue
        for alt in "ACGT":
            if alt != ref:
                for column, value in zip(rows, (f"{chrom}:{pos}:{ref}>{alt}", chrom, pos, ref, alt, None,
                                                f"{chrom}:{pos}")):
                    rows[column].append(value)
    table = pd.DataFrame(rows)
    table["pos"] = table["pos"].astype("int64")
    return VariantSet(table=table, skipped={"symbolic": 0, "missing": 0, "ref_mismatch": 0, "n_positions": skipped},
                      contigs=contigs)


def _check(scores, strands) -> tuple[str, ...]:
    scores = tuple(dict.fromkeys(scores))
    unknown = [s for s in scores if s not in SCORE_KINDS]
    if unknown or not scores:
        raise InputError(f"unknown score {', '.join(unknown) or '(none)'}; choose from {', '.join(SCORE_KINDS)}.")
    if strands not in STRANDS:
        raise InputError(f"strands {strands!r}: choose one of {', '.join(STRANDS)}.")
    return scores


def _labels(table: pd.DataFrame, variants, label_field, positive) -> pd.Series | None:
    """The alleles' labels as 0/1 (``None``: no labels read), checked before any work."""
    if label_field is None and table["label"].isna().all():
        if positive is not None:
            raise InputError(f"--positive {positive}: {variants or 'a saturation run'} has no labels; name them "
                             "with --label-field KEY (a VCF INFO key or a table column).")
        return None
    return label_column(table["label"].tolist(), positive, source=str(variants))


def score_variants(cache, variants=None, *, reference, model, flank: int | None = None,
                   layers: Sequence | None = None, pools: Sequence[str] = ("mean",),
                   scores: Sequence[str] = ("llr", "cosine", "l2"), strands: str = "forward",
                   label_field: str | None = None, positive: str | None = None,
                   ref_mismatch: str = "error", saturate: str | None = None,
                   max_tokens: int | None = None, species: str | None = None,
                   **build_options) -> pd.DataFrame:
    """Score every allele of ``variants`` or of ``saturate`` (``EmbeddingCache.score_variants``).

    Parameters
    ----------
    cache : EmbeddingCache
    variants
        A VCF (plain, bgzip or BCF) or a CSV/TSV/Parquet table with ``chrom``, ``pos``
        (1-based), ``ref``, ``alt`` and optionally ``id`` and a label column; or ``None`` with
        ``saturate``.
    reference
        The FASTA genome the variants are called on (plain or bgzip).
    model, layers, max_tokens, species
        As for ``EmbeddingCache.build``; the windows are built through it (content-addressed).
    flank
        Bases on each side of the variant; default the largest whose ACGT window fits
        ``max_tokens``. Shortened symmetrically near contig ends, and where Ns need more tokens.
    pools
        Poolings compared by the distance scores (``mean``, ``center``, ``cls``).
    scores
        ``llr`` (masked-LM log-likelihood ratio, SNVs only), ``cosine``, ``l2``.
    strands
        ``forward``, or ``both`` (each score the mean over the forward and reverse-complement windows).
    label_field
        VCF INFO key or table column holding labels (default: a table's ``label`` column).
    positive
        The label value of the positive class, for labels other than 0/1. Either way the
        output's ``label`` is 0/1 (``<NA>`` where missing), the classes its evaluation uses.
    ref_mismatch
        ``error`` (default) or ``skip`` alleles whose REF differs from the reference.
    saturate
        ``CHROM:START-END`` (1-based, inclusive): every SNV of the region instead of a file.
    **build_options
        Build options (``batch_size``, ``quiet``, ``allow_random_weights``, ``cache_dir``...).

    Returns
    -------
    pandas.DataFrame
        ``id, chrom, pos, ref, alt, flank``, ``llr``, ``cosine_L{L}_{P}``, ``l2_L{L}_{P}`` and
        ``label`` (0/1) when labels were read; :meth:`ScoreRun.of` gives the run's counts.
    """
    from embedcache.build.plan import settle
    from embedcache.request import BuildRequest

    scores = _check(scores, strands)
    if (variants is None) == (saturate is None):
        raise InputError("give either a variant file or a region to saturate (--saturate CHROM:START-END), not both.")
    distance = [s for s in scores if s != "llr"]
    request = BuildRequest(layers=None if layers is None else tuple(layers),
                           pools=tuple(pools) if distance else None, max_tokens=max_tokens, species=species)
    # Input first: a bad record stops the run before a checkpoint is loaded or the store touched.
    vset = (saturation_variants(saturate, reference) if saturate is not None else
            read_variants(variants, reference, label_field=label_field, ref_mismatch=ref_mismatch))
    if not len(vset):
        raise InputError(f"no variants to score in {variants or saturate} (skipped: {dict(vset.skipped)}).")
    labels = _labels(vset.table, variants, label_field, positive)
    checkpoint, family, request, spec = settle(
        cache.store, model, request, cache_dir=build_options.get("cache_dir"),
        allow_random_weights=build_options.get("allow_random_weights", False))

    def count(seq: str) -> int:
        return int(family.count_tokens([seq])[0])

    h = default_flank(count, request.max_tokens) if flank is None else int(flank)
    if h < 0:
        raise InputError(f"--flank {flank}: give a number of bases >= 0.")
    table = vset.table
    windows = cut_windows(table, reference, vset.contigs, h, count, request.max_tokens)
    strand_windows = [windows] + ([[reverse_complement_windows(w) for w in windows]] if strands == "both" else [])

    run = ScoreRun(variants=len(table), skipped=dict(vset.skipped), ref_mismatches=vset.ref_mismatches, flank=h,
                   random_weights=bool(getattr(checkpoint, "random_weights", False)), model_key=spec.key)
    out = table[["id", "chrom", "pos", "ref", "alt"]].copy()
    out["flank"] = [w.flank for w in windows]
    columns: dict[str, list[np.ndarray]] = {}
    unique = list(dict.fromkeys(s for ws in strand_windows for w in ws for s in (w.ref, w.alt)))
    run.windows = len(unique)
    if distance:
        report = cache.build(unique, model=model, layers=list(request.layers), pools=list(request.pools),
                             max_tokens=request.max_tokens, species=species, checkpoint=checkpoint, **build_options)
        run.computed, run.reused = report.computed, report.reused
        run.model_key = report.model_key
        for ws in strand_windows:
            for layer in request.layers:
                for pool in request.pools:
                    ref = cache.embeddings([w.ref for w in ws], model=report.model_key, layer=layer, pool=pool)
                    alt = cache.embeddings([w.alt for w in ws], model=report.model_key, layer=layer, pool=pool)
                    for kind, fn in (("cosine", cosine_distance), ("l2", l2_distance)):
                        if kind in distance:
                            columns.setdefault(score_column(kind, layer, pool), []).append(fn(ref, alt))
    if "llr" in scores:
        # One masked forward per unique reference window of an SNV, cached as its ``mlm`` row.
        layer = lm_layer(family)
        snv = np.flatnonzero([len(r) == 1 and len(a) == 1 and r in _SNV_BASES and a in _SNV_BASES
                              for r, a in zip(table["ref"], table["alt"])])
        refs = list(dict.fromkeys(w.ref for ws in strand_windows for w in (ws[i] for i in snv)))
        if refs:
            report = cache.build(refs, model=model, layers=[layer], pools=["mlm"], max_tokens=request.max_tokens,
                                 species=species, checkpoint=checkpoint, **build_options)
            run.masked_forwards, run.model_key = report.computed, report.model_key
        for ws in strand_windows:
            values = np.full(len(table), np.nan)
            if len(snv):
                ref_w, alt_w = [ws[i].ref for i in snv], [ws[i].alt for i in snv]
                logits = cache.embeddings(ref_w, model=run.model_key, layer=layer, pool="mlm")
                values[snv] = snv_llr(family, logits, ref_w, alt_w)
            columns.setdefault("llr", []).append(values)
    ordered = (["llr"] if "llr" in columns else []) + [c for c in columns if c != "llr"]
    for name in ordered:
        parts = columns[name]
        out[name] = parts[0] if len(parts) == 1 else mean_strands(*parts)
    if labels is not None:
        out["label"] = labels.array  # nullable Int64: <NA> where the file had no label
    out.attrs["run"] = {**asdict(run), "ref_mismatches": list(run.ref_mismatches)}  # JSON-able: Parquet keeps attrs
    return out


def cut_windows(table: pd.DataFrame, reference, contigs, h: int, count, max_tokens: int) -> list:
    """Each allele's :class:`~.windows.VariantWindows` at flank ``h``, shrunk where Ns need
    more than ``max_tokens`` tokens (``count`` counts a sequence's tokens)."""
    windows = []
    with open_genome(Path(reference)) as genome:
        for chrom, pos, ref, alt, record in zip(table["chrom"], table["pos"], table["ref"], table["alt"],
                                                table["record"]):
            contig = genome[chrom]

            def fetch(a: int, b: int, contig=contig) -> str:
                return normalize(str(contig[a:b])) if b > a else ""

            try:
                windows.append(variant_windows(fetch, int(pos) - 1, contigs[chrom], ref, alt, h,
                                               count_tokens=count, max_tokens=max_tokens))
            except ValueError as exc:
                raise InputError(f"{record}: {exc}; raise --max-tokens.") from None
    return windows


def write_scores(table: pd.DataFrame, path) -> Path:
    """Write a score table as Parquet, CSV or TSV (optionally .gz) by the file's suffix."""
    path = Path(path)
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".parquet", ".pq")):
        writer = table.to_parquet
    elif name.endswith(".csv"):
        writer = table.to_csv
    elif name.endswith((".tsv", ".txt")):
        def writer(p, **kw):
            table.to_csv(p, sep="\t", **kw)
    else:
        raise InputError(f"--out {path}: give a .parquet, .csv or .tsv file (optionally .gz for text).")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    writer(tmp, index=False)
    tmp.replace(path)  # nothing half-written under the final name
    return path
