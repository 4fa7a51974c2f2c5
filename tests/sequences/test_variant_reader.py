"""The variant reader on real VCFs from public test suites and on tables, with its checks."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import pandas as pd
import pytest

from embedcache.errors import InputError
from embedcache.sequences.readers.variants import read_variants

ROOT = Path(__file__).resolve().parents[2]
VCF = ROOT / "tests" / "fixtures" / "vcf"


def vcf_refs(path: Path) -> list[tuple[str, int, str]]:
    """(chrom, pos, ref) of every record, read with plain string splitting (independent of pysam)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        return [(f[0], int(f[1]), f[3]) for f in (line.split("\t") for line in fh if not line.startswith("#"))]


def genome_for(refs, path: Path, *, rename=None, change=None, pad=50, seed=0) -> Path:
    """A FASTA whose bases at the records' positions are their REF alleles, random elsewhere.

    ``rename`` maps contig names (to test naming mix-ups); ``change`` = (chrom, pos) puts another
    base there (to test REF mismatches).
    """
    rng = random.Random(seed)
    contigs: dict[str, list[str]] = {}
    placed: dict[str, set] = {}
    for chrom, pos, ref in refs:
        seq = contigs.setdefault(chrom, [])
        written = placed.setdefault(chrom, set())
        end = pos - 1 + len(ref) + pad
        seq.extend(rng.choice("ACGT") for _ in range(end - len(seq)))
        for i, base in enumerate(ref.upper()):
            if (pos - 1 + i) not in written:  # the first record wins where two disagree
                seq[pos - 1 + i] = base
                written.add(pos - 1 + i)
    if change is not None:
        chrom, pos = change
        contigs[chrom][pos - 1] = {"A": "C", "C": "G", "G": "T", "T": "A", "N": "A"}[contigs[chrom][pos - 1]]
    with open(path, "w") as out:
        for chrom, seq in contigs.items():
            out.write(f">{(rename or {}).get(chrom, chrom)}\n")
            text = "".join(seq)
            out.writelines(text[i:i + 60] + "\n" for i in range(0, len(text), 60))
    return path


def test_spec_example_vcf_bgzip_splits_alleles_and_skips_missing(tmp_path):
    path = VCF / "multi-contig.vcf.gz"
    v = read_variants(path, genome_for(vcf_refs(path), tmp_path / "g.fa"))
    t = v.table
    # 9 records: two with a missing ALT ('.'), three multi-allelic ones (2 + 2 + 3 alleles).
    assert len(t) == 11 and v.skipped == {"symbolic": 0, "missing": 2, "ref_mismatch": 0}
    assert list(zip(t.chrom, t.pos, t.ref, t.alt))[4:11] == [
        ("20", 1110696, "A", "G"), ("20", 1110696, "A", "T"),
        ("20", 1234567, "G", "GA"), ("20", 1234567, "G", "GAC"),
        ("X", 10, "AC", "A"), ("X", 10, "AC", "ATG"), ("X", 10, "AC", "C")]
    assert t.id.tolist()[:3] == ["19:111:A>C", "19:112:A>G", "rs6054257"]
    assert t.id.tolist()[6:8] == ["microsat1", "microsat1"]
    assert t.label.isna().all()
    assert t.record[2] == "multi-contig.vcf.gz line 31 (20:14370)"  # after 28 header lines and 2 records


def test_symbolic_alleles_are_skipped_and_counted(tmp_path):
    isa = VCF / "test.isa.vcf"
    # Its REFs disagree with each other (TCGGT and TG at one position): one of them cannot match.
    genome = genome_for(vcf_refs(isa), tmp_path / "g.fa")
    with pytest.raises(InputError, match=r"test\.isa\.vcf line 9 \(chr1:146999\): REF TG is not the reference's TC"):
        read_variants(isa, genome)
    v = read_variants(isa, genome, ref_mismatch="skip")
    assert v.skipped == {"symbolic": 1, "missing": 0, "ref_mismatch": 1}  # <NON_REF>; TG>T
    assert list(zip(v.table.ref, v.table.alt)) == [("TCGGT", "TGGGG"), ("T", "TG"), ("T", "G")]
    both = VCF / "test-multiallelic-homozygous-alt.vcf.gz"  # A,<*:DEL>
    v = read_variants(both, genome_for(vcf_refs(both), tmp_path / "g2.fa"))
    assert v.table.alt.tolist() == ["A"] and v.skipped["symbolic"] == 1
    sv = VCF / "seg.vcf.gz"  # REF N, <DEL>
    v = read_variants(sv, genome_for(vcf_refs(sv), tmp_path / "g3.fa"))
    assert len(v) == 0 and v.skipped["symbolic"] == 1


