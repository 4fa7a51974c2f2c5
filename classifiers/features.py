"""Where a task meets the cache: read a labelled task file, pick the backbone, get X.

This is the single seam between the classifiers and the embedding store. Features come only
through embedcache's public API (:class:`embedcache.EmbeddingCache`); nothing here imports
the model code or needs the weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from embedcache.errors import InputError, MissingRowsError, StoreError
from embedcache.store import layer_label
from embedcache.util.formats import TABLE_FORMATS, file_format
from embedcache.util.ranges import FINAL

__all__ = ["Backbone", "TaskSource", "check_layer", "read_task", "resolve_backbone", "task_features"]


@dataclass(frozen=True)
class TaskSource:
    """Where a task's sequences came from, as the build advice of a missing-rows error names
    them: the file(s), the genome of a BED file, and each sequence's first record id; for a
    variant set, how its alleles become features (a
    :class:`~classifiers.variant_task.VariantTask`)."""

    paths: tuple[str, ...] = ()
    reference: str | None = None
    ids: Mapping = field(default_factory=dict, repr=False)
    variants: object = None

    @classmethod
    def of(cls, paths, reference=None, table: pd.DataFrame | None = None, variants=None) -> "TaskSource":
        """The source of ``table`` (columns ``sequence``, ``id``) read from ``paths``."""
        ids = {} if table is None else dict(zip(table["sequence"][::-1], table["id"][::-1]))
        return cls(tuple(str(p) for p in paths), None if reference is None else str(reference), ids, variants)

    def __str__(self) -> str:
        return " ".join(self.paths)


class Backbone(dict):
    """What a run records about the model whose features it used: the run record's JSON form of
    the group's :class:`~embedcache.store.GroupInfo` (a plain dict, as ``metrics.json`` holds it).

    Keys: ``key`` (the store's model key), ``name``, ``digest`` (parameter digest), ``variant``,
    ``tokenizer``, ``feature_dim``, ``num_layers``, ``max_tokens``, ``alphabet``, ``long``,
    ``dtype``, ``store_dtype``, ``random_weights`` (True, False, or None when the store does not
    say) and ``source``.
    """


def resolve_backbone(cache, backbone: str | None = None) -> Backbone:
    """The store's model group to read features from.

    Parameters
    ----------
    cache : embedcache.EmbeddingCache
        The store.
    backbone : str, optional
        A model key, a model name, or a checkpoint directory; by default the store's only model.

    Returns
    -------
    Backbone

    Raises
    ------
    StoreError
        No store, an empty store, or no model matching ``backbone``.
    InputError
        No ``backbone`` given and the store holds several models; the message lists their
        names and keys.
    """
    if backbone is None:
        models = cache.models()
        if not models:
            raise StoreError(f"the cache {cache.path} holds no model yet; build it first: "
                             f"embedcache build TASK.csv --model MODEL --cache {cache.path}")
        if len(models) > 1:
            listing = "; ".join(f"{m.name} (key {m.key})" for m in models)
            raise InputError(
                f"the cache {cache.path} holds {len(models)} models: {listing}. "
                "Choose one with --model NAME or --model KEY.")
        backbone = models[0].key
    g = cache.group(backbone).about
    return Backbone(key=g.key, name=g.name, digest=g.digest, variant=g.variant, tokenizer=g.tokenizer,
                    feature_dim=g.feature_dim, num_layers=g.num_layers, max_tokens=g.max_tokens,
                    alphabet=g.alphabet, long=g.long, dtype=g.dtype, store_dtype=g.store_dtype,
                    random_weights=g.random_weights, source=g.source)


def read_task(path: str | PathLike, *, alphabet: str = "iupac-to-n", group_by: str | None = None,
              labelled: bool = True, reference: str | PathLike | None = None) -> pd.DataFrame:
    """A task file as a table: ``id``, ``sequence`` (normalized), ``label``, optional ``split``.

    Parameters
    ----------
    path : path
        FASTA, CSV, TSV, Parquet or BED (read by :func:`embedcache.sequences.readers.read_records`,
        as the build reads it, so sequences normalize to the same cache rows). A BED file's
        ``label`` and ``split`` are columns after the sixth (strand), named by a header line
        ``#chrom start end name score strand label split``; its ``chrom`` column can be the
        ``group_by`` column.
    alphabet : str
        The backbone's alphabet policy.
    group_by : str, optional
        A further column to carry (e.g. ``chrom``) for grouped splits.
    labelled : bool
        Whether labels are required (fit, cv, evaluate) or not (predict).
    reference : path, optional
        The genome FASTA a BED file's regions are cut from.

    Returns
    -------
    pandas.DataFrame
        Labels are integers when they all are, else strings.

    Raises
    ------
    InputError
        A missing label column, missing labels (the first ids are named), a missing
        ``group_by`` column, or anything the reader refuses.
    """
    from embedcache.sequences.quality import duplicate_id_conflicts
    from embedcache.sequences.readers import read_records

    path = Path(path)
    table = read_records(path, alphabet=alphabet, reference=reference)
    duplicate_id_conflicts(table, str(path)).warn(stacklevel=2)
    if group_by and group_by not in table.columns:
        table[group_by] = _extra_column(path, group_by, len(table))
    if not labelled:
        return table
    if "label" not in table.columns:
        raise InputError(
            f"{path} has no label column; classify needs a 'label' for every sequence (a CSV/TSV/"
            "Parquet column; in a BED file a column after strand, named by a header line "
            "'#chrom start end name score strand label'). Use `classify predict` for unlabelled "
            "sequences.")
    missing = table["label"].isna()
    if missing.any():
        ids = table.loc[missing, "id"].head(5).tolist()
        raise InputError(
            f"{path}: {int(missing.sum())} rows have no label (first ids: {ids}). Fill them in, "
            "or remove those rows.")
    table["label"] = _uniform_labels(table["label"])
    return table


def task_features(cache, sequences, *, backbone: Backbone, layer: int | str, pool: str,
                  source=(), reference=None, ids=None) -> np.ndarray:
    """Embeddings of ``sequences`` (in order, duplicates included) from the store.

    Parameters
    ----------
    cache : embedcache.EmbeddingCache
    sequences : sequence of str
    backbone : Backbone
        From :func:`resolve_backbone`.
    layer : int or "final"
        1-based layer, or NTv3's full-resolution ``"final"`` output.
    pool : {"cls", "mean"}
    source : TaskSource, path or sequence of paths
        The task file(s) the sequences come from, named in the build advice of the error.
    reference : path, optional
        The genome of a BED task, named in the advice too.
    ids : sequence of str, optional
        The record ids of ``sequences``; the error names the first missing record by its id.

    Returns
    -------
    ndarray of shape (len(sequences), feature_dim), float32

    Raises
    ------
    MissingRowsError
        Sequences, layer or pooling missing from the store: which, and the build that adds
        them (a command on the command line: :meth:`~embedcache.errors.EmbedcacheError.cli_message`).
    """
    check_layer(backbone, layer)
    try:
        return cache.embeddings(list(sequences), model=backbone["key"], layer=layer_label(layer),
                                pool=pool)
    except MissingRowsError as exc:
        if not isinstance(source, TaskSource):
            source = TaskSource.of([source] if isinstance(source, (str, PathLike)) else source, reference)
        raise exc.for_source(source.paths, reference=source.reference,
                             ids=ids if ids is not None else source.ids or None) from None


def check_layer(backbone: Backbone, layer) -> None:
    """Refuse a layer the backbone does not have (an :class:`InputError`)."""
    num_layers = backbone.get("num_layers")
    if layer_label(layer) == FINAL:
        return  # NTv3's full-resolution output; a store without it says so, with its build
    if num_layers and not 1 <= int(layer) <= int(num_layers):
        # Checked here, not left to the store: its "build the missing layer" advice would send
        # the user to build a layer the model does not have.
        raise InputError(f"--layer {layer}: backbone {backbone['name']} has layers 1-{num_layers}; "
                         "pick one of those (`classify sweep --layers all` compares them).")


def _uniform_labels(labels: pd.Series) -> pd.Series:
    """Integers when every label is a whole number (0/1 CSV columns), else strings, so that a
    task file and its test file agree whatever dtype each chunk was read with."""
    numeric = pd.to_numeric(labels, errors="coerce")
    if numeric.notna().all() and (numeric == np.round(numeric)).all():
        return numeric.astype(np.int64)
    return labels.astype(str).str.strip()


def _extra_column(path: Path, column: str, n_rows: int) -> pd.Series:
    """A column the reader does not carry (e.g. ``chrom``), read from a CSV, TSV or Parquet."""
    found = file_format(path, TABLE_FORMATS)
    try:
        if found is not None and found.name == "parquet":
            values = pd.read_parquet(path, columns=[column])[column]
        elif found is not None:
            values = pd.read_csv(path, sep=found.separator, usecols=[column], dtype=str,
                                 keep_default_na=False)[column]
        else:
            raise ValueError("not a table")
    except (ValueError, KeyError):
        raise InputError(
            f"{path} has no column {column!r} to group by; give a CSV, TSV or Parquet file with "
            "that column, or drop --group-by.") from None
    if len(values) != n_rows:
        raise InputError(f"{path}: column {column!r} has {len(values)} values for {n_rows} "
                         "records (blank lines?); remove blank lines from the file.")
    return values.reset_index(drop=True)
