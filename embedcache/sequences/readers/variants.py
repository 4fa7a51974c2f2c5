"""Reading variant sets: VCF (plain, bgzip or BCF) or a CSV/TSV/Parquet table, checked against a genome.

:func:`read_variants` returns a :class:`VariantSet`: one row per ALT allele (a multi-allelic
record is split), with REF checked against the reference genome, in file order.

Inputs
------
VCF
    Parsed by pysam (htslib). Only CHROM, POS, ID, REF, ALT and, for labels, one INFO key
    (``label_field``) are used. Symbolic alleles (``<DEL>``, ``<*>``, ``<NON_REF>``), the
    spanning deletion ``*``, breakends and missing alleles (``.``) are skipped and counted.
Table
    ``.csv``, ``.tsv`` (plain or gzip) or ``.parquet`` with the columns ``chrom``, ``pos``
    (1-based), ``ref``, ``alt`` and optionally ``id`` and a label column (``label_field``,
    default ``label``). One allele per row; a comma-separated ``alt`` is split like a VCF's.

Checks (each failure is an :class:`~embedcache.errors.InputError` naming the record)
------
- a contig that the genome lacks (both sets of names are given; ``chr1`` vs ``1`` is the usual
  cause), a POS past the contig's end, a malformed line, an empty ALT, letters other than
  A/C/G/T/N in REF or ALT;
- REF differing from the genome at POS (case-insensitive): an error under
  ``ref_mismatch="error"`` (the default); under ``"skip"`` the allele is left out, counted and
  listed in :attr:`VariantSet.ref_mismatches`.

Labels are kept as text; missing ones (``.``, empty, NA) become ``None``.
"""

from __future__ import annotations

import gzip
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

import pandas as pd

from embedcache.errors import InputError
from embedcache.sequences.readers.bed import open_genome
from embedcache.sequences.readers.common import check_file

__all__ = ["REF_MISMATCH_POLICIES", "VariantSet", "read_variants", "variant_format"]

REF_MISMATCH_POLICIES = ("error", "skip")
COLUMNS = ("id", "chrom", "pos", "ref", "alt", "label", "record")
_BASES = re.compile(r"[ACGTN]+")
_MISSING_LABELS = {"", ".", "NA", "NaN", "nan", "None"}
_MAX_LISTED = 5


@dataclass(frozen=True)
class VariantSet:
    """Alleles read from one variant file, checked against one genome.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per allele, in file order: ``id`` (the file's, else ``chrom:pos:ref>alt``),
        ``chrom``, ``pos`` (1-based), ``ref`` and ``alt`` (upper case), ``label`` (text or
        ``None``) and ``record`` (file and line, for messages).
    skipped : dict
        Alleles left out by kind: ``symbolic``, ``missing``, ``ref_mismatch``.
    ref_mismatches : tuple of str
        The records left out under ``ref_mismatch="skip"``.
    contigs : dict
        The genome's contig lengths.
    """

    table: pd.DataFrame
    skipped: Mapping[str, int] = field(default_factory=dict)
    ref_mismatches: tuple[str, ...] = ()
    contigs: Mapping[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.table)


def variant_format(path: Path) -> str:
    """``"vcf"``, ``"csv"``, ``"tsv"`` or ``"parquet"`` from the file name."""
    name = path.name.lower().removesuffix(".gz").removesuffix(".bgz")
    for suffix, kind in ((".vcf", "vcf"), (".bcf", "vcf"), (".csv", "csv"), (".tsv", "tsv"),
                         (".txt", "tsv"), (".parquet", "parquet"), (".pq", "parquet")):
        if name.endswith(suffix):
            return kind
    raise InputError(f"{path}: cannot tell the variant file's format from its name. Give a .vcf, "
                     ".vcf.gz or .bcf file, or a .csv/.tsv (optionally .gz) or .parquet table with "
                     "the columns chrom, pos, ref, alt.")


