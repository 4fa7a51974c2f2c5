"""File formats from file names, decided in one place, and the writers and readers that ask it."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from embedcache.errors import InputError
from embedcache.export import check_export_path
from embedcache.sequences.readers import detect_format
from embedcache.sequences.readers.variants import variant_format
from embedcache.util.formats import TABLE_FORMATS, FileFormat, file_format, format_stem
from embedcache.variants.score import write_scores


@pytest.mark.parametrize("name, expected", [
    ("scores.tsv", FileFormat("tsv", None, "scores")),
    ("Scores.TSV.GZ", FileFormat("tsv", ".gz", "Scores")),
    ("calls.txt.bgz", FileFormat("tsv", ".bgz", "calls")),
    ("a.b.csv", FileFormat("csv", None, "a.b")),
    ("x.pq", FileFormat("parquet", None, "x")),
    ("x.bed", None), ("csv", None), (".csv", None), ("x.gz", None), ("x.csv.zip", None),
])
def test_a_name_says_its_format_and_compression(name, expected):
    assert file_format(name, TABLE_FORMATS) == expected


def test_the_stem_drops_format_and_compression_only():
    assert format_stem("dir/tasks.csv.gz", TABLE_FORMATS) == "tasks"
    assert format_stem("tasks.bed", TABLE_FORMATS) == "tasks.bed"  # not one of the formats


def test_each_caller_takes_only_its_formats():
    assert detect_format("r.fa.gz") == "fasta" and detect_format("r.CSV") == "csv"
    for name in ("r.txt", "r.parquet.gz", "r.csv.bgz"):  # tables, but not the readers'
        with pytest.raises(InputError, match="cannot tell the format"):
            detect_format(name)
    assert variant_format(Path("v.vcf.bgz")) == "vcf"
    assert variant_format(Path("v.txt")) == "tsv"
    assert check_export_path(Path("x.HDF5")) == "h5"
    with pytest.raises(InputError, match="export writes .npz, .parquet, .h5, .hdf5"):
        check_export_path(Path("x.parquet.gz"))


@pytest.mark.parametrize("name", ["s.csv", "s.tsv", "s.txt", "s.csv.gz", "s.tsv.gz", "s.parquet"])
def test_scores_are_written_in_the_format_their_name_says(tmp_path, name):
    table = pd.DataFrame({"id": ["a", "b"], "llr": [-1.5, 0.25]})
    path = write_scores(table, tmp_path / name)
    raw = path.read_bytes()
    # A .gz name holds gzip (the writer once wrote plain text under it).
    assert raw.startswith(b"\x1f\x8b") == name.endswith(".gz")
    if name.endswith(".parquet"):
        back = pd.read_parquet(path)
    else:
        text = gzip.decompress(raw).decode() if name.endswith(".gz") else raw.decode()
        assert text.splitlines()[0] == ("id,llr" if ".csv" in name else "id\tllr")
        back = pd.read_csv(path, sep="," if ".csv" in name else "\t")
    pd.testing.assert_frame_equal(back, table)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary left


@pytest.mark.parametrize("name", ["s.bed", "s.parquet.gz", "s.csv.bgz"])
def test_a_score_file_of_another_format_is_refused_before_writing(tmp_path, name):
    with pytest.raises(InputError, match="give a .parquet, .csv or .tsv file"):
        write_scores(pd.DataFrame({"a": [1]}), tmp_path / name)
    assert not any(tmp_path.iterdir())
