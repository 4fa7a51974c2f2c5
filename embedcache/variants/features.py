"""Probe features of variants: ``alt - ref`` or ``[ref, alt]`` pooled embeddings read from the cache.

The windows are those ``embedcache variants`` embedded: a variant table with a ``flank``
column (as ``embedcache variants`` writes it: each allele's final half-width, after any
shortening near a contig end or for Ns) is cut with exactly that ``h``; a VCF or a table
without one needs ``flank``, and its windows are then only shortened near contig ends. Nothing
is computed here: rows the cache lacks raise :class:`~embedcache.errors.MissingRowsError`,
whose message gives the ``embedcache variants`` command that embeds them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from embedcache.errors import InputError, MissingRowsError
from embedcache.sequences.alphabet import normalize
from embedcache.sequences.readers.bed import open_genome
from embedcache.sequences.readers.variants import read_variants
from embedcache.variants.windows import variant_windows

__all__ = ["FEATURE_KINDS", "variant_features"]

FEATURE_KINDS = ("diff", "concat")


def _flanks(path: Path, n: int, flank: int | None) -> np.ndarray:
    name = path.name.lower()
    table = None
    if name.endswith((".parquet", ".pq")):
        table = pd.read_parquet(path)
    elif name.removesuffix(".gz").endswith((".csv", ".tsv", ".txt")):
        table = pd.read_csv(path, sep="," if ".csv" in name else "\t", dtype=str, keep_default_na=False)
    if table is not None and "flank" in table.columns and flank is None:
        values = pd.to_numeric(table["flank"], errors="coerce")
        if values.isna().any() or len(values) != n:
            raise InputError(f"{path}: its flank column must hold one whole number per allele (as "
                             "`embedcache variants` writes it).")
        return values.to_numpy(dtype=np.int64)
    if flank is None:
        raise InputError(f"{path} has no flank column: give --flank, the flank its windows were embedded with "
                         "(or pass the scores table `embedcache variants` wrote, which records each allele's).")
    return np.full(n, int(flank), dtype=np.int64)


def variant_features(cache, variants, *, reference, model=None, layer=None, pool: str = "mean",
                     kind: str = "diff", flank: int | None = None, label_field: str | None = None,
                     species: str | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """``(X, table)``: per allele ``alt - ref`` (``diff``, (n, D)) or ``[ref, alt]`` (``concat``, (n, 2D)).

    ``table`` holds ``id, chrom, pos, ref, alt, flank, label`` plus ``ref_window`` and
    ``alt_window`` (the sequences read), in the file's allele order.
    """
    if kind not in FEATURE_KINDS:
        raise InputError(f"--variant-features {kind!r}: choose one of {', '.join(FEATURE_KINDS)}.")
    path = Path(variants)
    vset = read_variants(path, reference, label_field=label_field)
    table = vset.table
    if not len(table):
        raise InputError(f"{path}: no alleles to featurize (skipped: {dict(vset.skipped)}).")
    flanks = _flanks(path, len(table), flank) if not any(vset.skipped.values()) else \
        np.full(len(table), -1 if flank is None else int(flank))
    if (flanks < 0).any():
        raise InputError(f"{path}: alleles were skipped on reading, so its flank column no longer lines up; "
                         "give --flank.")
    refs, alts = [], []
    with open_genome(Path(reference)) as genome:
        for chrom, pos, ref, alt, h in zip(table["chrom"], table["pos"], table["ref"], table["alt"], flanks):
            contig = genome[chrom]
            w = variant_windows(lambda a, b, c=contig: normalize(str(c[a:b])) if b > a else "", int(pos) - 1,
                                vset.contigs[chrom], ref, alt, int(h))
            refs.append(w.ref)
            alts.append(w.alt)
    try:
        r = cache.embeddings(refs, model=model, layer=layer, pool=pool, species=species)
        a = cache.embeddings(alts, model=model, layer=layer, pool=pool, species=species)
    except MissingRowsError as exc:
        raise InputError(f"{exc.missing} of the {2 * len(refs)} windows of {path} are not in the cache "
                         f"{exc.store} for layer {layer} pool {pool}. Embed them with: embedcache variants {path} "
                         f"--reference {reference} --model {exc.build_model} --cache {exc.store} "
                         f"{'' if layer is None else f'--layers {layer} '}--pool {pool} --scores cosine "
                         f"{'' if flank is None else f'--flank {flank} '}--out scores.parquet") from None
    X = (a.astype(np.float32) - r.astype(np.float32)) if kind == "diff" else np.concatenate([r, a], axis=1)
    out = table[["id", "chrom", "pos", "ref", "alt"]].copy()
    out["flank"], out["label"], out["ref_window"], out["alt_window"] = flanks, table["label"], refs, alts
    return X, out
