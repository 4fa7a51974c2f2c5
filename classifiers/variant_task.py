"""A variant set as a classify task: one row per allele, features ``alt - ref`` or ``[ref, alt]``.

``classify fit|cv|sweep --data VARIANTS --reference GENOME.fa --variant-features diff|concat``
reads the alleles (a VCF or a chrom/pos/ref/alt table, through embedcache's variant reader),
cuts each allele's windows as ``embedcache variants`` cut them, and reads their pooled
embeddings from the cache (:mod:`embedcache.variants.features`; nothing is computed). Labels
are 0/1, or ``positive`` names the positive value, as in ``embedcache variants``; alleles
without a label are left out and counted.

In the task table an allele's ``sequence`` is its alternative window: what the k-mer baseline
counts and what train/test overlap compares (two alleles share it only when they are the same
change in the same context). ``chrom`` is a column, so ``--group-by chrom`` keeps a chromosome's
variants in one split.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from os import PathLike

import numpy as np
import pandas as pd

from embedcache.errors import InputError
from embedcache.sequences.readers.variants import REF_MISMATCH_POLICIES
from embedcache.variants.features import FEATURE_KINDS, variant_table, window_features
from embedcache.variants.labels import binary_labels

__all__ = ["VariantTask", "read_variant_task", "variant_task_features"]


@dataclass(frozen=True)
class VariantTask:
    """How a variant file becomes a task (parsed once, from the command line or a caller).

    Parameters
    ----------
    reference : path
        The genome FASTA the variants are called on.
    kind : {"diff", "concat"}
        ``alt - ref`` (D features) or ``[ref, alt]`` (2D).
    label_field : str, optional
        VCF INFO key or table column holding the labels (default: a table's ``label``).
    positive : str, optional
        The positive label value, for labels other than 0/1.
    flank : int, optional
        Bases each side of the variant, as given to ``embedcache variants`` (default: its default;
        a scores table ``embedcache variants`` wrote carries each allele's own).
    ref_mismatch : {"error", "skip"}
        Alleles whose REF differs from the genome: an error naming the record, or left out and
        counted.
    """

    reference: str
    kind: str = "diff"
    label_field: str | None = None
    positive: str | None = None
    flank: int | None = None
    ref_mismatch: str = "error"

    def __post_init__(self):
        if self.kind not in FEATURE_KINDS:
            raise InputError(f"--variant-features {self.kind!r}: choose one of {', '.join(FEATURE_KINDS)}.")
        if self.flank is not None and int(self.flank) < 0:
            raise InputError(f"--flank {self.flank}: give a number of bases >= 0.")
        if self.ref_mismatch not in REF_MISMATCH_POLICIES:
            raise InputError(f"--ref-mismatch {self.ref_mismatch!r}: choose one of {', '.join(REF_MISMATCH_POLICIES)}.")
        object.__setattr__(self, "reference", str(self.reference))

    def record(self) -> dict:
        """What a run records of it (``features.variants`` in metrics.json)."""
        return {"features": self.kind, **{k: v for k, v in asdict(self).items() if k != "kind"}}

    @classmethod
    def from_record(cls, recorded: dict, **changes) -> "VariantTask":
        """The task a run recorded (:meth:`record`), so that ``evaluate`` and ``predict`` cut and
        read another variant set exactly as the fit did; ``changes`` that are not ``None``
        replace recorded fields: ``reference`` (the genome moved), ``label_field`` and
        ``positive`` (the new file spells its labels otherwise)."""
        fields = {k: v for k, v in recorded.items() if k != "features"}
        fields.update({k: v for k, v in changes.items() if v is not None})
        return cls(kind=recorded["features"], **fields)


def read_variant_task(store, path: str | PathLike, task: VariantTask, *, backbone,
                      group_by: str | None = None, labelled: bool = True) -> pd.DataFrame:
    """The alleles of ``path`` as task rows: ``id, sequence, label`` (0/1), ``chrom, pos, ref,
    alt, flank, ref_window, alt_window``; ``attrs["missing_labels"]`` counts those left out for
    want of a label, ``attrs["skipped"]`` those the reader left out (by kind). ``labelled=False``
    (``classify predict``): every allele, no label read."""
    table = variant_table(store, path, reference=task.reference, model=backbone["key"], flank=task.flank,
                          label_field=task.label_field if labelled else None, ref_mismatch=task.ref_mismatch)
    skipped = table.attrs["skipped"]
    if not labelled:
        table = table.drop(columns="label").assign(sequence=table["alt_window"])
        table.attrs["missing_labels"], table.attrs["skipped"] = 0, skipped
        return table
    if table["label"].isna().all():
        raise InputError(f"{path}: no allele has a label; name the labels with --label-field KEY (a VCF INFO "
                         "key or a table column), 0/1 or with --positive VALUE.")
    is_positive, has = binary_labels(table["label"].tolist(), task.positive, source=str(path))
    table = table.assign(label=is_positive.astype(np.int64))[has].reset_index(drop=True)
    table["sequence"] = table["alt_window"]
    if group_by and group_by not in table.columns:
        raise InputError(f"--group-by {group_by}: a variant task has the columns {', '.join(table.columns[:6])}; "
                         "group by chrom.")
    table.attrs["missing_labels"], table.attrs["skipped"] = int((~has).sum()), skipped
    return table


def variant_task_features(store, table: pd.DataFrame, task: VariantTask, *, backbone, layer: int,
                          pool: str, source) -> np.ndarray:
    """(n, D) or (n, 2D) features of the task rows from the cache; missing windows raise an
    :class:`~embedcache.errors.InputError` with the ``embedcache variants`` command that adds them."""
    return window_features(store, table, kind=task.kind, model=backbone["key"], layer=int(layer), pool=pool,
                           source=_first_path(source), reference=task.reference, flank=task.flank)


def _first_path(source) -> str:
    paths = getattr(source, "paths", None)
    return str(paths[0]) if paths else str(source)