def test_htslib_tabix_vcf_indels_and_a_300_allele_record(tmp_path):
    path = VCF / "vcf_file.vcf"
    v = read_variants(path, genome_for(vcf_refs(path), tmp_path / "g.fa"))
    t = v.table
    assert len(t) == 322 and v.skipped["missing"] == 1
    many = next(line for line in path.read_text().splitlines() if "\t3258501\t" in line)
    assert (t.pos == 3258501).sum() == len(many.split("\t")[4].split(",")) == 305
    deletion = t[(t.pos == 3062915) & (t.ref == "GTTT")]
    assert deletion.alt.tolist() == ["G"] and deletion.id.tolist() == ["id3D"]
    assert t[t.pos == 3184885].alt.tolist() == ["TA", "T"]


def test_chr_prefix_mixup_names_both_sets_and_the_hint(tmp_path):
    isa = VCF / "test.isa.vcf"  # contig chr1
    genome = genome_for(vcf_refs(isa), tmp_path / "g.fa", rename={"chr1": "1"})
    with pytest.raises(InputError) as err:
        read_variants(isa, genome)
    msg = str(err.value)
    assert "test.isa.vcf line" in msg and "'chr1' is not in the reference" in msg
    assert "1 contig (1)" in msg and "variants use 1 contig (chr1)" in msg and "'chr' prefix" in msg


def test_unknown_contig_without_alias_names_the_build(tmp_path):
    path = VCF / "vcf_file.vcf"
    genome = genome_for([r for r in vcf_refs(path) if r[0] != "4"], tmp_path / "g.fa")
    with pytest.raises(InputError, match=r"contig '4' is not in the reference .* 3 contigs \(1, 2, 3\); "
                                         r"the variants use 4 contigs \(1, 2, 3, 4\)\. .*genome build"):
        read_variants(path, genome)


def test_ref_mismatch_is_an_error_naming_the_record_or_skipped_and_listed(tmp_path):
    path = VCF / "multi-contig.vcf.gz"
    genome = genome_for(vcf_refs(path), tmp_path / "g.fa", change=("20", 1110696))
    with pytest.raises(InputError, match=r"multi-contig\.vcf\.gz line 33 \(20:1110696\): REF A is not the "
                                         r"reference's [CGT] at 20:1110696.*--ref-mismatch skip"):
        read_variants(path, genome)
    v = read_variants(path, genome, ref_mismatch="skip")
    assert len(v) == 9 and v.skipped["ref_mismatch"] == 2  # both alleles of the record
    assert len(v.ref_mismatches) == 2 and v.ref_mismatches[0].startswith("multi-contig.vcf.gz line 33")
    assert 1110696 not in v.table.pos.tolist()


def test_ref_check_ignores_case(tmp_path):
    path = VCF / "test.isa.vcf"
    genome = genome_for(vcf_refs(path), tmp_path / "g.fa")
    genome.write_text(genome.read_text().replace("TCGGT", "tcggt"))
    assert len(read_variants(path, genome, ref_mismatch="skip")) == 3


def test_pos_past_the_contig_end(tmp_path):
    path = VCF / "test.isa.vcf"
    genome = genome_for(vcf_refs(path), tmp_path / "g.fa", pad=0)
    text = genome.read_text().rstrip("\n")
    genome.write_text(text[:-3] + "\n")  # the contig now ends inside REF TCGGT
    with pytest.raises(InputError, match=r"test\.isa\.vcf line \d+ \(chr1:146999\): chr1:146999 \(REF 5 bp\) "
                                         r"lies outside chr1, which has 147000 bp"):
        read_variants(path, genome)


def _with_record(src: Path, dest: Path, record: str) -> Path:
    lines = src.read_text().splitlines(keepends=True)
    dest.write_text("".join(lines) + record)
    return dest