def read_variants(path, reference, *, label_field: str | None = None, ref_mismatch: str = "error") -> VariantSet:
    """Read and check every allele of a VCF or a variant table against ``reference`` (FASTA)."""
    path, reference = Path(path), Path(reference)
    if ref_mismatch not in REF_MISMATCH_POLICIES:
        raise InputError(f"ref_mismatch {ref_mismatch!r}: choose one of {', '.join(REF_MISMATCH_POLICIES)}.")
    check_file(path, "variant")
    check_file(reference, "reference")
    kind = variant_format(path)
    raw = _text_only(_vcf_alleles(path, label_field) if kind == "vcf" else _table_alleles(path, kind, label_field), path)
    rows: dict[str, list] = {c: [] for c in COLUMNS}
    skipped = {"symbolic": 0, "missing": 0, "ref_mismatch": 0}
    mismatches: list[str] = []
    with open_genome(reference) as genome:
        contigs = {name: len(genome[name]) for name in genome.keys()}
        for vid, chrom, pos, ref, alt, label, where in raw:
            kind_of_alt = _allele_kind(alt, where)
            if kind_of_alt != "bases":
                skipped[kind_of_alt] += 1
                continue
            _check_position(chrom, pos, ref, contigs, reference, where, lambda: _variant_contigs(path, kind))
            found = genome[chrom][pos - 1:pos - 1 + len(ref)].upper()
            if found != ref:
                if ref_mismatch == "error":
                    raise InputError(
                        f"{where}: REF {ref} is not the reference's {found} at {chrom}:{pos} in {reference}. "
                        "Check that the variants were called on this genome build, or pass "
                        "--ref-mismatch skip to leave such records out (they are counted and listed).")
                skipped["ref_mismatch"] += 1
                mismatches.append(f"{where} (REF {ref}, reference {found})")
                continue
            for column, value in zip(COLUMNS, (vid or f"{chrom}:{pos}:{ref}>{alt}", chrom, pos, ref, alt,
                                               label, where)):
                rows[column].append(value)
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    table["pos"] = table["pos"].astype("int64")
    return VariantSet(table=table, skipped=skipped, ref_mismatches=tuple(mismatches), contigs=contigs)


def _allele_kind(alt: str, where: str) -> str:
    if alt in (".", ""):
        return "missing"
    if alt == "*" or alt.startswith("<") or "[" in alt or "]" in alt:
        return "symbolic"
    if not _BASES.fullmatch(alt):
        raise InputError(f"{where}: ALT {alt!r} is neither bases (A, C, G, T, N) nor a symbolic allele. "
                         "Fix the record.")
    return "bases"


def _check_position(chrom: str, pos: int, ref: str, contigs: dict, reference: Path, where: str,
                    variant_contigs) -> None:
    if chrom not in contigs:
        alias = chrom[3:] if chrom.startswith("chr") else f"chr{chrom}"
        hint = (f"The reference names it {alias!r}: the variants and the genome differ in the 'chr' prefix "
                "('chr1' vs '1'); rename the contigs of one of them." if alias in contigs else
                "The usual cause is 'chr1' vs '1' naming, or another genome build.")
        raise InputError(f"{where}: contig {chrom!r} is not in the reference {reference}. The reference has "
                         f"{_names(contigs)}; the variants use {_names(variant_contigs())}. {hint}")
    if pos < 1 or pos - 1 + len(ref) > contigs[chrom]:
        raise InputError(f"{where}: {chrom}:{pos} (REF {len(ref)} bp) lies outside {chrom}, which has "
                         f"{contigs[chrom]} bp in {reference}. Check the genome build.")


def _names(names) -> str:
    names = list(names)
    shown = ", ".join(names[:_MAX_LISTED]) + (", ..." if len(names) > _MAX_LISTED else "")
    return f"{len(names)} contig{'s' if len(names) != 1 else ''} ({shown})"


