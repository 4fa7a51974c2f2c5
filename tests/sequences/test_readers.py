"""Tests of embedcache.sequences.readers: every input format, chunking, normalization and each input error."""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedcache.sequences.readers import bed as bed_reader
from embedcache.errors import AlphabetError, InputError
from embedcache.sequences.readers import FORMATS, detect_format, iter_records, read_records

# A two-chromosome genome, 60-bp lines, soft-masked (lower-case) stretch on chr1.
CHR1 = "ACGTTGCAAGGCTTAACCGGATCGATCGTTAGCCATGGACTTAGCCGATAGCTAGGCTAACGGTTACGATCGAT"
CHR1 = CHR1[:20] + CHR1[20:30].lower() + CHR1[30:]
CHR2 = "TTTTGGGGCCCCAAAANNNNACGT"


def _hand_rc(seq: str) -> str:
    """Reverse complement written out letter by letter, independent of the library's."""
    pairs = {"A": "T", "C": "G", "G": "C", "T": "A", "N": "N"}
    return "".join(pairs[c] for c in reversed(seq.upper()))


def _write_genome(path: Path, line_width: int = 60) -> Path:
    lines = []
    for name, seq in (("chr1", CHR1), ("chr2", CHR2)):
        lines.append(f">{name} test chromosome")
        lines += [seq[i : i + line_width] for i in range(0, len(seq), line_width)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def genome(tmp_path):
    return _write_genome(tmp_path / "genome.fa")


# -- format detection ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, fmt",
    [
        ("a.fa", "fasta"), ("a.fasta", "fasta"), ("a.fna", "fasta"), ("a.fas", "fasta"),
        ("a.FA.GZ", "fasta"), ("a.fasta.gz", "fasta"), ("x.y.csv", "csv"), ("a.csv.gz", "csv"),
        ("a.tsv", "tsv"), ("a.tsv.gz", "tsv"), ("a.parquet", "parquet"), ("a.pq", "parquet"),
        ("a.bed", "bed"), ("a.bed.gz", "bed"),
    ],
)
def test_detect_format(name, fmt):
    assert detect_format(name) == fmt
    assert fmt in FORMATS


@pytest.mark.parametrize("name", ["a.txt", "a", "a.gz", "a.parquet.gz", "a.fastq"])
def test_detect_format_unknown_lists_accepted_and_override(name):
    with pytest.raises(InputError) as err:
        detect_format(name)
    msg = str(err.value)
    assert name in msg and ".fasta" in msg and ".parquet" in msg and "format=" in msg


def test_format_override_reads_unknown_extension(tmp_path):
    path = tmp_path / "seqs.txt"
    path.write_text(">s1\nACGT\n")
    assert read_records(path, format="fasta")["sequence"].tolist() == ["ACGT"]
    with pytest.raises(InputError, match="unknown format 'fastq'"):
        iter_records(path, format="fastq")


def test_bad_arguments_fail_at_call_time(tmp_path):
    path = tmp_path / "s.fa"
    path.write_text(">s1\nACGT\n")
    with pytest.raises(InputError, match="alphabet policy 'loose'"):
        iter_records(path, alphabet="loose")
    with pytest.raises(ValueError, match="chunk_size"):
        iter_records(path, chunk_size=0)
    with pytest.raises(InputError, match="does not exist") as err:
        iter_records(tmp_path / "missing.fa")
    assert "missing.fa" in str(err.value)
    for fmt in ("fasta", None):  # a directory is named as one, whatever its name says
        with pytest.raises(InputError, match=r"is a directory, not a sequence file.*\*\.fa"):
            iter_records(tmp_path, format=fmt)


# -- FASTA ---------------------------------------------------------------------------------