def test_malformed_line_and_empty_alt_name_the_line(tmp_path):
    src = VCF / "test.isa.vcf"
    genome = genome_for(vcf_refs(src), tmp_path / "g.fa")
    n_lines = len(src.read_text().splitlines())
    bad = _with_record(src, tmp_path / "bad.vcf", "chr1\tnot_a_number\t.\tA\tC\t0\t.\tAC=0\n")
    with pytest.raises(InputError, match=rf"bad\.vcf, line {n_lines + 1}: the record after 5 good ones does not parse"):
        read_variants(bad, genome, ref_mismatch="skip")
    empty = _with_record(src, tmp_path / "empty.vcf", "chr1\t146999\t.\tT\t\t0\t.\tAC=0\n")
    with pytest.raises(InputError, match=rf"empty\.vcf line {n_lines + 1} \(chr1:146999\): the ALT column is empty"):
        read_variants(empty, genome, ref_mismatch="skip")
    letters = _with_record(src, tmp_path / "letters.vcf", "chr1\t146999\t.\tT\tX\t0\t.\tAC=0\n")
    with pytest.raises(InputError, match=r"ALT 'X' is neither bases"):
        read_variants(letters, genome, ref_mismatch="skip")


def test_labels_from_an_info_field_of_the_bundled_brca1_set():
    data = ROOT / "data" / "variants"
    v = read_variants(data / "brca1_findlay2018.vcf.gz", data / "chr17_brca1_grch38.fa.gz", label_field="LOF")
    assert len(v) == 3893 and v.table.label.value_counts().to_dict() == {"0": 3070, "1": 823}
    classes = read_variants(data / "brca1_findlay2018.vcf.gz", data / "chr17_brca1_grch38.fa.gz",
                            label_field="FUNC_CLASS").table.label
    assert ((classes == "LOF") == (v.table.label == "1")).all()
    with pytest.raises(InputError, match=r"no record has the INFO field 'PATHOGENIC'.*FUNC_CLASS, LOF, SCORE"):
        read_variants(data / "brca1_findlay2018.vcf.gz", data / "chr17_brca1_grch38.fa.gz", label_field="PATHOGENIC")


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".tsv.gz", ".parquet"])
def test_tables(tmp_path, suffix):
    isa = VCF / "test.isa.vcf"
    genome = genome_for(vcf_refs(isa), tmp_path / "g.fa")
    frame = pd.DataFrame({"Chrom": ["chr1", "chr1", "chr1"], "pos": [146999, 146999, 147000],
                          "ref": ["t", "TCGGT", "C"], "alt": ["g,TG", "<DEL>", "."], "id": ["a", "", "c"],
                          "label": ["1", ".", "0"]})
    path = tmp_path / f"v{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, sep="," if suffix == ".csv" else "\t", index=False)
    v = read_variants(path, genome, ref_mismatch="skip")
    t = v.table
    assert list(zip(t.id, t.ref, t.alt, t.label)) == [("a", "T", "G", "1"), ("a", "T", "TG", "1")]
    assert v.skipped == {"symbolic": 1, "missing": 1, "ref_mismatch": 0}
    frame.loc[1, "pos"] = 1_000_000
    frame.loc[1, "alt"] = "A"
    if suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, sep="," if suffix == ".csv" else "\t", index=False)
    where = "row 2" if suffix == ".parquet" else "line 3"
    with pytest.raises(InputError, match=rf"v{suffix.replace('.', r'[.]')} {where} \(chr1:1000000\).*lies outside chr1"):
        read_variants(path, genome)


def test_table_without_required_columns_and_bad_pos(tmp_path):
    genome = genome_for([("1", 10, "A")], tmp_path / "g.fa")
    (tmp_path / "a.csv").write_text("chrom,position,ref,alt\n1,10,A,C\n")
    with pytest.raises(InputError, match=r"no column pos .*chrom, pos \(1-based\), ref, alt"):
        read_variants(tmp_path / "a.csv", genome)
    (tmp_path / "b.csv").write_text("chrom,pos,ref,alt\n1,10,A,C\n1,ten,A,C\n")
    with pytest.raises(InputError, match=r"b\.csv line 3: pos 'ten' is not a whole number"):
        read_variants(tmp_path / "b.csv", genome)
    (tmp_path / "c.csv").write_text("chrom,pos,ref,alt\n1,10,A,\n")
    with pytest.raises(InputError, match=r"c\.csv line 2: alt is empty"):
        read_variants(tmp_path / "c.csv", genome)


def test_a_per_allele_info_field_labels_each_alt(tmp_path):
    path = VCF / "multi-contig.vcf.gz"
    v = read_variants(path, genome_for(vcf_refs(path), tmp_path / "g.fa"), label_field="AF")
    t = v.table.set_index(["pos", "alt"])
    assert t.label[(1110696, "G")] == "0.333" and t.label[(1110696, "T")] == "0.667"  # AF=0.333,0.667
    assert t.label[(14370, "A")] == "0.5" and pd.isna(t.label[(111, "C")])  # one value; no AF at all
