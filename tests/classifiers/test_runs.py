"""The classify workflow on a real store holding planted features: run directory, metrics
recomputed from predictions.csv, baselines, splits, overlap, cv, evaluate, predict, compare,
and the errors a user can cause."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.preprocessing import label_binarize

from conftest import planted_task, write_feature_store
from classifiers.metrics import SCALAR_METRICS
from classifiers.runs import (RunVersionError, compare_runs, cross_validate, evaluate_run,
                              fit_run, predict_run, read_run)
from embedcache.errors import InputError, StoreError

@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    d = tmp_path_factory.mktemp("binary")
    table, feats = planted_task()
    write_feature_store(d / "cache.zarr", table["sequence"], feats)
    table.to_csv(d / "task.csv", index=False)
    return d


@pytest.fixture(scope="module")
def multiclass(tmp_path_factory):
    d = tmp_path_factory.mktemp("multi")
    table, feats = planted_task(classes=("acceptor", "donor", "none"), seed=1)
    write_feature_store(d / "cache.zarr", table["sequence"], feats)
    table.to_csv(d / "task.csv", index=False)
    return d


@pytest.fixture(scope="module")
def logistic_run(binary, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "logistic"
    fit_run(binary / "task.csv", cache=binary / "cache.zarr", out=out, model="logistic",
            layer=2, n_bootstrap=200, command="classify fit --probe logistic ...")
    return out


def recomputed(pred: pd.DataFrame, classes: list[str]) -> dict:
    """scikit-learn's metrics from predictions.csv alone."""
    y, p = pred["label"].astype(str), pred["prediction"].astype(str)
    if len(classes) == 2:
        pos = y == classes[1]
        score = pred["score"]
        return {"mcc": skm.matthews_corrcoef(y, p), "accuracy": skm.accuracy_score(y, p),
                "f1": skm.f1_score(y, p, pos_label=classes[1]),
                "auroc": skm.roc_auc_score(pos, score),
                "auprc": skm.average_precision_score(pos, score),
                "confusion_matrix": skm.confusion_matrix(y, p, labels=classes).tolist()}
    proba = pred[[f"score_{c}" for c in classes]].to_numpy()
    return {"mcc": skm.matthews_corrcoef(y, p), "accuracy": skm.accuracy_score(y, p),
            "f1": skm.f1_score(y, p, average="macro"),
            "auroc": skm.roc_auc_score(y, proba, multi_class="ovr", labels=classes),
            "auprc": skm.average_precision_score(label_binarize(y, classes=classes), proba),
            "confusion_matrix": skm.confusion_matrix(y, p, labels=classes).tolist()}


def assert_metrics_match_predictions(run_dir: Path, splits=("train", "validation", "test")):
    run = json.loads((run_dir / "metrics.json").read_text())
    pred = pd.read_csv(run_dir / "predictions.csv")
    classes = run["task"]["classes"]
    for split in splits:
        expected = recomputed(pred[pred["split"] == split], classes)
        got = run["metrics"][split]
        assert got["confusion_matrix"] == expected.pop("confusion_matrix"), split
        for name, value in expected.items():
            assert got[name] == pytest.approx(value, abs=1e-9), (split, name)
        assert got["n"] == int((pred["split"] == split).sum())
    return run, pred