def test_fasta_multiline_blank_lines_descriptions_duplicates(tmp_path):
    path = tmp_path / "seqs.fa"
    path.write_text(
        "\n>seq1 some description here\nACGTAC\nGTACGT\n\nAA\n>seq2\nacgtnn\n>seq1 again\nTTTT\n\n"
    )
    df = read_records(path)
    assert list(df.columns) == ["id", "sequence", "record"]
    assert df["id"].tolist() == ["seq1", "seq2", "seq1"]
    assert df["sequence"].tolist() == ["ACGTACGTACGTAA", "ACGTNN", "TTTT"]
    assert df["record"].tolist() == [1, 2, 3]
    assert df["record"].dtype == np.int64


def test_fasta_crlf_and_empty_header(tmp_path):
    path = tmp_path / "win.fasta"
    path.write_bytes(b">a\r\nACGT\r\nGG\r\n>\r\nCCCC\r\n")
    df = read_records(path)
    assert df["id"].tolist() == ["a", "win:2"]
    assert df["sequence"].tolist() == ["ACGTGG", "CCCC"]


@pytest.mark.parametrize("name", ["seqs.fa.gz", "seqs.fa"])
def test_fasta_gzip_detected_by_magic(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(gzip.compress(b">r1\nACGT\nAC\n>r2\nGGGG\n"))
    df = read_records(path)
    assert df["id"].tolist() == ["r1", "r2"]
    assert df["sequence"].tolist() == ["ACGTAC", "GGGG"]


def test_fasta_lowercase_and_iupac_normalized(tmp_path):
    path = tmp_path / "amb.fa"
    path.write_text(">x\nacgtRYKMswbdhvn\n")
    assert read_records(path)["sequence"].tolist() == ["ACGT" + "N" * 11]


def test_fasta_strict_policy_names_file_record_and_way_out(tmp_path):
    path = tmp_path / "amb.fa"
    path.write_text(">ok\nACGT\n>amb1\nACGTR\n")
    with pytest.raises(AlphabetError) as err:
        read_records(path, alphabet="strict")
    msg = str(err.value)
    assert "amb.fa:amb1" in msg and "record 2" in msg and "line 3" in msg
    assert "position 5" in msg and "iupac-to-n" in msg


def test_fasta_bad_letter_names_file_and_record(tmp_path):
    path = tmp_path / "rna.fa"
    path.write_text(">r1\nACGU\n")
    with pytest.raises(AlphabetError) as err:
        read_records(path)
    assert "rna.fa:r1" in str(err.value) and "U to T" in str(err.value)


def test_fasta_empty_record_names_file_id_and_line(tmp_path):
    path = tmp_path / "holes.fa"
    path.write_text(">a\nACGT\n\n>empty_one\n\n>c\nGG\n")
    with pytest.raises(InputError) as err:
        read_records(path)
    msg = str(err.value)
    assert str(path) in msg and "'empty_one'" in msg and "line 4" in msg and "empty sequence" in msg
    assert "Remove the record" in msg


def test_fasta_empty_last_record(tmp_path):
    path = tmp_path / "tail.fa"
    path.write_text(">a\nACGT\n>last\n")
    with pytest.raises(InputError, match=r"record 2 \('last', header on line 3\)"):
        read_records(path)


def test_not_a_fasta_file(tmp_path):
    path = tmp_path / "table.fa"
    path.write_text("\nid,sequence\nx,ACGT\n")
    with pytest.raises(InputError) as err:
        read_records(path)
    msg = str(err.value)
    assert str(path) in msg and "not a FASTA file" in msg and "line 2" in msg and "'>'" in msg


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_fasta_without_records(tmp_path, content):
    path = tmp_path / "nothing.fa"
    path.write_bytes(content)
    with pytest.raises(InputError, match="no FASTA records") as err:
        read_records(path)
    assert str(path) in str(err.value)


def test_fasta_truncated_gzip(tmp_path):
    path = tmp_path / "cut.fa.gz"
    data = gzip.compress(b">a\n" + b"ACGT" * 5000 + b"\n")
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as err:
        read_records(path)
    assert str(path) in str(err.value) and "gzip" in str(err.value)


def test_fasta_corrupt_gzip(tmp_path):
    path = tmp_path / "bad.fa.gz"
    data = bytearray(gzip.compress(b">a\n" + b"ACGT" * 100 + b"\n"))
    data[20:40] = b"\x00" * 20
    path.write_bytes(bytes(data))
    with pytest.raises(InputError) as err:
        read_records(path)
    assert str(path) in str(err.value)


def test_fasta_binary_bytes(tmp_path):
    path = tmp_path / "blob.fa"
    path.write_bytes(b">a\nACGT\n\xff\xfe\x00\x81\n")
    with pytest.raises(InputError) as err:
        read_records(path)
    msg = str(err.value)
    assert str(path) in msg and "line 3" in msg and "UTF-8" in msg


# -- chunking and streaming ----------------------------------------------------------------


def _ten_records(tmp_path: Path, fmt: str) -> tuple[Path, dict]:
    seqs = ["ACGT" * (i + 1) for i in range(10)]
    ids = [f"s{i}" for i in range(10)]
    if fmt == "fasta":
        path = tmp_path / "ten.fa"
        path.write_text("".join(f">{i}\n{s}\n" for i, s in zip(ids, seqs)))
        return path, {}
    if fmt == "bed":
        genome = _write_genome(tmp_path / "genome.fa")
        path = tmp_path / "ten.bed"
        path.write_text("".join(f"chr1\t{i}\t{i + 4 * (i + 1)}\ts{i}\n" for i in range(10)))
        return path, {"reference": genome}
    df = pd.DataFrame({"id": ids, "sequence": seqs})
    if fmt == "parquet":
        path = tmp_path / "ten.parquet"
        df.to_parquet(path)
    else:
        path = tmp_path / f"ten.{fmt}"
        df.to_csv(path, sep="\t" if fmt == "tsv" else ",", index=False)
    return path, {}


@pytest.mark.parametrize("fmt", FORMATS)
def test_chunks_of_three_keep_order(tmp_path, fmt):
    path, kwargs = _ten_records(tmp_path, fmt)
    chunks = list(iter_records(path, chunk_size=3, **kwargs))
    assert [len(c) for c in chunks] == [3, 3, 3, 1]
    whole = pd.concat(chunks, ignore_index=True)
    assert whole["id"].tolist() == [f"s{i}" for i in range(10)]
    assert whole["record"].tolist() == list(range(1, 11))
    assert [len(s) for s in whole["sequence"]] == [4 * (i + 1) for i in range(10)]
    pd.testing.assert_frame_equal(whole, read_records(path, **kwargs))


def test_streaming_yields_before_reading_a_later_bad_record(tmp_path):
    path = tmp_path / "late_error.fa"
    path.write_text("".join(f">s{i}\nACGT\n" for i in range(10)) + ">bad\nAC-GT\n")
    chunks = iter_records(path, chunk_size=3)
    first = next(chunks)
    assert first["id"].tolist() == ["s0", "s1", "s2"]
    with pytest.raises(AlphabetError, match="late_error.fa:bad"):
        list(chunks)


# -- CSV / TSV -----------------------------------------------------------------------------


def test_csv_with_id_label_split_and_messy_headers(tmp_path):
    path = tmp_path / "task.csv"
    path.write_text(" ID ,Sequence, Label,SPLIT,extra\nx1,acgtr,1,train,z\nx2,GGCC,0,test,\nx3,TTAA,1,train,q\n")
    df = read_records(path)
    assert list(df.columns) == ["id", "sequence", "record", "label", "split"]
    assert df["id"].tolist() == ["x1", "x2", "x3"]
    assert df["sequence"].tolist() == ["ACGTN", "GGCC", "TTAA"]
    assert df["label"].tolist() == [1, 0, 1]
    assert df["label"].dtype == np.int64
    assert df["split"].tolist() == ["train", "test", "train"]


def test_csv_string_labels_name_column_and_literal_na_sequence(tmp_path):
    path = tmp_path / "named.csv"
    # "NA" is a (tiny) DNA sequence, not a missing value; a missing label stays missing.
    path.write_text("name,sequence,label\np1,NA,promoter\np2,ACGT,\n")
    df = read_records(path)
    assert df["id"].tolist() == ["p1", "p2"]
    assert df["sequence"].tolist() == ["NA", "ACGT"]
    assert df["label"].iloc[0] == "promoter" and pd.isna(df["label"].iloc[1])


def test_csv_without_ids_uses_file_stem_and_record(tmp_path):
    path = tmp_path / "anon.csv.gz"
    path.write_bytes(gzip.compress(b"sequence\nACGT\nGGGG\n"))
    df = read_records(path)
    assert df["id"].tolist() == ["anon:1", "anon:2"]
    assert "label" not in df.columns


def test_tsv(tmp_path):
    path = tmp_path / "task.tsv"
    path.write_text("id\tsequence\tlabel\na\tACGT\tenhancer\nb\tCCGG\tnone\n")
    df = read_records(path)
    assert df["sequence"].tolist() == ["ACGT", "CCGG"]
    assert df["label"].tolist() == ["enhancer", "none"]


def test_csv_without_sequence_column(tmp_path):
    path = tmp_path / "noseq.csv"
    path.write_text("id,dna,label\na,ACGT,1\n")
    with pytest.raises(InputError) as err:
        iter_records(path).__next__()
    msg = str(err.value)
    assert str(path) in msg and "'dna'" in msg and "'sequence' column" in msg


def test_tsv_with_commas_hints_at_delimiter(tmp_path):
    path = tmp_path / "commas.tsv"
    path.write_text("id,sequence\na,ACGT\n")
    with pytest.raises(InputError, match="tab-separated"):
        read_records(path)


def test_csv_two_columns_read_as_sequence(tmp_path):
    path = tmp_path / "twice.csv"
    path.write_text("sequence,Sequence \nACGT,GGGG\n")
    with pytest.raises(InputError, match="both read as 'sequence'"):
        read_records(path)


@pytest.mark.parametrize("cell", ["", "   "])
def test_csv_empty_sequence_names_row_line_and_id(tmp_path, cell):
    path = tmp_path / "gaps.csv"
    # The blank line is skipped, so row 3 is on line 5.
    path.write_text(f"id,sequence,label\na,ACGT,1\n\nb,CCGG,0\nc,{cell},1\n")
    with pytest.raises(InputError) as err:
        read_records(path)
    msg = str(err.value)
    assert str(path) in msg and "row 3" in msg and "line 5" in msg and "'c'" in msg
    assert "Fill it in or remove the row" in msg


def test_csv_alphabet_error_names_row_and_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("id,sequence\na,ACGT\nb,ACXT\n")
    with pytest.raises(AlphabetError) as err:
        read_records(path)
    msg = str(err.value)
    assert "bad.csv:b" in msg and "row 2" in msg and "line 3" in msg and "position 3" in msg


def test_csv_ragged_row(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("id,sequence\na,ACGT\nb,ACGT,extra,fields\n")
    with pytest.raises(InputError) as err:
        read_records(path)
    msg = str(err.value)
    assert str(path) in msg and "does not parse" in msg and "line 3" in msg


def test_csv_binary_garbage(tmp_path):
    path = tmp_path / "garbage.csv"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(InputError) as err:
        read_records(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("content, expected", [("", "is empty"), ("id,sequence\n", "header but no rows")])
def test_csv_empty_or_header_only(tmp_path, content, expected):
    path = tmp_path / "hollow.csv"
    path.write_text(content)
    with pytest.raises(InputError, match=expected) as err:
        read_records(path)
    assert str(path) in str(err.value)


# -- Parquet -------------------------------------------------------------------------------


def test_parquet_with_id_label_split(tmp_path):
    path = tmp_path / "task.parquet"
    pd.DataFrame(
        {"Sequence": ["acgt", "GGNN"], "id": [10, 11], "label": [0.5, 1.5], "split": ["train", "test"]}
    ).to_parquet(path)
    df = read_records(path)
    assert df["id"].tolist() == ["10", "11"]
    assert df["sequence"].tolist() == ["ACGT", "GGNN"]
    assert df["label"].tolist() == [0.5, 1.5] and df["label"].dtype == np.float64
    assert df["split"].tolist() == ["train", "test"]


def test_parquet_null_sequence_names_row(tmp_path):
    path = tmp_path / "nulls.parquet"
    pq.write_table(pa.table({"sequence": ["ACGT", None], "name": ["a", "b"]}), path)
    with pytest.raises(InputError) as err:
        read_records(path)
    msg = str(err.value)
    assert str(path) in msg and "row 2" in msg and "'b'" in msg


def test_parquet_errors(tmp_path):
    numbers = tmp_path / "numbers.parquet"
    pq.write_table(pa.table({"sequence": [1, 2]}), numbers)
    with pytest.raises(InputError, match="not strings"):
        read_records(numbers)
    noseq = tmp_path / "noseq.parquet"
    pq.write_table(pa.table({"seq": ["ACGT"]}), noseq)
    with pytest.raises(InputError, match=r"no 'sequence' column; found columns \['seq'\]"):
        read_records(noseq)
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"this is not parquet at all" * 10)
    with pytest.raises(InputError, match="not a readable Parquet file") as err:
        read_records(junk)
    assert str(junk) in str(err.value)


# -- BED -----------------------------------------------------------------------------------


def test_bed_plus_and_minus_strand(tmp_path, genome):
    path = tmp_path / "regions.bed"
    path.write_text(
        "# comment\ntrack name=test\nbrowser position chr1:1-10\n"
        "chr1\t3\t11\tfwd\t0\t+\n"
        "chr1\t3\t11\trev\t0\t-\n"
        "chr1\t18\t33\t.\t0\t-\n"  # crosses the soft-masked stretch
        "chr2\t12\t24\n"
    )
    df = read_records(path, reference=genome)
    assert list(df.columns) == ["id", "sequence", "record", "chrom", "start", "end", "strand"]
    assert df["sequence"].tolist() == [
        CHR1[3:11],
        _hand_rc(CHR1[3:11]),
        _hand_rc(CHR1[18:33]),
        CHR2[12:24],
    ]
    assert CHR1[3:11] == "TTGCAAGG" and _hand_rc(CHR1[3:11]) == "CCTTGCAA"
    assert df["id"].tolist() == ["fwd", "rev", "chr1:18-33(-)", "chr2:12-24(.)"]
    assert df["record"].tolist() == [1, 2, 3, 4]
    assert df["strand"].tolist() == ["+", "-", "-", "."]
    assert df["start"].tolist() == [3, 3, 18, 12] and df["end"].tolist() == [11, 11, 33, 24]


def test_bed_region_across_line_breaks_and_space_separated(tmp_path):
    genome = _write_genome(tmp_path / "narrow.fa", line_width=7)
    path = tmp_path / "spaces.bed"
    path.write_text("chr1 5 40 wide 0 -\n")
    assert read_records(path, reference=genome)["sequence"].tolist() == [_hand_rc(CHR1[5:40])]


def test_bed_bgzip_reference(tmp_path):
    from Bio import bgzf

    plain = _write_genome(tmp_path / "plain.fa")
    compressed = tmp_path / "genome.fa.gz"
    with bgzf.BgzfWriter(str(compressed), "wb") as out:
        out.write(plain.read_bytes())
    path = tmp_path / "r.bed"
    path.write_text("chr1\t0\t12\ta\t0\t-\nchr2\t0\t8\tb\n")
    assert read_records(path, reference=compressed)["sequence"].tolist() == [_hand_rc(CHR1[:12]), CHR2[:8]]


def test_bed_plain_gzip_reference_is_refused(tmp_path):
    plain = _write_genome(tmp_path / "plain.fa")
    compressed = tmp_path / "genome.fa.gz"
    compressed.write_bytes(gzip.compress(plain.read_bytes()))
    path = tmp_path / "r.bed"
    path.write_text("chr1\t0\t12\n")
    with pytest.raises(InputError, match="bgzip") as err:
        read_records(path, reference=compressed)
    assert str(compressed) in str(err.value)


def test_bed_index_goes_to_temp_dir_when_genome_dir_is_read_only(tmp_path, genome, monkeypatch):
    import pyfaidx

    beside = str(genome) + ".fai"
    real_open_fai = pyfaidx.Faidx._open_fai

    def read_only_beside_genome(self, mode):
        # Root ignores file modes, so a read-only directory is simulated where pyfaidx writes.
        if "w" in mode and self.indexname == beside:
            raise PermissionError(13, "Permission denied", beside)
        return real_open_fai(self, mode)

    made = []
    real_mkdtemp = tempfile.mkdtemp

    def spy_mkdtemp(*args, **kwargs):
        made.append(real_mkdtemp(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(pyfaidx.Faidx, "_open_fai", read_only_beside_genome)
    monkeypatch.setattr(bed_reader.tempfile, "mkdtemp", spy_mkdtemp)
    path = tmp_path / "r.bed"
    path.write_text("chr2\t0\t4\n")
    assert read_records(path, reference=genome)["sequence"].tolist() == [CHR2[:4]]
    assert not Path(beside).exists()
    assert len(made) == 1 and not Path(made[0]).exists()


def test_bed_strict_alphabet(tmp_path):
    genome = tmp_path / "amb.fa"
    genome.write_text(">c\nACGTRYACGT\n")
    path = tmp_path / "r.bed"
    path.write_text("c\t0\t10\tamb\n")
    assert read_records(path, reference=genome)["sequence"].tolist() == ["ACGTNNACGT"]
    with pytest.raises(AlphabetError) as err:
        read_records(path, reference=genome, alphabet="strict")
    assert "r.bed:amb" in str(err.value) and "line 1" in str(err.value)


def test_bed_without_reference(tmp_path):
    path = tmp_path / "r.bed"
    path.write_text("chr1\t0\t10\n")
    with pytest.raises(InputError) as err:
        iter_records(path)
    assert str(path) in str(err.value) and "--reference genome.fa" in str(err.value)


@pytest.mark.parametrize(
    "line, expected",
    [
        ("chrUn\t0\t10", "chromosome 'chrUn' is not in the reference"),
        ("chr2\t10\t25", "ends past the end of chr2 (24 bp"),
        ("chr1\t10\t10", "0 <= start < end"),
        ("chr1\t12\t10", "0 <= start < end"),
        ("chr1\t-1\t10", "0 <= start < end"),
        ("chr1\t10", "a BED line needs at least three"),
        ("chr1\tten\t20", "must be whole numbers"),
        ("chr1\t0\t10\tn\t0\tplus", "strand 'plus'"),
    ],
)
def test_bed_errors_name_file_and_line(tmp_path, genome, line, expected):
    path = tmp_path / "r.bed"
    path.write_text(f"track name=x\nchr1\t0\t5\n{line}\n")
    with pytest.raises(InputError) as err:
        read_records(path, reference=genome)
    msg = str(err.value)
    assert expected in msg and f"{path}, line 3" in msg


def test_bed_unknown_chromosome_lists_reference_names(tmp_path, genome):
    path = tmp_path / "r.bed"
    path.write_text("1\t0\t10\n")
    with pytest.raises(InputError, match=r"it has 2: chr1, chr2\). Check the naming"):
        read_records(path, reference=genome)


def test_bed_without_regions_and_missing_reference(tmp_path, genome):
    path = tmp_path / "r.bed"
    path.write_text("# only a comment\n\ntrack x\n")
    with pytest.raises(InputError, match="no regions"):
        read_records(path, reference=genome)
    with pytest.raises(InputError, match="reference genome file .*nope.fa does not exist"):
        read_records(path, reference=tmp_path / "nope.fa")
