"""Probe features of variants: ``alt - ref`` or ``[ref, alt]`` pooled embeddings read from the cache.

The windows are those ``embedcache variants`` embedded. A variant table with a ``flank`` column
(as ``embedcache variants`` writes it: each allele's final half-width, after any shortening near
a contig end or for Ns) is cut with exactly that ``h``. A VCF or a table without one is cut as
``embedcache variants`` cuts it: at ``flank`` (default: the largest whose ACGT window fits the
model group's ``max_tokens``, as there), shrunk where Ns need more tokens, counted with the
group's tokenizer. Nothing is computed here: windows the cache lacks raise an
:class:`~embedcache.errors.InputError` giving the ``embedcache variants`` command that embeds them.

:func:`variant_table` reads the alleles and cuts their windows once; :func:`window_features`
reads one (layer, pool) of them; :func:`variant_features` is the two together.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import pandas as pd

from embedcache.errors import InputError, MissingRowsError
from embedcache.sequences.alphabet import normalize
from embedcache.sequences.readers.bed import open_genome
from embedcache.sequences.readers.variants import read_variants
from embedcache.util.formats import TABLE_FORMATS, file_format
from embedcache.variants.score import cut_windows
from embedcache.variants.windows import default_flank, variant_windows

__all__ = ["FEATURE_KINDS", "variant_features", "variant_table", "window_features"]

FEATURE_KINDS = ("diff", "concat")


def _flank_column(path: Path, n: int) -> np.ndarray | None:
    """The ``flank`` column of a table ``embedcache variants`` wrote, else ``None``."""
    found = file_format(path, TABLE_FORMATS)
    table = None
    if found is not None and found.name == "parquet":
        table = pd.read_parquet(path)
    elif found is not None:
        table = pd.read_csv(path, sep=found.separator, dtype=str, keep_default_na=False)
    if table is None or "flank" not in table.columns:
        return None
    values = pd.to_numeric(table["flank"], errors="coerce")
    if values.isna().any() or len(values) != n:
        raise InputError(f"{path}: its flank column must hold one whole number per allele (as "
                         "`embedcache variants` writes it), or give --flank.")
    return values.to_numpy(dtype=np.int64)


def _token_counter(tok):
    """Tokens of a sequence as the model group's tokenizer (its recorded description) counts
    them, CLS included."""
    tok = tok or {}
    if tok.get("variant") in ("v1", "v2"):
        from embedcache.families.nt.tokenizer import tokenizer_for

        tokenizer = tokenizer_for(tok["variant"], int(tok["k"]))
        return lambda seq: int(tokenizer.count_tokens([seq])[0])
    return len  # NTv3: one token per base


def variant_table(cache, variants, *, reference, model=None, flank: int | None = None,
                  label_field: str | None = None, species: str | None = None,
                  ref_mismatch: str = "error") -> pd.DataFrame:
    """The alleles of ``variants`` with their windows: ``id, chrom, pos, ref, alt, flank, label,
    ref_window, alt_window``, in the file's allele order (nothing read from the cache yet).
    ``table.attrs["flank"]`` is the flank the windows were cut at (``None``: the file's column);
    ``table.attrs["skipped"]`` counts the alleles left out on reading, by kind (``ref_mismatch``
    as ``embedcache variants --ref-mismatch`` says)."""
    path = Path(variants)
    vset = read_variants(path, reference, label_field=label_field, ref_mismatch=ref_mismatch)
    table = vset.table
    if not len(table):
        raise InputError(f"{path}: no alleles to featurize (skipped: {dict(vset.skipped)}).")
    column = None if flank is not None else _flank_column(path, len(table) + sum(vset.skipped.values()))
    if column is not None and any(vset.skipped.values()):
        raise InputError(f"{path}: alleles were skipped on reading, so its flank column no longer lines up; "
                         "give --flank.")
    h = None
    if column is not None:
        windows = []
        with open_genome(Path(reference)) as genome:
            for chrom, pos, ref, alt, h in zip(table["chrom"], table["pos"], table["ref"], table["alt"], column):
                contig = genome[chrom]
                windows.append(variant_windows(lambda a, b, c=contig: normalize(str(c[a:b])) if b > a else "",
                                               int(pos) - 1, vset.contigs[chrom], ref, alt, int(h)))
    else:
        about = cache.group(model, species=species).about
        count, max_tokens = _token_counter(about.tokenizer), int(about.max_tokens)
        h = default_flank(count, max_tokens) if flank is None else int(flank)
        if h < 0:
            raise InputError(f"--flank {flank}: give a number of bases >= 0.")
        windows = cut_windows(table, reference, vset.contigs, h, count, max_tokens)
    out = table[["id", "chrom", "pos", "ref", "alt"]].copy()
    out["flank"] = [w.flank for w in windows]
    out["label"] = table["label"].to_numpy()
    out["ref_window"], out["alt_window"] = [w.ref for w in windows], [w.alt for w in windows]
    out.attrs["flank"], out.attrs["skipped"] = h, dict(vset.skipped)
    return out


def window_features(cache, table: pd.DataFrame, *, kind: str = "diff", model=None, layer=None,
                    pool: str = "mean", species: str | None = None, source="VARIANTS",
                    reference="GENOME.fa", flank: int | None = None) -> np.ndarray:
    """``alt - ref`` (``diff``, (n, D)) or ``[ref, alt]`` (``concat``, (n, 2D)) of a
    :func:`variant_table`'s windows; ``source``, ``reference`` and ``flank`` (the table's
    ``attrs["flank"]``) are named in the advice."""
    if kind not in FEATURE_KINDS:
        raise InputError(f"--variant-features {kind!r}: choose one of {', '.join(FEATURE_KINDS)}.")
    windows = table["ref_window"].tolist() + table["alt_window"].tolist()
    try:  # one read, so that a missing-rows error counts every window the cache lacks
        both = cache.embeddings(windows, model=model, layer=layer, pool=pool, species=species)
    except MissingRowsError as exc:
        raise _missing(exc, len(windows), source, reference, layer, pool, flank) from None
    r, a = both[:len(table)], both[len(table):]
    if kind == "diff":
        return a.astype(np.float32) - r.astype(np.float32)
    return np.concatenate([r, a], axis=1)


def _missing(exc: MissingRowsError, total: int, source, reference, layer, pool, flank) -> InputError:
    """The ``embedcache variants`` command that embeds the windows (a build of the windows
    themselves would need them as a file; the variant command cuts and embeds them)."""
    advice = exc.advice
    words = ["embedcache", "variants", str(source), "--reference", str(reference), "--model", advice.model,
             "--cache", str(exc.store)]
    if layer is not None:
        words += ["--layers", str(layer)]
    words += ["--pool", str(pool), "--scores", "cosine"]
    if flank is not None:
        words += ["--flank", str(int(flank))]
    if advice.options.get("max_tokens") is not None:
        words += ["--max-tokens", str(advice.options["max_tokens"])]
    if advice.allow_random_weights:
        words.append("--allow-random-weights")
    words += ["--out", "scores.parquet"]
    return InputError(f"{exc.missing} of the {total} windows of {source} are not in the cache {exc.store} "
                      f"for model {exc.model} (key {exc.key}), layer {layer} pool {pool}: the variants' windows "
                      f"must be embedded first. Embed them with: {shlex.join(words)}")


def variant_features(cache, variants, *, reference, model=None, layer=None, pool: str = "mean",
                     kind: str = "diff", flank: int | None = None, label_field: str | None = None,
                     species: str | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """``(X, table)``: per allele ``alt - ref`` (``diff``, (n, D)) or ``[ref, alt]`` (``concat``, (n, 2D)).

    ``table`` holds ``id, chrom, pos, ref, alt, flank, label`` plus ``ref_window`` and
    ``alt_window`` (the sequences read), in the file's allele order.
    """
    if kind not in FEATURE_KINDS:
        raise InputError(f"--variant-features {kind!r}: choose one of {', '.join(FEATURE_KINDS)}.")
    table = variant_table(cache, variants, reference=reference, model=model, flank=flank,
                          label_field=label_field, species=species)
    X = window_features(cache, table, kind=kind, model=model, layer=layer, pool=pool, species=species,
                        source=variants, reference=reference, flank=flank)
    return X, table
