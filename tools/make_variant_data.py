"""Rebuild ``data/variants/`` from the two public source files it was cut from.

Usage::

    python tools/make_variant_data.py --findlay 41586_2018_461_MOESM3_ESM.xlsx \\
        --reference chr17_BRCA1.fa.gz [--out data/variants]

Sources (fetch them from the repositories named in ``SOURCES``; their sha256 are checked):

- the BRCA1 saturation genome editing table of Findlay et al. 2018 (Nature 562:217,
  Supplementary Table 1), as shipped in ArcInstitute/evo2 ``notebooks/brca1`` (Apache-2.0),
  positions in hg19;
- GRCh38 chr17 with every base outside BRCA1 set to N, as shipped in shimbalama/SBSC
  ``tests/resources/chr17_BRCA1.fa.gz`` (MIT; the sequence is the public GRCh38 assembly).

Outputs:

- ``brca1_findlay2018.vcf.gz``: one bgzip VCF record per SNV, on GRCh38. hg19 positions are
  moved by the constant offset of the BRCA1 locus between the two builds (+1,847,983: hg19
  chr17:41,196,312-41,277,500 is GRCh38 chr17:43,044,295-43,125,483); every REF is checked
  against the GRCh38 sequence, so a wrong offset fails here, not later. INFO carries the assay's
  class (``FUNC_CLASS``: FUNC, INT, LOF), ``LOF`` (1 for LOF, else 0), its function score, the
  consequence, the ClinVar summary and the hg19 position.
- ``chr17_brca1_grch38.fa.gz``: bgzip FASTA of chr17 at its full GRCh38 length (83,257,441 bp),
  so positions are real; the source's BRCA1 stretch (1-based 43,044,294-43,125,363) kept and
  every other base N (the source also kept 12 isolated IUPAC letters far from BRCA1; they are
  N here).
- ``manifest.json``: sha256 of the sources and outputs, and the counts quoted in the README.

Needs ``openpyxl`` (``pip install openpyxl``) to read the source table; the project does not.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
from pathlib import Path

import pandas as pd
from Bio import bgzf

ROOT = Path(__file__).resolve().parents[1]

SOURCES = {
    "findlay2018": {
        "repository": "ArcInstitute/evo2",
        "commit": "53f1959",
        "path": "notebooks/brca1/41586_2018_461_MOESM3_ESM.xlsx",
        "licence": "Apache-2.0 (repository); data from Findlay et al. 2018, Nature 562:217, Supplementary Table 1",
        "sha256": "0100fc651b6ec6015f02a5813660afdcf9cf3969790992104e99e74f7348d0fd",
    },
    "grch38_chr17_brca1": {
        "repository": "shimbalama/SBSC",
        "commit": "0e98848",
        "path": "tests/resources/chr17_BRCA1.fa.gz",
        "licence": "MIT (repository); sequence from the public GRCh38 assembly",
        "sha256": "35a0c8ede5ed45a027cc90e06a5fbef00e9e89fe89e112bee51cda2d63f6e8ee",
    },
}

CONTIG = "chr17"
CONTIG_LENGTH = 83_257_441
KEPT = (43_044_293, 43_125_363)  # 0-based half-open: the source's BRCA1 stretch
HG19_TO_GRCH38 = 43_044_295 - 41_196_312  # BRCA1 gene start in each build
LINE = 60
# Source columns used, and the names they get here.
COLUMNS = {"position (hg19)": "hg19", "reference": "ref", "alt": "alt", "transcript_variant": "hgvs_c",
           "function.score.mean": "score", "func.class": "klass", "consequence": "consequence",
           "clinvar_simple": "clinvar"}
VCF_NAME = "brca1_findlay2018.vcf.gz"
FASTA_NAME = "chr17_brca1_grch38.fa.gz"

HEADER = f"""##fileformat=VCFv4.2
##source=Findlay et al. 2018 Nature 562:217 (BRCA1 saturation genome editing, Supplementary Table 1), via tools/make_variant_data.py
##reference={FASTA_NAME} (GRCh38 chr17; bases outside 43044294-43125363 are N)
##contig=<ID={CONTIG},length={CONTIG_LENGTH},assembly=GRCh38>
##INFO=<ID=FUNC_CLASS,Number=1,Type=String,Description="Functional class from the assay: FUNC, INT (intermediate) or LOF (loss of function)">
##INFO=<ID=LOF,Number=1,Type=Integer,Description="1 if FUNC_CLASS is LOF, else 0">
##INFO=<ID=SCORE,Number=1,Type=Float,Description="function.score.mean of the source (lower is less functional)">
##INFO=<ID=CONSEQUENCE,Number=1,Type=String,Description="Consequence on NM_007294.3 as given by the source (spaces as underscores)">
##INFO=<ID=CLINVAR,Number=1,Type=String,Description="clinvar_simple of the source (spaces as underscores)">
##INFO=<ID=HG19_POS,Number=1,Type=Integer,Description="Position on hg19 chr17 as given by the source">
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_source(name: str, path: Path) -> None:
    if (digest := sha256(path)) != SOURCES[name]["sha256"]:
        raise SystemExit(f"{path}: sha256 {digest} is not that of {SOURCES[name]['repository']} "
                         f"{SOURCES[name]['path']} ({SOURCES[name]['sha256']}).")