def _label_text(value) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None  # pd.NA: a Parquet null (the label column `embedcache variants` writes)
    if isinstance(value, tuple):
        return _label_text(",".join(_label_text(v) or "." for v in value))
    # htslib hands Float fields over as float32: 7 significant digits give back the file's text.
    text = f"{value:.7g}" if isinstance(value, float) else str(value).strip()
    return None if text in _MISSING_LABELS else text


def _bases(value: str, what: str, where: str) -> str:
    text = value.strip().upper()
    if not text:
        raise InputError(f"{where}: {what} is empty. Every record needs REF and ALT bases "
                         "(use '.' for a missing ALT).")
    return text


# -- VCF -----------------------------------------------------------------------------------


def _text_only(alleles: Iterator[tuple], path: Path) -> Iterator[tuple]:
    """``alleles``, with bytes that are not UTF-8 (a header, a field pysam decodes late) refused by
    name instead of a UnicodeDecodeError (found by fuzzing)."""
    try:
        yield from alleles
    except UnicodeDecodeError:
        raise InputError(f"{path}: bytes that are not UTF-8 text in its header or records. A variant file "
                         "is text (plain, bgzip or BCF); fix or rewrite it (bcftools view checks it).") from None


def _vcf_alleles(path: Path, label_field: str | None) -> Iterator[tuple]:
    import pysam

    pysam.set_verbosity(0)  # htslib's warnings go to stderr; our errors say what matters
    try:
        vcf = pysam.VariantFile(str(path))
    except (ValueError, OSError) as exc:
        raise InputError(f"{path} is not a readable VCF/BCF file ({exc}). Check the file, e.g. with "
                         "`bcftools view -h`.") from None
    header_lines = None if path.name.lower().endswith(".bcf") else _header_lines(path)
    seen_label = label_field is None
    declared = ", ".join(vcf.header.info.keys()) or "none"
    n = 0
    with vcf:
        records = iter(vcf)
        while True:
            try:
                rec = next(records)
            except StopIteration:
                break
            except (ValueError, OSError) as exc:
                at = f"record {n + 1}" if header_lines is None else f"line {_data_line_number(path, n + 1)}"
                raise InputError(f"{path}, {at}: the record after "
                                 f"{n} good ones does not parse as VCF ({exc}). It needs at least 8 tab-separated "
                                 "fields with an integer POS (blank lines are not allowed). Fix or remove it.") from None
            n += 1
            at = f"record {n}" if header_lines is None else f"line {header_lines + n}"  # one record a line
            try:  # pysam decodes the fields as they are read (found by fuzzing: bytes that are not UTF-8)
                vid, chrom, pos, rec_ref, alts = rec.id, rec.chrom, rec.pos, rec.ref, rec.alts
            except UnicodeDecodeError:
                raise InputError(f"{path}, {at}: bytes that are not UTF-8 text. Fix or remove the record.") from None
            where = f"{path.name} {at} ({chrom}:{pos})"
            ref = _bases(rec_ref or "", "REF", where)
            if not _BASES.fullmatch(ref):
                raise InputError(f"{where}: REF {ref!r} holds letters other than A, C, G, T and N. Fix the record.")
            if alts == (".",):  # htslib reads an empty ALT column as one '.' allele; a real '.' is None
                raise InputError(f"{where}: the ALT column is empty. Write '.' for a missing ALT, "
                                 "or remove the record.")
            value = None
            if label_field is not None:
                try:
                    value = rec.info[label_field] if label_field in rec.info else None
                    seen_label = seen_label or label_field in rec.info
                except (KeyError, ValueError):  # a key the header never declared and no record used yet
                    value = None
            for i, alt in enumerate(alts or (".",)):
                # A per-allele field (Number=A) gives each ALT its own label; any other is the record's.
                per_allele = isinstance(value, tuple) and alts is not None and len(value) == len(alts) > 1
                label = _label_text(value[i] if per_allele else value)
                yield vid, chrom, pos, ref, alt.upper(), label, where
    if not seen_label:
        raise InputError(f"{path}: no record has the INFO field {label_field!r} given as the label field "
                         f"(INFO fields declared: {declared}). Name one of them with --label-field.")


