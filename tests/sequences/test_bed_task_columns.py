"""A BED file's task columns (label, split, others) after strand, named by a header line."""

from __future__ import annotations

import pytest

from embedcache.errors import InputError
from embedcache.sequences.readers import read_records


@pytest.fixture()
def genome(tmp_path):
    path = tmp_path / "g.fa"
    path.write_text(">chr1\n" + "ACGTTGCA" * 20 + "\n")
    return path


def _bed(tmp_path, text):
    path = tmp_path / "r.bed"
    path.write_text(text)
    return path


@pytest.mark.parametrize("header", ["#chrom\tstart\tend\tname\tscore\tstrand\tlabel\tSplit\tgene",
                                    "chrom\tstart\tend\tname\tscore\tstrand\tLabel\tsplit\tgene"])
def test_header_names_task_columns(tmp_path, genome, header):
    bed = _bed(tmp_path, f"track name=x\n{header}\nchr1\t0\t10\ta\t0\t+\t1\ttrain\tg1\n"
                         "chr1\t10\t30\tb\t0\t-\t.\ttest\tg2\nchr1\t5\t9\tc\t0\t+\tNA\n")
    df = read_records(bed, reference=genome)
    assert list(df.columns) == ["id", "sequence", "record", "chrom", "start", "end", "strand", "label", "split", "gene"]
    missing = lambda column: df[column].isna().tolist()  # noqa: E731
    assert df["label"][0] == "1" and missing("label") == [False, True, True]  # '.', 'NA' and absent
    assert df["split"][:2].tolist() == ["train", "test"] and missing("split") == [False, False, True]
    assert df["gene"][:2].tolist() == ["g1", "g2"] and df["id"].tolist() == ["a", "b", "c"]


def test_extra_columns_without_a_header_are_ignored(tmp_path, genome):
    df = read_records(_bed(tmp_path, "chr1\t0\t10\ta\t0\t+\t1\ttrain\n"), reference=genome)
    assert "label" not in df.columns and len(df) == 1


@pytest.mark.parametrize("header, message", [
    ("#chrom\tstart\tend\tlabel", "column 4 'label'.*after the sixth"),
    ("#chrom\tstart\tend\tname\tscore\tstrand\tid", "column 7 .*'id'.*rename it"),
    ("#chrom\tstart\tend\tname\tscore\tstrand\tlabel\tlabel", "column 8 .*repeated"),
])
def test_bad_headers_say_what_to_fix(tmp_path, genome, header, message):
    with pytest.raises(InputError, match=message):
        read_records(_bed(tmp_path, f"{header}\nchr1\t0\t10\ta\t0\t+\t1\t1\n"), reference=genome)