def test_fit_writes_the_run_directory(logistic_run):
    files = {p.relative_to(logistic_run).as_posix() for p in logistic_run.rglob("*") if p.is_file()}
    assert {"metrics.json", "predictions.csv", "report.html", "train_sequences.sha256",
            "model/model.json", "plots/roc.png", "plots/precision_recall.png",
            "plots/confusion_matrix.png"} <= files
    assert not any(f.endswith((".pkl", ".pickle", ".joblib")) for f in files)
    for png in logistic_run.glob("plots/*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pred = pd.read_csv(logistic_run / "predictions.csv")
    assert list(pred.columns) == ["id", "split", "label", "score", "prediction"]
    assert pred["id"].tolist() == [f"seq{i}" for i in range(240)]  # input order


def test_fit_metrics_equal_sklearn_recomputed_from_predictions(logistic_run):
    run, pred = assert_metrics_match_predictions(logistic_run)
    # Layer 2 CLS carries the label: the probe must have learned it.
    assert run["metrics"]["test"]["mcc"] > 0.8
    ci = run["intervals"]["test"]
    for name in SCALAR_METRICS:
        low, high = ci[name]
        assert low <= run["metrics"]["test"][name] <= high


def test_fit_reports_baselines_on_the_same_split_and_provenance(logistic_run, binary):
    run = read_run(logistic_run, kind="fit")
    assert set(run.baselines) == {"majority", "kmer_logistic"}
    majority = run.baselines["majority"]["metrics"]
    assert majority["test"]["auroc"] == 0.5 and majority["test"]["mcc"] == 0.0
    for split in ("train", "validation", "test"):
        assert majority[split]["n"] == run.metrics[split]["n"]
    features = run.features
    assert features.layer == 2 and features.pool == "mean"  # the default pooling
    assert features.store == str((binary / "cache.zarr").resolve())
    assert features.backbone["name"] == "planted" and features.backbone["key"]
    data = run.task.files["data"]
    import hashlib
    assert data["sha256"] == hashlib.sha256((binary / "task.csv").read_bytes()).hexdigest()
    prov = run.provenance
    assert prov.command == "classify fit --probe logistic ..."
    assert {"embedcache", "scikit-learn", "numpy", "zarr", "xgboost"} <= set(prov.versions)
    # Every package's real version, also where the distribution has another name (xgboost-cpu).
    assert None not in prov.versions.values(), prov.versions
    import xgboost
    assert prov.versions["xgboost"] == xgboost.__version__
    assert run.encoding == {"name": "embedcache-classify-run", "version": 1}
    html = (logistic_run / "report.html").read_text()
    for text in ("kmer_logistic", "majority", "data:image/png;base64,", data["sha256"],
                 features.backbone["key"], "Provenance"):
        assert text in html
    assert "RANDOM WEIGHTS" not in html


def test_layer_and_pool_choose_the_features(binary, tmp_path):
    run = fit_run(binary / "task.csv", cache=binary / "cache.zarr", out=tmp_path / "r",
                  model="logistic", layer=2, pool="cls", n_bootstrap=50)
    # The CLS pool holds noise only.
    assert abs(run.metrics["test"]["mcc"]) < 0.35


def test_mlp_fit_multiclass_with_loss_curves(multiclass, tmp_path):
    out = tmp_path / "mlp"
    fit_run(multiclass / "task.csv", cache=multiclass / "cache.zarr", out=out, model="mlp",
            layer=2, n_bootstrap=100)
    run, pred = assert_metrics_match_predictions(out)
    assert run["task"]["classes"] == ["acceptor", "donor", "none"]
    assert [c for c in pred.columns if c.startswith("score_")] == [
        "score_acceptor", "score_donor", "score_none"]
    assert (out / "plots" / "loss_curves.png").is_file()
    assert run["model"]["params"]["hidden_layer_sizes"] == [128, 64]
    assert run["model"]["params"]["batch_size"] == 32 and run["model"]["params"]["max_epochs"] == 6
    assert len(run["model"]["history"]["val_loss"]) == run["model"]["n_epochs"]
    assert run["metrics"]["test"]["mcc"] > 0.5  # chance is 0


def test_xgboost_fit(binary, tmp_path):
    run = fit_run(binary / "task.csv", cache=binary / "cache.zarr", out=tmp_path / "x",
                  model="xgboost", layer=2, n_bootstrap=50, params={"n_estimators": 30})
    assert_metrics_match_predictions(tmp_path / "x")
    assert run.model.params["n_estimators"] == 30


def test_split_column_and_duplicates_are_honoured(binary, tmp_path):
    table = pd.read_csv(binary / "task.csv")
    table["split"] = ["train"] * 160 + ["dev"] * 30 + ["test"] * 50
    # Five test rows repeat training sequences (new ids, same content, lower case).
    table.loc[190:194, "sequence"] = table.loc[0:4, "sequence"].str.lower().to_numpy()
    table.loc[190:194, "label"] = table.loc[0:4, "label"].to_numpy()
    # Two more repeat validation (dev) sequences: seen while fitting, so counted too.
    table.loc[195:196, ["sequence", "label"]] = table.loc[160:161, ["sequence", "label"]].to_numpy()
    table.to_csv(tmp_path / "split.csv", index=False)
    run = fit_run(tmp_path / "split.csv", cache=binary / "cache.zarr", out=tmp_path / "a",
                  model="logistic", layer=2, n_bootstrap=50)
    assert run.task.rows == {"train": 160, "validation": 30, "test": 50}
    assert run.duplicates["test_rows_in_train"] == 7
    assert run.duplicates["unique_test_sequences_in_train"] == 7
    assert any("7 test rows" in w for w in run.warnings)
    assert "7 test rows" in (tmp_path / "a" / "report.html").read_text()
    pred = pd.read_csv(tmp_path / "a" / "predictions.csv")
    assert pred["split"].tolist() == ["train"] * 160 + ["validation"] * 30 + ["test"] * 50

    deduped = fit_run(tmp_path / "split.csv", cache=binary / "cache.zarr", out=tmp_path / "b",
                      model="logistic", layer=2, n_bootstrap=50, dedup_test=True)
    assert deduped.task.rows["test"] == 43
    assert deduped.duplicates["dropped_from_test"] == 7
    pred = pd.read_csv(tmp_path / "b" / "predictions.csv")
    assert not set(pred.loc[pred["split"] == "test", "id"]) & {f"seq{i}" for i in range(190, 197)}
    assert_metrics_match_predictions(tmp_path / "b")


def test_separate_test_file(binary, tmp_path):
    table = pd.read_csv(binary / "task.csv")
    table[:180].to_csv(tmp_path / "train.csv", index=False)
    table[180:].to_csv(tmp_path / "test.csv", index=False)
    run = fit_run(tmp_path / "train.csv", test=tmp_path / "test.csv", cache=binary / "cache.zarr",
                  out=tmp_path / "r", model="logistic", layer=2, n_bootstrap=50)
    assert run.task.rows == {"train": 162, "validation": 18, "test": 60}
    assert set(run.task.files) == {"data", "test"}
    pred = pd.read_csv(tmp_path / "r" / "predictions.csv")
    assert pred.loc[pred["split"] == "test", "id"].tolist() == table["id"][180:].tolist()


def test_grouped_split_keeps_groups_apart(binary, tmp_path):
    table = pd.read_csv(binary / "task.csv")
    table["chrom"] = [f"chr{i % 12}" for i in range(len(table))]
    table.to_csv(tmp_path / "grouped.csv", index=False)
    fit_run(tmp_path / "grouped.csv", cache=binary / "cache.zarr", out=tmp_path / "r",
            model="logistic", layer=2, group_by="chrom", n_bootstrap=50)
    pred = pd.read_csv(tmp_path / "r" / "predictions.csv").merge(table[["id", "chrom"]], on="id")
    by_split = pred.groupby("split")["chrom"].apply(set)
    assert not by_split["train"] & by_split["test"]
    assert not by_split["validation"] & by_split["test"]


def test_evaluate_and_predict_reload_the_saved_probe(logistic_run, binary, tmp_path):
    table = pd.read_csv(binary / "task.csv")
    fitted = pd.read_csv(logistic_run / "predictions.csv").set_index("id")
    other = table.sample(40, random_state=0)
    other.to_csv(tmp_path / "other.csv", index=False)
    out = tmp_path / "eval"
    run = evaluate_run(logistic_run, tmp_path / "other.csv", out=out, n_bootstrap=50)
    assert run.kind == "evaluate"
    assert_metrics_match_predictions(out, splits=("evaluation",))
    pred = pd.read_csv(out / "predictions.csv").set_index("id")
    np.testing.assert_allclose(pred["score"], fitted.loc[pred.index, "score"], rtol=1e-6)
    # Every one of these rows comes from the task, so some were training rows: counted.
    n_train = int((fitted.loc[other["id"], "split"] == "train").sum())
    assert run.duplicates["evaluation_rows_in_train"] == n_train > 0

    with open(tmp_path / "new.fa", "w") as fh:
        for _, r in other.iterrows():
            fh.write(f">{r['id']}\n{r['sequence']}\n")
    path = predict_run(logistic_run, tmp_path / "new.fa", out=tmp_path / "new.csv")
    new = pd.read_csv(path).set_index("id")
    assert list(new.columns) == ["score", "prediction"]
    np.testing.assert_allclose(new["score"], fitted.loc[new.index, "score"], rtol=1e-6)
    assert (new["prediction"] == fitted.loc[new.index, "prediction"]).all()
    with pytest.raises(InputError, match="--force"):
        predict_run(logistic_run, tmp_path / "new.fa", out=tmp_path / "new.csv")


def test_cv_reports_mean_and_std_over_folds_and_seeds(binary, tmp_path):
    table = pd.read_csv(binary / "task.csv")
    table["split"] = ["train"] * 200 + ["test"] * 40
    table.to_csv(tmp_path / "cv.csv", index=False)
    run = cross_validate(tmp_path / "cv.csv", cache=binary / "cache.zarr", out=tmp_path / "cv",
                         model="logistic", layer=2, folds=4, seeds=2)
    cv = run.cv
    assert cv.n_rows == 200 and cv.held_out_test_rows == 40
    assert [(f["seed"], f["fold"]) for f in cv.per_fold] == [
        (s, k) for s in (0, 1) for k in (1, 2, 3, 4)]
    mcc = [f["mcc"] for f in cv.per_fold]
    assert cv.summary["mcc"]["mean"] == pytest.approx(np.mean(mcc))
    assert cv.summary["mcc"]["std"] == pytest.approx(np.std(mcc, ddof=1))
    assert set(cv.baseline_summaries) == {"majority", "kmer_logistic"}
    oof = pd.read_csv(tmp_path / "cv" / "predictions.csv")
    assert len(oof) == 400 and set(oof["seed"]) == {0, 1}
    assert list(oof.columns) == ["id", "seed", "fold", "label", "score", "prediction"]
    for (s, k), part in oof.groupby(["seed", "fold"]):
        got = next(f for f in cv.per_fold if f["seed"] == s and f["fold"] == k)
        assert got["auroc"] == pytest.approx(
            skm.roc_auc_score(part["label"] == 1, part["score"]))
    assert "± " in (tmp_path / "cv" / "report.html").read_text()


def test_cv_holds_out_test_rows_without_reading_them(tmp_path):
    table, feats = planted_task(n=120)
    write_feature_store(tmp_path / "c.zarr", table["sequence"], feats)
    held = planted_task(n=20, seed=9)[0].assign(split="test", id=lambda t: "new" + t["id"])
    pd.concat([table.assign(split="train"), held]).to_csv(tmp_path / "t.csv", index=False)
    # The held-out rows are not in the cache: cv neither reads nor needs them.
    run = cross_validate(tmp_path / "t.csv", cache=tmp_path / "c.zarr", out=tmp_path / "cv",
                         model="logistic", folds=3)
    assert (run.cv.n_rows, run.cv.held_out_test_rows, run.task.rows) == (120, 20, {"train": 120})
    assert run.task.split_source == "3-fold cross-validation, stratified"


def test_compare_puts_runs_side_by_side(binary, logistic_run, tmp_path):
    runs = []
    for layer in (1, 2):
        out = tmp_path / f"layer{layer}"
        fit_run(binary / "task.csv", cache=binary / "cache.zarr", out=out, model="logistic",
                layer=layer, n_bootstrap=50)
        runs.append(out)
    cross_validate(binary / "task.csv", cache=binary / "cache.zarr", out=tmp_path / "cv2",
                   model="logistic", layer=2, folds=3)
    runs.append(tmp_path / "cv2")
    table = compare_runs(runs, out=tmp_path / "cmp")
    assert table["layer"].tolist() == [1, 2, 2]
    assert table["name"].tolist() == ["layer1", "layer2", "cv2"]
    assert table["kind"].tolist() == ["fit", "fit", "cv"]
    assert table.loc[1, "mcc"] > table.loc[0, "mcc"]  # the planted signal is in layer 2
    cv = read_run(tmp_path / "cv2").cv.summary["mcc"]
    assert table.loc[2, "mcc"] == cv["mean"]
    assert table.loc[2, "mcc_high"] - table.loc[2, "mcc"] == pytest.approx(cv["std"])
    for name in ("compare.csv", "metrics.png", "mcc_by_layer.png", "auroc_by_layer.png", "roc.png"):
        assert (tmp_path / "cmp" / name).is_file(), name
    assert {"kmer_logistic_mcc", "majority_auroc", "mcc_low", "mcc_high"} <= set(table.columns)


def test_random_weights_are_said_loudly(tmp_path):
    table, feats = planted_task(n=120)
    write_feature_store(tmp_path / "c.zarr", table["sequence"], feats, random_weights=True)
    table.to_csv(tmp_path / "t.csv", index=False)
    run = fit_run(tmp_path / "t.csv", cache=tmp_path / "c.zarr", out=tmp_path / "r",
                  model="logistic", n_bootstrap=20)
    assert run.warnings[0].startswith("RANDOM WEIGHTS")
    assert "RANDOM WEIGHTS" in (tmp_path / "r" / "report.html").read_text()


# --- bad input: clear errors, nothing written --------------------------------------------


def test_existing_output_is_not_overwritten_without_force(binary, logistic_run, tmp_path):
    out = tmp_path / "keep"
    out.mkdir()
    (out / "precious.txt").write_text("mine")
    with pytest.raises(InputError, match="--force"):
        fit_run(binary / "task.csv", cache=binary / "cache.zarr", out=out, model="logistic")
    assert (out / "precious.txt").read_text() == "mine"
    fit_run(binary / "task.csv", cache=binary / "cache.zarr", out=out, model="logistic",
            n_bootstrap=20, force=True)
    assert not (out / "precious.txt").exists() and (out / "metrics.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["keep"]  # no staging left behind


def test_sequences_missing_from_the_cache_say_how_many_and_the_build_command(binary, tmp_path):
    table = pd.read_csv(binary / "task.csv")
    extra = table[:7].copy()
    extra["sequence"] = ["ACGTACGTAC" * (i + 1) for i in range(7)]
    extra["id"] = [f"new{i}" for i in range(7)]
    pd.concat([table, extra]).to_csv(tmp_path / "more.csv", index=False)
    with pytest.raises(StoreError) as err:
        fit_run(tmp_path / "more.csv", cache=binary / "cache.zarr", out=tmp_path / "r",
                model="logistic", layer=2)
    message = err.value.cli_message()  # the command line's advice: a command
    assert "7 of 247 sequences" in message and "first: id new0" in message
    assert f"embedcache build {tmp_path / 'more.csv'}" in message and "--layers 2" in message
    assert f".build({str(tmp_path / 'more.csv')!r}" in str(err.value)  # Python's: a call
    assert not (tmp_path / "r").exists() and list(tmp_path.iterdir()) == [tmp_path / "more.csv"]


def test_layer_missing_from_the_cache(binary, tmp_path):
    with pytest.raises(StoreError, match="layer 1 cls pooling was never built") as err:
        fit_run(binary / "task.csv", cache=binary / "cache.zarr", out=tmp_path / "r", layer=1,
                pool="cls", model="logistic")
    assert "--layers 1 --pool cls" in err.value.cli_message()


@pytest.mark.parametrize("labels, message", [
    (lambda n: [1] * n, "needs at least two classes"),
    (lambda n: [None] * 3 + [0, 1] * ((n - 3) // 2) + [0] * ((n - 3) % 2), "3 rows have no label"),
])
def test_bad_labels_are_refused(binary, tmp_path, labels, message):
    table = pd.read_csv(binary / "task.csv")
    table["label"] = labels(len(table))
    table.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(InputError, match=message):
        fit_run(tmp_path / "bad.csv", cache=binary / "cache.zarr", out=tmp_path / "r",
                model="logistic")
    assert not (tmp_path / "r").exists()


def test_unlabelled_file_is_refused_by_fit(binary, tmp_path):
    table = pd.read_csv(binary / "task.csv").drop(columns="label")
    table.to_csv(tmp_path / "nolabel.csv", index=False)
    with pytest.raises(InputError, match="no label column"):
        fit_run(tmp_path / "nolabel.csv", cache=binary / "cache.zarr", out=tmp_path / "r")


def test_several_backbones_need_a_choice(tmp_path):
    table, feats = planted_task(n=60)
    key_a = write_feature_store(tmp_path / "c.zarr", table["sequence"], feats, name="alpha", seed=1)
    key_b = write_feature_store(tmp_path / "c.zarr", table["sequence"], feats, name="beta", seed=2)
    table.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(InputError) as err:
        fit_run(tmp_path / "t.csv", cache=tmp_path / "c.zarr", out=tmp_path / "r")
    for text in ("alpha", "beta", key_a, key_b, "--model"):
        assert text in str(err.value)
    run = fit_run(tmp_path / "t.csv", cache=tmp_path / "c.zarr", out=tmp_path / "r",
                  backbone="beta", model="logistic", n_bootstrap=20)
    assert run.features.backbone["key"] == key_b


def test_run_directory_of_another_version_is_refused(logistic_run, binary, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(logistic_run, old)
    run = json.loads((old / "metrics.json").read_text())
    run["encoding"]["version"] = 99
    (old / "metrics.json").write_text(json.dumps(run))
    with pytest.raises(RunVersionError, match="version 99"):
        evaluate_run(old, binary / "task.csv")
    with pytest.raises(RunVersionError, match="version 99"):
        predict_run(old, binary / "task.csv")
    assert sorted(p.name for p in old.iterdir()) == sorted(p.name for p in logistic_run.iterdir())
    with pytest.raises(InputError, match="not a classify run directory"):
        read_run(tmp_path)
