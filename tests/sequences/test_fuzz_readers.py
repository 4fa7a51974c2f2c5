"""Property-based fuzzing of every sequence reader (issue 18): any bytes in, records or an InputError out.

Each reader is fed arbitrary bytes and mutations of valid files (bytes inserted, deleted,
replaced, lines repeated, delimiters, quotes, line endings, byte-order marks and bytes that
are not UTF-8 dropped in). Every example must either yield well-formed records or raise
:class:`~embedcache.errors.InputError` whose message names the file; any other exception is
a reader bug. Runs are derandomized and use no example database, so CI sees the same
examples every time.

Adding a reader: append a :class:`Fuzzed` to :data:`FUZZED` with valid seed files; the tests
below pick it up (the variant readers, VCF and tables, are read by ``read_variants``).
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from embedcache.errors import InputError
from embedcache.sequences.readers import iter_records
from embedcache.sequences.readers.variants import read_variants

EXAMPLES = 2000
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])
GENOME = b">chr1 test\nACGTACGTTTGGCCAANNACGTAGCTAGCTAGGATC\nACGTTGCA\n>chr2\nacgtnnGGCCTTAA\n"


def _parquet(table: dict) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table(table), sink)
    return sink.getvalue()


@dataclass(frozen=True)
class Fuzzed:
    """A reader under fuzzing: its format name, a file name, valid seed files, and how raw bytes
    become the file (e.g. gzip)."""

    format: str
    filename: str
    seeds: tuple[bytes, ...]
    wrap: Callable[[bytes], bytes] = lambda b: b
    reference: bool = False  # a BED file: read against a genome
    fuzz_reference: bool = False  # the genome is fuzzed, the BED file fixed
    variants: bool = False  # read by read_variants (alleles checked against the genome), not iter_records


FASTA_SEEDS = (
    b">r1 first\nACGTACGT\nacgtnN\n>r2\nGGGG\n",
    b">r1\r\nACGT\r\n\r\n>\r\nTTTT\r\n",
    b"\xef\xbb\xbf>only\nRYKMACGT\n",
)
CSV_SEEDS = (
    b"id,sequence,label,split\nr1,ACGT,1,train\nr2,GGCC,0,test\n",
    b'sequence\n"ACGT"\nacgtn\n',
    b'Name , Sequence ,Label\n"a,b",ACGT,x\n,GG,\n',
)
FUZZED: list[Fuzzed] = [
    Fuzzed("fasta", "in.fa", FASTA_SEEDS),
    Fuzzed("fasta", "in.fa.gz", FASTA_SEEDS, wrap=gzip.compress),
    Fuzzed("csv", "in.csv", CSV_SEEDS),
    Fuzzed("tsv", "in.tsv", tuple(s.replace(b",", b"\t") for s in CSV_SEEDS)),
    Fuzzed("parquet", "in.parquet", (
        _parquet({"id": ["a", "b"], "sequence": ["ACGT", "GGnn"], "label": [1, 0]}),
        _parquet({"Sequence": ["ACGT", "ac"], "split": ["train", None]}),
    )),
    Fuzzed("bed", "in.bed", (
        b"chr1\t0\t10\tr1\t0\t+\nchr2\t2\t8\t.\t0\t-\n",
        b"track name=x\n# comment\nchr1 5 20\n",
    ), reference=True),
    Fuzzed("bed", "genome.fa", (GENOME, GENOME.replace(b"\n", b"\r\n")), reference=True, fuzz_reference=True),
    # Variant files (embedcache.sequences.readers.variants): VCF through pysam, and tables.
    Fuzzed("vcf", "in.vcf", (
        b"##fileformat=VCFv4.2\n##contig=<ID=chr1>\n##INFO=<ID=L,Number=1,Type=String,Description=\"l\">\n"
        b"#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\nchr1\t3\tv1\tG\tA,T\t.\t.\tL=1\n"
        b"chr1\t5\t.\tACG\tA\t.\t.\t.\nchr1\t9\t.\tA\t<DEL>\t.\t.\t.\n",
    ), reference=True, variants=True),
    Fuzzed("csv", "variants.csv", (b"chrom,pos,ref,alt,id,label\nchr1,3,G,A,v1,1\nchr2,1,a,\"C,G\",,\n",),
           reference=True, variants=True),
]
FIXED_BED = b"chr1\t2\t12\tr1\t0\t-\nchr2\t0\t4\n"

# Bytes that readers treat specially, so that mutations reach the interesting branches.
SPECIAL = [b",", b"\t", b'"', b"\n", b"\r", b"\r\n", b">", b"#", b" ", b"\x00", b"\xef\xbb\xbf", b"\xff",
           b"\xc3", b"N", b"-", b"+", b".", b"0", b"-1", b"99999999999999999999", b"sequence", b"id", b"chr1",
           b"\x1f\x8b", b"PAR1", b"track", b"\\"]


@st.composite
def mutated(draw, seeds: tuple[bytes, ...]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["insert", "delete", "replace", "repeat", "truncate"]))
        at = draw(st.integers(0, len(data)))
        if op == "insert":
            data[at:at] = draw(st.sampled_from(SPECIAL) | st.binary(max_size=8))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 8))]
        elif op == "replace" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif op == "repeat":
            lines = bytes(data).split(b"\n")
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i])
            data = bytearray(b"\n".join(lines))
        elif op == "truncate":
            del data[at:]
    return bytes(data)


# Structured tables: headers naming the roles (in any case, repeated, padded), fields holding
# delimiters, quotes and line breaks, rows of any width.
NAMES = st.sampled_from(["sequence", "Sequence ", "SEQUENCE", "id", "name", "label", "split", "x", "", "id "])
FIELDS = st.sampled_from(["ACGT", "acgtn", "NNNN", "RYKM", "", " ", "NA", "nan", "1", "0.5", "-3", "train",
                          '"', '""', ",", "\t", "\n", "\r", "A,C", '"AC"', "\ufeff", "é", "\x00"])


@st.composite
def tables(draw, sep: str) -> bytes:
    header = draw(st.lists(NAMES, min_size=1, max_size=4))
    width = len(header)
    rows = draw(st.lists(st.lists(FIELDS, min_size=max(0, width - 1), max_size=width + 1), max_size=5))
    quote = draw(st.booleans())

    def line(fields):
        return sep.join(f'"{f}"' if quote else f for f in fields)

    return ("\n".join(line(r) for r in [header, *rows]) + draw(st.sampled_from(["", "\n", "\r\n"]))).encode()


COLUMN_TYPES = {
    "string": (pa.string(), st.one_of(st.none(), st.sampled_from(["ACGT", "acgtn", "", " ", "X", "RY"]))),
    "large_string": (pa.large_string(), st.one_of(st.none(), st.sampled_from(["ACGT", "GG"]))),
    "int": (pa.int64(), st.one_of(st.none(), st.integers(-5, 5))),
    "float": (pa.float64(), st.one_of(st.none(), st.floats(allow_nan=True))),
    "binary": (pa.binary(), st.one_of(st.none(), st.binary(max_size=4))),
    "bool": (pa.bool_(), st.one_of(st.none(), st.booleans())),
    "list": (pa.list_(pa.string()), st.one_of(st.none(), st.lists(st.sampled_from(["A", "C"]), max_size=2))),
}


@st.composite
def parquet_tables(draw) -> bytes:
    n_rows = draw(st.integers(0, 4))
    columns = draw(st.lists(st.tuples(NAMES, st.sampled_from(sorted(COLUMN_TYPES)), st.booleans()), min_size=1, max_size=4))
    arrays, names = [], []
    for name, kind, dictionary in columns:
        typ, values = COLUMN_TYPES[kind]
        array = pa.array(draw(st.lists(values, min_size=n_rows, max_size=n_rows)), type=typ)
        if dictionary and kind in ("string", "int"):
            array = array.dictionary_encode()
        arrays.append(array)
        names.append(name)
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(arrays, names=names), sink)
    return sink.getvalue()


STRUCTURED = {"csv": tables(","), "tsv": tables("\t"), "parquet": parquet_tables()}


@functools.lru_cache(maxsize=None)  # one strategy per reader: building it per example costs more than reading
def _inputs(reader: Fuzzed):
    # Raw bytes are wrapped (e.g. gzipped) so they reach the parser; mutated ones also as they
    # are, so that a damaged container (gzip, Parquet footer) is fuzzed too.
    wrapped = (st.binary(max_size=300) | mutated(reader.seeds)).map(reader.wrap)
    damaged = mutated(tuple(reader.wrap(s) for s in reader.seeds))
    if reader.format in STRUCTURED:
        return wrapped | damaged | STRUCTURED[reader.format] | STRUCTURED[reader.format]
    return wrapped | damaged


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fuzz")
    (d / "genome.fa").write_bytes(GENOME)
    return d


def check_reader(reader: Fuzzed, path: Path, content: bytes, reference: Path | None, named: Path | None = None,
                 note: Callable[[str], None] = event) -> None:
    """The property: well-formed records, or an InputError naming the file (``named``, by
    default ``path``); nothing else."""
    path.write_bytes(content)
    try:
        if reader.variants:
            alleles = read_variants(path, reference).table
            note("records")
            assert all(isinstance(a, str) and a and set(a) <= set("ACGTN") for a in [*alleles["ref"], *alleles["alt"]])
            return
        frames = list(iter_records(path, format=reader.format, reference=reference, chunk_size=2))
    except InputError as exc:
        assert (named or path).name in str(exc), f"the message does not name the file: {exc}"
        note(f"{type(exc).__name__}: {re.sub(r'[^a-z ]', '', str(exc).replace(str(path), ''))[:30]}")
        return
    note("records")
    assert frames
    for frame in frames:
        assert {"id", "sequence", "record"} <= set(frame.columns)
        assert all(isinstance(s, str) and s and set(s) <= set("ACGTN") for s in frame["sequence"])
        assert all(isinstance(i, str) and i for i in frame["id"])
    if reader.format in ("csv", "tsv"):
        # No silent misreading: the sequences are the 'sequence' fields as the csv module reads them.
        expected = _csv_sequences(content, "," if reader.format == "csv" else "\t")
        assert [s for f in frames for s in f["sequence"]] == expected


def _csv_sequences(content: bytes, sep: str) -> list[str]:
    from embedcache.sequences.alphabet import normalize

    text = content.decode("utf-8-sig")
    rows = [r for r in csv.reader(io.StringIO(text, newline=None), delimiter=sep)
            if r and not (len(r) == 1 and not r[0].strip(" \t\r\n".replace(sep, "")))]
    column = [c.strip().lower() for c in rows[0]].index("sequence")
    return [normalize(r[column].strip()) for r in rows[1:]]


@pytest.mark.parametrize("reader", FUZZED, ids=[f"{r.format}:{r.filename}" for r in FUZZED])
@SETTINGS
@given(data=st.data())
def test_reader_yields_records_or_input_error(reader, workdir, data):
    content = data.draw(_inputs(reader), label="content")
    if reader.fuzz_reference:
        genome = _fresh_genome(workdir, reader, content)
        check_reader(reader, workdir / "fixed.bed", FIXED_BED, genome, named=genome)
    else:
        check_reader(reader, workdir / reader.filename, content, workdir / "genome.fa" if reader.reference else None)


def _fresh_genome(workdir: Path, reader: Fuzzed, content: bytes) -> Path:
    """Write a fuzzed genome beside no index: pyfaidx trusts an index newer than its genome, and
    one left by the previous example may well be (file times are coarse)."""
    genome = workdir / "fuzzed" / reader.filename
    genome.parent.mkdir(exist_ok=True)
    for index in [*genome.parent.glob("*.fai"), *genome.parent.glob("*.gzi")]:
        index.unlink()
    genome.write_bytes(content)
    (workdir / "fixed.bed").write_bytes(FIXED_BED)
    return genome


def test_seeds_are_valid(workdir):
    """The seeds read without error, so mutations start from files that reach the records."""
    for reader in FUZZED:
        for seed in reader.seeds:
            if reader.fuzz_reference:
                path, reference = workdir / "fixed.bed", _fresh_genome(workdir, reader, reader.wrap(seed))
            else:
                path, reference = workdir / reader.filename, workdir / "genome.fa" if reader.reference else None
                path.write_bytes(reader.wrap(seed))
            if reader.variants:
                assert len(read_variants(path, reference)) >= 1
            else:
                assert sum(len(f) for f in iter_records(path, format=reader.format, reference=reference)) >= 1


def _nested_id_parquet() -> bytes:
    return _parquet({"id": pa.array([["a"], ["b"]], type=pa.list_(pa.string())), "sequence": ["ACGT", "GG"]})


def _non_utf8_name_parquet() -> bytes:
    raw = _parquet({"sequence": ["ACGT"], "idxx": ["a"]})
    return raw.replace(b"idxx", b"id\xff\xfe")  # the column name, in the footer, no longer UTF-8


# What the fuzzer found, kept as plain examples: each failed with another exception before.
FOUND = [
    pytest.param(FUZZED[4], _non_utf8_name_parquet(), id="parquet column name not UTF-8"),
    pytest.param(FUZZED[4], _nested_id_parquet(), id="parquet list-typed id"),
    pytest.param(FUZZED[6], b">\x00\n\n\x00", id="genome pyfaidx cannot index"),
    pytest.param(FUZZED[6], b">chr1\n\xe1\x80\x80" + b"\x00" * 11, id="genome region splitting a UTF-8 character"),
    pytest.param(FUZZED[7], b"##fileformat=VCF\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                 b"chr1\t3\t\tG\tA\t\t\t\t\t\t\t\t\n\t\t15AAA\tchr\x80\t\t<\t\t", id="VCF field not UTF-8"),
    pytest.param(FUZZED[7], b"##fileformat=VCF\n##INFO=<ID==N\x80\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO",
                 id="VCF header not UTF-8"),
]


@pytest.mark.parametrize("reader, content", FOUND)
def test_what_the_fuzzer_found(reader, content, workdir):
    if reader.fuzz_reference:
        genome = _fresh_genome(workdir, reader, content)
        check_reader(reader, workdir / "fixed.bed", FIXED_BED, genome, named=genome, note=print)
    else:
        check_reader(reader, workdir / reader.filename, content, workdir / "genome.fa" if reader.reference else None,
                     note=print)
