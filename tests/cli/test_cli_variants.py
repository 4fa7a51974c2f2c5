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
    metrics = json.loads((tmp_path / "rep" / "metrics.json").read_text())["variant_scores"]["scores"]
    assert str(table.label.dtype) == "Int64" and set(table.label) == {0, 1}  # --positive LOF: 0/1 out
    y = (table.label == 1).to_numpy()
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
    assert again.label.tolist() == [str(v) for v in table.label]  # FUNC_CLASS=LOF is exactly LOF=1


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


def alleles_of(vcf: Path) -> pd.DataFrame:
    """The records of a (single-ALT) VCF as a table, with the INFO field LOF."""
    rows = [x.split("\t") for x in vcf.read_text().splitlines() if not x.startswith("#")]
    return pd.DataFrame({"id": [r[2] for r in rows], "chrom": [r[0] for r in rows], "pos": [int(r[1]) for r in rows],
                         "ref": [r[3] for r in rows], "alt": [r[4] for r in rows],
                         "lof": [dict(kv.split("=") for kv in r[7].split(";"))["LOF"] for r in rows]})


def test_positive_value_labels_score_and_evaluate_as_0_1_and_compare_reads_the_report(tmp_path, monkeypatch,
                                                                                       capsys):
    alleles = alleles_of(subset_vcf(tmp_path / "b.vcf", every=45))
    missing = [2, 9, 30]
    words = alleles.assign(clnsig=np.where(alleles.lof == "1", "pathogenic", "benign")).drop(columns="lof")
    words.loc[missing, "clnsig"] = "."
    numbers = alleles.rename(columns={"lof": "clnsig"})
    numbers.loc[missing, "clnsig"] = "."
    words.to_csv(tmp_path / "words.csv", index=False)
    numbers.to_csv(tmp_path / "numbers.csv", index=False)
    common = ["--reference", GENOME, "--model", TINY, "--flank", 30, "--layers", "2", "--max-tokens", 64,
              "--scores", "llr,cosine", "--label-field", "clnsig", "--quiet"]
    # Text labels without --positive: exit 2 with the way out, before the store is touched.
    code, _, err = run(["variants", tmp_path / "words.csv", *common, "--cache", tmp_path / "c.zarr",
                        "--out", tmp_path / "w.csv", "--report", tmp_path / "rep_w"], monkeypatch, capsys)
    assert code == 2 and "'benign', 'pathogenic' are not 0/1" in err and "--positive benign" in err
    assert not (tmp_path / "c.zarr").exists() and not (tmp_path / "w.csv").exists() and "Traceback" not in err
    # 0/1 labels with a --positive none of them has: a mistake, said so.
    code, _, err = run(["variants", tmp_path / "numbers.csv", *common, "--cache", tmp_path / "c.zarr",
                        "--out", tmp_path / "n.csv", "--positive", "pathogenic"], monkeypatch, capsys)
    assert code == 2 and "no label equals --positive 'pathogenic'" in err and not (tmp_path / "c.zarr").exists()

    code, out_w, err = run(["variants", tmp_path / "words.csv", *common, "--cache", tmp_path / "c.zarr",
                            "--positive", "pathogenic", "--out", tmp_path / "w.csv", "--report", tmp_path / "rep_w"],
                           monkeypatch, capsys)
    assert code == 0, err
    code, out_n, err = run(["variants", tmp_path / "numbers.csv", *common, "--cache", tmp_path / "c.zarr",
                            "--out", tmp_path / "n.parquet", "--report", tmp_path / "rep_n"], monkeypatch, capsys)
    assert code == 0, err
    w, n = pd.read_csv(tmp_path / "w.csv"), pd.read_parquet(tmp_path / "n.parquet")
    # The same 0/1 label column either way (missing where the file said '.').
    expected = alleles.lof.astype(float).where(~alleles.index.isin(missing))
    np.testing.assert_array_equal(w.label, expected)
    assert str(n.label.dtype) == "Int64"
    np.testing.assert_array_equal(n.label.to_numpy(dtype=float, na_value=np.nan), expected)
    # A scores table read back as a variant set (classify's input): its nulls are missing labels.
    from embedcache import EmbeddingCache
    from embedcache.variants.features import variant_table

    again = variant_table(EmbeddingCache(tmp_path / "c.zarr"), tmp_path / "n.parquet", reference=GENOME)
    assert [None if pd.isna(v) else v for v in again.label] == [None if i in missing else v for i, v in enumerate(alleles.lof)]
    rec_w, rec_n = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("rep_w", "rep_n"))
    ok = w.label.notna()
    y = w.label[ok].astype(int)
    for column, sign in (("llr", -1), ("cosine_L2_mean", 1)):
        m_w, m_n = rec_w["variant_scores"]["scores"][column], rec_n["variant_scores"]["scores"][column]
        assert m_w["auroc"] == m_n["auroc"] == pytest.approx(roc_auc_score(y, sign * w[column][ok]), abs=1e-12)
        assert m_w["intervals"]["auroc"] == m_n["intervals"]["auroc"]
    assert rec_w["variant_scores"]["n_missing_label"] == 3 and rec_w["task"]["positive"] == "pathogenic"
    assert rec_n["task"]["positive"] == "1" and rec_w["task"]["rows"] == {"evaluation": len(w) - 3}
    assert f"llr: AUROC {rec_w['variant_scores']['scores']['llr']['auroc']:.3f}" in out_w

    # metrics.json is a classify run record: compare reads it beside other runs.
    from classifiers.runs.record import RunRecord

    record = RunRecord.read(tmp_path / "rep_w")
    assert record.kind == "variants" and record["encoding"]["name"] == "embedcache-classify-run"
    assert record.headline().metrics["auroc"].value == rec_w["variant_scores"]["scores"]["llr"]["auroc"]
    assert [r.label for r in record.score_rows()] == ["-llr", "cosine_L2_mean"]
    assert record.title().endswith("(key " + record["features"]["backbone"]["key"] + "): -llr, cosine_L2_mean — variants")
    assert record["features"]["backbone"]["random_weights"] is False and record["warnings"] == []  # a saved checkpoint
    assert record["features"]["windows"] == {"reference": str(GENOME), "flank": 30, "strands": "forward"}
    assert record["provenance"]["command"].startswith("embedcache variants ")
    from cli import classify_app

    monkeypatch.setattr(sys, "argv", ["classify", "compare", str(tmp_path / "rep_w"), str(tmp_path / "rep_n"),
                                      "--out", str(tmp_path / "cmp")])
    with pytest.raises(SystemExit) as stop:
        classify_app.main()
    assert not stop.value.code, capsys.readouterr().err
    table = pd.read_csv(tmp_path / "cmp" / "compare.csv")
    assert table.kind.tolist() == ["variants", "variants"] and table.model.tolist() == ["zero-shot -llr"] * 2
    assert table.auroc.tolist() == [rec_w["variant_scores"]["scores"]["llr"]["auroc"]] * 2
    assert table.pool.tolist() == ["masked"] * 2 and table.n.tolist() == [len(w) - 3] * 2
    assert (tmp_path / "cmp" / "metrics.png").is_file() and not (tmp_path / "cmp" / "mcc_by_layer.png").exists()


