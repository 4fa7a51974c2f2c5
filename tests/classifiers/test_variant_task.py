"""`classify fit|cv|sweep` on a variant set: windows embedded by `embedcache variants`, features
alt - ref or [ref, alt] read from the cache, grouped by chromosome, missing windows refused."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from classifiers.persistence import load_estimator
from cli import classify_app, embedcache_app
from embedcache import EmbeddingCache

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "golden" / "tiny_v2" / "checkpoint"
NTV3 = ROOT / "tests" / "golden" / "ntv3_tiny"
CHROMS = ("c1", "c2", "c3", "c4", "c5")
OTHER = {"A": "C", "C": "G", "G": "T", "T": "A"}


def run(app, args, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [app.__name__, *map(str, args)])
    monkeypatch.setenv("COLUMNS", "220")
    with pytest.raises(SystemExit) as stop:
        app.main()
    out = capsys.readouterr()
    return (stop.value.code or 0), out.out, out.err


def write_vcf(path: Path, genome: dict, positions: dict) -> Path:
    """SNVs at ``positions`` (chrom -> 1-based positions), INFO CLS=path on every other one."""
    lines = ["##fileformat=VCFv4.2", *(f"##contig=<ID={c},length={len(s)}>" for c, s in genome.items()),
             '##INFO=<ID=CLS,Number=1,Type=String,Description="class">',
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    i = 0
    for chrom, poss in positions.items():
        for pos in poss:
            ref = genome[chrom][pos - 1]
            lines.append(f"{chrom}\t{pos}\t{chrom}_{pos}\t{ref}\t{OTHER[ref]}\t.\t.\t"
                         f"CLS={'path' if i % 2 else 'benign'}")
            i += 1
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """Five contigs, eight SNVs on each, their windows embedded by `embedcache variants` (default flank)."""
    d = tmp_path_factory.mktemp("vtask")
    rng = random.Random(11)
    genome = {c: "".join(rng.choice("ACGT") for _ in range(300)) for c in CHROMS}
    (d / "g.fa").write_text("".join(f">{c}\n{s}\n" for c, s in genome.items()))
    vcf = write_vcf(d / "v.vcf", genome, {c: list(range(20, 300, 35)) for c in CHROMS})
    mp = pytest.MonkeyPatch()  # module scope: the monkeypatch fixture is per test
    mp.setattr(sys, "argv", ["embedcache", "variants", str(vcf), "--reference", str(d / "g.fa"),
                                      "--model", str(TINY), "--cache", str(d / "c.zarr"), "--layers", "2",
                                      "--pool", "mean", "--scores", "cosine", "--max-tokens", "64",
                                      "--label-field", "CLS", "--positive", "path", "--out", str(d / "scores.parquet"),
                                      "--quiet"])
    with pytest.raises(SystemExit) as stop:
        embedcache_app.main()
    mp.undo()
    assert not stop.value.code
    return d, genome, vcf


def fit_args(d, vcf, out, kind="diff", *extra):
    return ["fit", "--probe", "logistic", "--model", TINY, "--data", vcf, "--reference", d / "g.fa",
            "--variant-features", kind, "--label-field", "CLS", "--positive", "path", "--group-by", "chrom",
            "--cache", d / "c.zarr", "--layer", "2", "--bootstrap", "20", "--out", out, *extra]


def test_fit_on_variant_features_groups_by_chromosome_and_records_them(embedded, tmp_path, monkeypatch, capsys):
    d, genome, vcf = embedded
    code, out, err = run(classify_app, fit_args(d, vcf, tmp_path / "diff"), monkeypatch, capsys)
    assert code == 0, err
    assert "layer 2, mean pooling, variant features diff — fit" in out
    assert "variant features" in (tmp_path / "diff" / "report.html").read_text()
    record = json.loads((tmp_path / "diff" / "metrics.json").read_text())
    assert record["features"]["variants"] == {"features": "diff", "reference": str(d / "g.fa"),
                                              "label_field": "CLS", "positive": "path", "flank": None,
                                              "ref_mismatch": "error"}
    assert record["task"]["files"]["data"]["alleles_skipped"]["ref_mismatch"] == 0
    assert record["features"]["layer"] == 2 and record["task"]["files"]["data"]["rows"] == 40
    assert record["task"]["classes"] == ["0", "1"]
    pred = pd.read_csv(tmp_path / "diff" / "predictions.csv")
    assert len(pred) == 40 and set(pred.split) >= {"train", "test"}
    chrom = pred["id"].str.split("_").str[0]
    assert (pred.groupby(chrom)["split"].nunique() == 1).all()  # no chromosome straddles splits
    assert pred.label.tolist() == [i % 2 for i in range(40)]  # path -> 1, in file order
    width = load_estimator(tmp_path / "diff" / "model").n_features_in_

    code, out, err = run(classify_app, fit_args(d, vcf, tmp_path / "concat", "concat"), monkeypatch, capsys)
    assert code == 0, err
    assert load_estimator(tmp_path / "concat" / "model").n_features_in_ == 2 * width == 128
    again = pd.read_csv(tmp_path / "concat" / "predictions.csv")
    assert again.split.tolist() == pred.split.tolist()  # the same grouped split, another feature set


def test_evaluate_and_predict_read_a_variant_set_as_the_fit_did(embedded, tmp_path, monkeypatch, capsys):
    d, genome, vcf = embedded
    code, _, err = run(classify_app, fit_args(d, vcf, tmp_path / "fit", "concat"), monkeypatch, capsys)
    assert code == 0, err
    fitted = pd.read_csv(tmp_path / "fit" / "predictions.csv").set_index("id")
    # The genome moved: --reference names the new place; the rest comes from the fit's record.
    moved = tmp_path / "moved.fa"
    moved.write_bytes((d / "g.fa").read_bytes())
    code, out, err = run(classify_app, ["evaluate", tmp_path / "fit", "--data", vcf, "--reference", moved,
                                        "--bootstrap", "20", "--out", tmp_path / "ev"], monkeypatch, capsys)
    assert code == 0, err
    assert "variant features concat — evaluate" in out
    record = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert record["kind"] == "evaluate" and record["task"]["rows"] == {"evaluation": 40}
    assert record["features"]["variants"] == {"features": "concat", "reference": str(moved), "label_field": "CLS",
                                              "positive": "path", "flank": None, "ref_mismatch": "error"}
    assert record["duplicates"]["evaluation_rows_in_train"] == int((fitted.split == "train").sum())
    ev = pd.read_csv(tmp_path / "ev" / "predictions.csv").set_index("id")
    assert ev.label.tolist() == [i % 2 for i in range(40)]  # CLS=path -> 1, as the fit read it
    # The same alleles, the same features, the same probe: the fit's own scores.
    np.testing.assert_allclose(ev.score, fitted.loc[ev.index, "score"], rtol=1e-6)
    assert record["metrics"]["evaluation"]["n"] == 40
    # predict takes an unlabelled table of the same alleles (windows cut at the recorded default flank).
    table = tmp_path / "alleles.tsv"
    alleles = ev.index.str.split("_", expand=True).to_frame(index=False, name=["chrom", "pos"])
    alleles["pos"] = alleles.pos.astype(int)
    alleles["ref"] = [genome[c][p - 1] for c, p in zip(alleles.chrom, alleles.pos)]
    alleles["alt"] = alleles.ref.map(OTHER)
    alleles["truth"] = np.where(ev.label == 1, "P", "B")  # the same classes, spelled otherwise
    alleles.to_csv(table, sep="\t", index=False)
    # evaluate --label-field/--positive: the new file's labels, where they differ from the fit's.
    code, out, err = run(classify_app, ["evaluate", tmp_path / "fit", "--data", table, "--label-field", "truth",
                                        "--positive", "P", "--bootstrap", "20", "--out", tmp_path / "ev2"],
                         monkeypatch, capsys)
    assert code == 0, err
    again = json.loads((tmp_path / "ev2" / "metrics.json").read_text())
    assert again["features"]["variants"]["label_field"] == "truth" and again["metrics"] == record["metrics"]
    code, out, err = run(classify_app, ["predict", tmp_path / "fit", "--data", table, "--out", tmp_path / "p.csv"],
                         monkeypatch, capsys)
    assert code == 0, err
    pred = pd.read_csv(tmp_path / "p.csv")
    assert list(pred.columns) == ["id", "score", "prediction"]
    assert pred.id.tolist() == [f"{c}:{p}:{r}>{a}" for c, p, r, a, _ in alleles.itertuples(index=False)]
    np.testing.assert_allclose(pred.score, ev.score, rtol=1e-6)
    # Alleles whose windows were never embedded: exit 2 with the command that embeds them, nothing written.
    other = write_vcf(tmp_path / "other.vcf", genome, {"c1": [17, 101]})
    code, out, err = run(classify_app, ["predict", tmp_path / "fit", "--data", other, "--out", tmp_path / "q.csv"],
                         monkeypatch, capsys)
    assert code == 2 and "embedcache variants" in err and "Traceback" not in err and not (tmp_path / "q.csv").exists()
    code, out, err = run(classify_app, ["evaluate", tmp_path / "fit", "--data", table, "--positive", "P",
                                        "--out", tmp_path / "ev3"], monkeypatch, capsys)
    assert code == 2 and "no label column 'CLS'" in err and not (tmp_path / "ev3").exists()


def test_ntv3_fit_on_variant_features_from_the_command_line(embedded, tmp_path, monkeypatch, capsys):
    """NTv3 (one token per base): `embedcache variants` embeds the windows, `classify fit` reads
    alt - ref of exactly those (default flank 31 for 64 bases), and its probe scores them."""
    d, genome, vcf = embedded
    store = tmp_path / "v3.zarr"
    code, _, err = run(embedcache_app, ["variants", vcf, "--reference", d / "g.fa", "--model", NTV3, "--cache", store,
                                        "--layers", "2", "--pool", "mean", "--scores", "cosine", "--max-tokens", 64,
                                        "--out", tmp_path / "s.parquet", "--quiet"], monkeypatch, capsys)
    assert code == 0, err
    code, out, err = run(classify_app, ["fit", "--probe", "logistic", "--model", NTV3, "--data", vcf, "--reference",
                                        d / "g.fa", "--variant-features", "diff", "--label-field", "CLS", "--positive",
                                        "path", "--group-by", "chrom", "--cache", store, "--layer", "2",
                                        "--bootstrap", "20", "--out", tmp_path / "run"], monkeypatch, capsys)
    assert code == 0, err
    assert "layer 2, mean pooling, variant features diff — fit" in out
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["features"]["backbone"]["variant"] == "v3" and record["task"]["files"]["data"]["rows"] == 40
    pred = pd.read_csv(tmp_path / "run" / "predictions.csv")
    assert (pred.groupby(pred["id"].str.split("_").str[0])["split"].nunique() == 1).all()
    # The features by hand: windows of h = min(31, p, n - 1 - p) around each SNV, alt - ref of the cache's rows.
    ref_w, alt_w = [], []
    for vid in pred["id"]:
        chrom, pos = vid.split("_")
        seq, p = genome[chrom], int(pos) - 1
        h = min(31, p, len(seq) - 1 - p)
        ref_w.append(seq[p - h:p + h + 1])
        alt_w.append(seq[p - h:p] + OTHER[seq[p]] + seq[p + 1:p + h + 1])
    cache = EmbeddingCache(store)
    X = (cache.embeddings(alt_w, layer=2, pool="mean").astype(np.float32)
         - cache.embeddings(ref_w, layer=2, pool="mean").astype(np.float32))
    estimator = load_estimator(tmp_path / "run" / "model")
    assert estimator.n_features_in_ == 32  # the tiny NTv3's width
    np.testing.assert_allclose(estimator.predict_proba(X)[:, 1], pred.score, rtol=1e-5, atol=1e-7)


def test_the_features_are_alt_minus_ref_of_the_windows_embedcache_variants_scored(embedded):
    from classifiers.features import TaskSource, resolve_backbone
    from classifiers.runs.task import features, read_tables
    from classifiers.variant_task import VariantTask

    d, genome, vcf = embedded
    store = EmbeddingCache(d / "c.zarr")
    info = resolve_backbone(store)
    task = VariantTask(d / "g.fa", "diff", label_field="CLS", positive="path")
    table, files = read_tables(vcf, None, info, "chrom", variants=task, store=store)
    X = features(store, table, backbone=info, layer=2, pool="mean", source=TaskSource.of([vcf], variants=task))
    scores = pd.read_parquet(d / "scores.parquet")
    assert table.flank.tolist() == scores.flank.tolist() and scores.flank.min() < scores.flank.max()
    r = store.embeddings(table.ref_window.tolist(), layer=2, pool="mean")
    a = store.embeddings(table.alt_window.tolist(), layer=2, pool="mean")
    np.testing.assert_array_equal(X, a - r)
    cosine = 1 - (r * a).sum(1) / np.linalg.norm(r, axis=1) / np.linalg.norm(a, axis=1)
    np.testing.assert_allclose(cosine, scores.cosine_L2_mean, rtol=1e-4, atol=1e-7)


def test_cv_and_sweep_take_a_variant_set(embedded, tmp_path, monkeypatch, capsys):
    d, _, vcf = embedded
    common = ["--model", TINY, "--data", vcf, "--reference", d / "g.fa", "--variant-features", "diff",
              "--label-field", "CLS", "--positive", "path", "--group-by", "chrom", "--cache", d / "c.zarr"]
    code, out, err = run(classify_app, ["cv", *common, "--layer", "2", "--folds", "5", "--out", tmp_path / "cv"],
                         monkeypatch, capsys)
    assert code == 0, err
    record = json.loads((tmp_path / "cv" / "metrics.json").read_text())
    assert record["cv"]["splitter"] == "StratifiedGroupKFold" and record["features"]["variants"]["features"] == "diff"
    oof = pd.read_csv(tmp_path / "cv" / "predictions.csv")
    assert (oof.groupby(oof["id"].str.split("_").str[0])["fold"].nunique() == 1).all()
    code, out, err = run(classify_app, ["sweep", *common, "--layers", "1,2", "--bootstrap", "20",
                                        "--out", tmp_path / "sweep"], monkeypatch, capsys)
    # Layer 1 was never embedded: the sweep refuses before fitting, naming the command that adds it.
    assert code == 2 and "embedcache variants" in err and "--layers 1" in err
    assert not (tmp_path / "sweep").exists()
    code, out, err = run(classify_app, ["sweep", *common, "--layers", "2", "--bootstrap", "20",
                                        "--out", tmp_path / "sweep"], monkeypatch, capsys)
    assert code == 0, err
    best = json.loads((tmp_path / "sweep" / "metrics.json").read_text())["best"]
    # The fit it suggests reads the same variant set the same way.
    refit = best["fit_command"].split()
    assert refit[refit.index("--variant-features") + 1] == "diff" and refit[refit.index("--positive") + 1] == "path"
    assert refit[refit.index("--reference") + 1] == str(d / "g.fa")
    code, out, err = run(classify_app, refit[1:], monkeypatch, capsys)
    assert code == 0, err


def test_windows_not_in_the_cache_exit_2_with_the_command_that_embeds_them(embedded, tmp_path, monkeypatch, capsys):
    d, genome, _ = embedded
    other = write_vcf(tmp_path / "other.vcf", genome, {c: [17, 101] for c in CHROMS})
    code, out, err = run(classify_app, fit_args(d, other, tmp_path / "run"), monkeypatch, capsys)
    assert code == 2
    assert "of the 20 windows of" in err and "are not in the cache" in err and "Traceback" not in err
    assert "20 of the 20 windows of" in err
    command = err.split("Embed them with: ", 1)[1].split()
    assert command[:3] == ["embedcache", "variants", str(other)] and "--max-tokens" in command
    assert not (tmp_path / "run").exists()
    # The command, pasted, embeds exactly the windows the fit reads (the same default flank).
    monkeypatch.chdir(tmp_path)
    code, out, err = run(embedcache_app, [*command[1:], "--quiet"], monkeypatch, capsys)
    assert code == 0, err
    code, out, err = run(classify_app, fit_args(d, other, tmp_path / "run"), monkeypatch, capsys)
    assert code == 0, err
    # A separate variant test file: its alleles are the test split.
    code, out, err = run(classify_app, fit_args(d, d / "v.vcf", tmp_path / "held", "diff", "--test", other),
                         monkeypatch, capsys)
    assert code == 0, err
    pred = pd.read_csv(tmp_path / "held" / "predictions.csv")
    assert pred.loc[pred.split == "test", "id"].tolist() == [f"{c}_{p}" for c in CHROMS for p in (17, 101)]
    # A REF that is not the genome's: exit 2 naming the record, or --ref-mismatch skip counts it.
    lines = (d / "v.vcf").read_text().splitlines()
    fields = lines[-1].split("\t")
    fields[3], fields[4] = fields[4], fields[3]
    bad = tmp_path / "bad.vcf"
    bad.write_text("\n".join(lines[:-1] + ["\t".join(fields)]) + "\n")
    code, out, err = run(classify_app, fit_args(d, bad, tmp_path / "bad"), monkeypatch, capsys)
    assert code == 2 and f"({fields[0]}:{fields[1]})" in err and "--ref-mismatch skip" in err
    code, out, err = run(classify_app, fit_args(d, bad, tmp_path / "bad", "diff", "--ref-mismatch", "skip"),
                         monkeypatch, capsys)
    assert code == 0, err
    record = json.loads((tmp_path / "bad" / "metrics.json").read_text())
    assert record["task"]["files"]["data"]["rows"] == 39
    assert record["task"]["files"]["data"]["alleles_skipped"]["ref_mismatch"] == 1
    # Variant options without --variant-features are refused at the edge.
    code, out, err = run(classify_app, ["fit", "--data", other, "--cache", d / "c.zarr", "--label-field", "CLS",
                                        "--out", tmp_path / "run"], monkeypatch, capsys)
    assert code == 2 and "--variant-features" in err