def _data_line_number(path: Path, index: int) -> int:
    """The line number of the ``index``-th (1-based) non-header line (error path only)."""
    seen = lineno = 0
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.startswith("#"):
                seen += 1
                if seen == index:
                    return lineno
    return lineno + 1


def _header_lines(path: Path) -> int:
    with _open_text(path) as fh:
        return sum(1 for _ in itertools.takewhile(lambda line: line.startswith("#"), fh))


def _open_text(path: Path):
    opener = gzip.open if path.open("rb").read(2) == b"\x1f\x8b" else open
    return opener(path, "rt", errors="replace")


def _variant_contigs(path: Path, kind: str) -> list[str]:
    """The contig names a variant file uses, in order of appearance (error path only)."""
    if kind == "parquet":
        frame = pd.read_parquet(path)
        column = next(c for c in frame.columns if str(c).strip().lower() == "chrom")
        return list(dict.fromkeys(frame[column].astype(str)))
    names: dict[str, None] = {}
    with _open_text(path) as fh:
        lines = (line for line in fh if not line.startswith("#"))
        if kind != "vcf":
            header = next(lines, "").rstrip("\n").split("," if kind == "csv" else "\t")
            col = [h.strip().lower() for h in header].index("chrom")
        for line in lines:
            fields = line.rstrip("\n").split("\t" if kind != "csv" else ",")
            if len(fields) > (0 if kind == "vcf" else col):
                names[fields[0 if kind == "vcf" else col].strip()] = None
    return list(names)


# -- tables --------------------------------------------------------------------------------


def _table_alleles(path: Path, kind: str, label_field: str | None) -> Iterator[tuple]:
    label_column = label_field or "label"
    try:
        if kind == "parquet":
            frame = pd.read_parquet(path)
            frame = frame.astype({c: "string" for c in frame.columns})
        else:
            frame = pd.read_csv(path, sep="," if kind == "csv" else "\t", dtype=str, keep_default_na=False,
                                skip_blank_lines=True, comment=None)
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise InputError(f"{path} does not parse as a {kind.upper()} table ({exc}). Fix the file.") from None
    columns = {str(c).strip().lower(): c for c in frame.columns}
    missing = [c for c in ("chrom", "pos", "ref", "alt") if c not in columns]
    if missing:
        raise InputError(f"{path}: no column {', '.join(missing)} (found: {', '.join(map(str, frame.columns))}). "
                         "A variant table needs chrom, pos (1-based), ref, alt and optionally id and label.")
    if label_field is not None and label_column.lower() not in columns:
        raise InputError(f"{path}: no label column {label_column!r} (found: {', '.join(map(str, frame.columns))}).")
    has_label = label_column.lower() in columns
    first_line = 2  # the header is line 1
    for i, row in enumerate(frame.itertuples(index=False)):
        values = dict(zip((str(c).strip().lower() for c in frame.columns), row))
        where = f"{path.name} {'row' if kind == 'parquet' else 'line'} {i + (1 if kind == 'parquet' else first_line)}"
        chrom = str(values["chrom"]).strip()
        try:
            pos = int(str(values["pos"]).strip())
        except ValueError:
            raise InputError(f"{where}: pos {values['pos']!r} is not a whole number (1-based position). "
                             "Fix the row.") from None
        ref = _bases(str(values["ref"]), "ref", where)
        if not _BASES.fullmatch(ref):
            raise InputError(f"{where}: ref {ref!r} holds letters other than A, C, G, T and N. Fix the row.")
        alt_text = str(values["alt"]).strip()
        if not alt_text:
            raise InputError(f"{where}: alt is empty. Write '.' for a missing allele, or remove the row.")
        label = _label_text(values[label_column.lower()]) if has_label else None
        vid = str(values["id"]).strip() if "id" in values and _label_text(values["id"]) else None
        for alt in alt_text.split(","):
            yield vid, chrom, pos, ref, alt.strip().upper(), label, f"{where} ({chrom}:{pos})"