def test_both_strands_from_the_command_line(tmp_path, monkeypatch, capsys):
    from embedcache import EmbeddingCache
    from embedcache.sequences.alphabet import reverse_complement
    from embedcache.variants.features import variant_table

    vcf = subset_vcf(tmp_path / "b.vcf", every=90)
    args = ["variants", vcf, "--reference", GENOME, "--model", TINY, "--cache", tmp_path / "c.zarr", "--flank", 30,
            "--layers", "2", "--pool", "mean,center", "--max-tokens", 64, "--quiet"]
    code, _, err = run([*args, "--strands", "both", "--out", tmp_path / "both.parquet"], monkeypatch, capsys)
    assert code == 0, err
    code, stdout, err = run([*args, "--out", tmp_path / "fwd.parquet"], monkeypatch, capsys)
    assert code == 0 and "0 embedded" in stdout and "0 masked forwards run" in stdout  # a subset of both's
    both, fwd = pd.read_parquet(tmp_path / "both.parquet"), pd.read_parquet(tmp_path / "fwd.parquet")
    assert list(both.columns) == list(fwd.columns) == ["id", "chrom", "pos", "ref", "alt", "flank", "llr",
                                                       "cosine_L2_mean", "l2_L2_mean", "cosine_L2_center",
                                                       "l2_L2_center"]
    assert both[["id", "pos", "ref", "alt", "flank"]].equals(fwd[["id", "pos", "ref", "alt", "flank"]])
    # One value by hand: the mean of the forward and the reverse-complement windows' l2.
    cache = EmbeddingCache(tmp_path / "c.zarr")
    windows = variant_table(cache, vcf, reference=GENOME, flank=30)
    i = 5
    r, a = (cache.embeddings([reverse_complement(windows[c][i])], layer=2, pool="center")[0].astype(np.float64)
            for c in ("ref_window", "alt_window"))
    assert both.l2_L2_center[i] == pytest.approx((fwd.l2_L2_center[i] + np.linalg.norm(a - r)) / 2, rel=1e-6)
    assert not np.allclose(both.llr, fwd.llr)
    # The command line and the library agree.
    lib = cache.score_variants(vcf, reference=GENOME, model=TINY, flank=30, layers=[2], pools=["mean", "center"],
                               strands="both", max_tokens=64, quiet=True)
    pd.testing.assert_frame_equal(lib.reset_index(drop=True), both, check_dtype=False, rtol=1e-12)
