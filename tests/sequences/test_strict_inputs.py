"""Tables are parsed strictly, and text files with a byte-order mark or old Mac line endings read as text.

A row whose width differs from the header's used to be read shifted (pandas made its first
field an index), and a repeated column silently lost one of its copies (issue 18).
"""

from __future__ import annotations

import gzip

import pytest

from embedcache.errors import InputError
from embedcache.sequences.readers import read_records

BOM = b"\xef\xbb\xbf"


@pytest.mark.parametrize("sep, ext", [(",", "csv"), ("\t", "tsv")])
@pytest.mark.parametrize("row, fields, note", [
    ("r1{s}ACGTACGTAA{s}GGGGCCCCAA{s}TTTTT", 4, ""),         # more fields: used to shift into id/sequence
    ("r1{s}ACGTACGTAA{s}", 3, "a trailing "),                 # a trailing delimiter
    ("r1", 1, ""),                                             # fewer: used to read as an empty sequence
])
def test_row_width_differs_from_header(tmp_path, sep, ext, row, fields, note):
    path = tmp_path / f"t.{ext}"
    path.write_text(f"id{sep}sequence\nr0{sep}ACGT\n" + row.format(s=sep) + "\n")
    with pytest.raises(InputError) as err:
        read_records(path)
    msg = str(err.value)
    assert str(path) in msg and "line 3" in msg and f"{fields} field" in msg and "header (line 1) has 2" in msg
    assert note in msg and "as many fields as the header" in msg


def test_quoted_delimiter_is_one_field(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text('id,sequence\n"r1,with comma",ACGT\n')
    assert read_records(path)["id"].tolist() == ["r1,with comma"]


@pytest.mark.parametrize("header", ["id,sequence,sequence", "sequence,label,label"])
def test_repeated_column_is_refused(tmp_path, header):
    path = tmp_path / "dup.csv"
    path.write_text(header + "\nr1,ACGT,GG\n")
    with pytest.raises(InputError) as err:
        read_records(path)
    repeated = header.split(",")[-1]
    assert str(path) in str(err.value) and f"{repeated!r} twice" in str(err.value) and "line 1" in str(err.value)


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("name, content", [
    ("bom.fa", BOM + b">r1\nACGT\n>r2\nGG\n"),
    ("bom.csv", BOM + b"id,sequence\nr1,ACGT\nr2,GG\n"),
    ("bom.tsv", BOM + b"id\tsequence\r\nr1\tACGT\r\nr2\tGG\r\n"),
    ("cr.fa", b">r1\rAC\rGT\r>r2\rGG\r"),
    ("cr.csv", b"id,sequence\rr1,ACGT\rr2,GG\r"),
])
def test_byte_order_mark_and_cr_line_endings(tmp_path, name, content, compress):
    path = tmp_path / (name + (".gz" if compress else ""))
    path.write_bytes(gzip.compress(content) if compress else content)
    frame = read_records(path)
    assert frame["id"].tolist() == ["r1", "r2"] and frame["sequence"].tolist() == ["ACGT", "GG"]


def test_cr_only_bad_record_names_its_line(tmp_path):
    path = tmp_path / "cr.fa"
    path.write_bytes(b">r1\rACGT\r>r2\rAC!T\r")
    with pytest.raises(InputError) as err:
        read_records(path)
    assert "r2" in str(err.value) and "line 3" in str(err.value)


def test_non_utf8_line_is_named(tmp_path):
    path = tmp_path / "bin.fa"
    path.write_bytes(b">r1\nACGT\n>r2\nAC\xff\xfeGT\n")
    with pytest.raises(InputError) as err:
        read_records(path)
    assert f"{path}, line 4: bytes that are not UTF-8" in str(err.value)


def test_a_quote_left_open_is_named(tmp_path):
    path = tmp_path / "open.csv"
    path.write_text('id,sequence\nr0,AC\n"r1,ACGT\nr2,GG\n')
    with pytest.raises(InputError) as err:
        read_records(path)
    assert f"{path}, lines 3-4 (one row: is a quote left open on line 3?)" in str(err.value)
    assert "1 field where the header (line 1) has 2" in str(err.value)