def read_reference(path: Path) -> str:
    with gzip.open(path, "rt") as fh:
        header = fh.readline().strip()
        seq = "".join(line.strip() for line in fh)
    if header != f">{CONTIG}" or len(seq) != CONTIG_LENGTH:
        raise SystemExit(f"{path}: expected one record >{CONTIG} of {CONTIG_LENGTH} bp.")
    start, end = KEPT
    return "N" * start + seq[start:end].upper() + "N" * (CONTIG_LENGTH - end)


def token(value: object) -> str:
    """An INFO value: no spaces, semicolons, commas or equals signs (VCF 4.2)."""
    text = "." if pd.isna(value) else str(value)
    for bad, good in ((" ", "_"), (";", "_"), (",", "_"), ("=", "_"), ("'", "prime")):
        text = text.replace(bad, good)
    return text


def vcf_lines(table: pd.DataFrame, genome: str) -> list[str]:
    lines = []
    table = table.rename(columns=COLUMNS)[list(COLUMNS.values())]
    table = table.assign(pos=table["hg19"] + HG19_TO_GRCH38)
    for row in table.sort_values(["pos", "alt"]).itertuples(index=False):
        pos, ref, alt = int(row.pos), str(row.ref), str(row.alt)
        if genome[pos - 1] != ref:
            raise SystemExit(f"{row.hgvs_c}: REF {ref} is not GRCh38 {CONTIG}:{pos} "
                             f"({genome[pos - 1]}); the hg19 offset does not hold there.")
        info = ";".join([
            f"FUNC_CLASS={row.klass}", f"LOF={int(row.klass == 'LOF')}", f"SCORE={row.score:.6g}",
            f"CONSEQUENCE={token(row.consequence)}", f"CLINVAR={token(row.clinvar)}",
            f"HG19_POS={int(row.hg19)}",
        ])
        lines.append(f"{CONTIG}\t{pos}\tBRCA1:{row.hgvs_c}\t{ref}\t{alt}\t.\t.\t{info}\n")
    return lines


def write_bgzip(path: Path, chunks) -> None:
    with bgzf.BgzfWriter(str(path), "wb") as out:
        for chunk in chunks:
            out.write(chunk.encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--findlay", type=Path, required=True, help="41586_2018_461_MOESM3_ESM.xlsx")
    parser.add_argument("--reference", type=Path, required=True, help="chr17_BRCA1.fa.gz")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "variants")
    args = parser.parse_args(argv)
    check_source("findlay2018", args.findlay)
    check_source("grch38_chr17_brca1", args.reference)

    genome = read_reference(args.reference)
    table = pd.read_excel(args.findlay, header=2)
    lines = vcf_lines(table, genome)
    args.out.mkdir(parents=True, exist_ok=True)
    write_bgzip(args.out / VCF_NAME, [HEADER, *lines])
    fasta = [f">{CONTIG}\n", *(genome[i:i + LINE] + "\n" for i in range(0, len(genome), LINE))]
    write_bgzip(args.out / FASTA_NAME, fasta)

    classes = table["func.class"].value_counts().sort_index()
    manifest = {
        "sources": SOURCES,
        "files": {name: sha256(args.out / name) for name in (VCF_NAME, FASTA_NAME)},
        "records": len(lines),
        "func_class": {str(k): int(v) for k, v in classes.items()},
        "grch38_range": [int(table["position (hg19)"].min() + HG19_TO_GRCH38),
                         int(table["position (hg19)"].max() + HG19_TO_GRCH38)],
        "hg19_to_grch38_offset": HG19_TO_GRCH38,
        "kept_reference_bases_1based": [KEPT[0] + 1, KEPT[1]],
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {len(lines)} variants and {CONTIG} ({CONTIG_LENGTH} bp) to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
