"""`embedcache variants` on the bundled BRCA1 data: outputs, report numbers, and bad input (exit 2)."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from cli import embedcache_app

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "variants"
GENOME = DATA / "chr17_brca1_grch38.fa.gz"
TINY = ROOT / "tests" / "golden" / "tiny_v2" / "checkpoint"


def run(args, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["embedcache", *map(str, args)])
    monkeypatch.setenv("COLUMNS", "220")
    with pytest.raises(SystemExit) as stop:
        embedcache_app.main()
    out = capsys.readouterr()
    return (stop.value.code or 0), out.out, out.err


def subset_vcf(path: Path, every: int = 60, edit=None) -> Path:
    """Every ``every``-th record of the bundled VCF (its header kept), optionally edited."""
    with gzip.open(DATA / "brca1_findlay2018.vcf.gz", "rt") as fh:
        lines = fh.readlines()
    header = [x for x in lines if x.startswith("#")]
    records = [x for x in lines if not x.startswith("#")][::every]
    if edit:
        records = edit(records)
    path.write_text("".join(header + records))
    return path


def test_scores_report_and_numbers_equal_scikit_learn(tmp_path, monkeypatch, capsys):
    vcf = subset_vcf(tmp_path / "brca1.vcf")
    out = tmp_path / "scores.parquet"
    code, stdout, err = run(["variants", vcf, "--reference", GENOME, "--model", TINY, "--cache", tmp_path / "c.zarr",
                             "--out", out, "--flank", 30, "--layers", "2", "--pool", "mean,center", "--max-tokens", 64,
                             "--label-field", "FUNC_CLASS", "--positive", "LOF", "--report", tmp_path / "rep",
                             "--quiet"], monkeypatch, capsys)
    assert code == 0, err
    table = pd.read_parquet(out)
    assert list(table.columns) == ["id", "chrom", "pos", "ref", "alt", "flank", "llr", "cosine_L2_mean",
                                   "l2_L2_mean", "cosine_L2_center", "l2_L2_center", "label"]
    assert len(table) == 65 and (table.flank == 30).all() and table.llr.notna().all()
    assert f"wrote {out}: 65 alleles scored" in stdout and "masked forwards run" in stdout
    metrics = json.loads((tmp_path / "rep" / "metrics.json").read_text())["evaluation"]["scores"]
    y = (table.label == "LOF").to_numpy()
    assert metrics["llr"]["auroc"] == pytest.approx(roc_auc_score(y, -table.llr), abs=1e-12)
    assert metrics["l2_L2_center"]["auprc"] == pytest.approx(average_precision_score(y, table.l2_L2_center), abs=1e-12)
    assert f"llr: AUROC {metrics['llr']['auroc']:.3f}" in stdout
    assert (tmp_path / "rep" / "report.html").read_text().count("base64,") == 2
    # The same run again: nothing embedded, no masked forward; a TSV this time.
    code, stdout, _ = run(["variants", vcf, "--reference", GENOME, "--model", TINY, "--cache", tmp_path / "c.zarr",
                           "--out", tmp_path / "s.tsv", "--flank", 30, "--layers", "2", "--pool", "mean,center",
                           "--max-tokens", 64, "--label-field", "LOF", "--quiet"], monkeypatch, capsys)
    assert code == 0 and "(0 embedded, 130 from the cache); 0 masked forwards run" in stdout
    again = pd.read_csv(tmp_path / "s.tsv", sep="\t", dtype={"label": str})
    np.testing.assert_allclose(again.llr, table.llr, rtol=1e-12)
    assert again.label.tolist() == ["1" if v == "LOF" else "0" for v in table.label]


def test_ref_mismatch_exits_2_naming_the_record_and_writes_nothing(tmp_path, monkeypatch, capsys):
    def swap(records):
        f = records[3].split("\t")
        f[3] = {"A": "C", "C": "G", "G": "T", "T": "A"}[f[3]]
        records[3] = "\t".join(f)
        return records

    vcf = subset_vcf(tmp_path / "bad.vcf", edit=swap)
    store, out = tmp_path / "c.zarr", tmp_path / "s.parquet"
    code, _, err = run(["variants", vcf, "--reference", GENOME, "--model", TINY, "--cache", store, "--out", out,
                        "--max-tokens", 64, "--quiet"], monkeypatch, capsys)
    assert code == 2 and "bad.vcf line 15 (chr17:" in err and "--ref-mismatch skip" in err
    assert "Traceback" not in err and not store.exists() and not out.exists()
    code, stdout, err = run(["variants", vcf, "--reference", GENOME, "--model", TINY, "--cache", store, "--out", out,
                             "--max-tokens", 64, "--scores", "llr", "--ref-mismatch", "skip", "--quiet"], monkeypatch, capsys)
    assert code == 0 and "1 ref mismatch" in stdout and "REF mismatches skipped: bad.vcf line 15" in stdout


def test_contig_naming_mixup_exits_2_with_the_hint(tmp_path, monkeypatch, capsys):
    table = tmp_path / "v.csv"
    pd.DataFrame({"chrom": ["17"], "pos": [43045705], "ref": ["T"], "alt": ["A"]}).to_csv(table, index=False)
    code, _, err = run(["variants", table, "--reference", GENOME, "--model", TINY, "--cache", tmp_path / "c.zarr",
                        "--out", tmp_path / "s.csv", "--quiet"], monkeypatch, capsys)
    assert code == 2 and "contig '17' is not in the reference" in err and "'chr17'" in err and "prefix" in err
