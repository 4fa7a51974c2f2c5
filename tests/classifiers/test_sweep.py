"""`classify sweep` and the layer-weighted probe's run, on real stores holding planted
features: one row per layer and pooling on the same split, the best chosen on validation and
never on test, one error for missing layers, learned layer weights reported and reloaded."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import PLANTED_D as D, planted_task, write_feature_store
from classifiers.metrics import SCALAR_METRICS
from classifiers.runs import (compare_runs, evaluate_run, fit_run, predict_run, read_run,
                              sweep_run)
from embedcache.errors import InputError, StoreError


@pytest.fixture(scope="module")
def split_signal(tmp_path_factory):
    """Three layers, two poolings, and a split column. Layer 1 CLS separates the classes on
    train and validation rows only, layer 3 CLS on train and test rows only: a sweep that
    chose by validation picks layer 1, one that peeked at test would pick layer 3."""
    d = tmp_path_factory.mktemp("sweep")
    rng = np.random.default_rng(3)
    n = 300
    split = np.array(["train"] * 180 + ["validation"] * 60 + ["test"] * 60)
    seqs = ["".join(rng.choice(list("ACGT"), rng.integers(30, 60))) for _ in range(n)]
    y = rng.integers(0, 2, n)
    centre = rng.normal(size=D)
    signal = np.outer(2 * y - 1, centre)
    feats = {(layer, pool): rng.normal(size=(n, D)).astype(np.float32)
             for layer in (1, 2, 3) for pool in ("cls", "mean")}
    feats[1, "cls"][split != "test"] += signal[split != "test"].astype(np.float32)
    feats[3, "cls"][split != "validation"] += signal[split != "validation"].astype(np.float32)
    write_feature_store(d / "cache.zarr", seqs, feats, num_layers=3)
    pd.DataFrame({"id": [f"s{i}" for i in range(n)], "sequence": seqs, "label": y,
                  "split": split}).to_csv(d / "task.csv", index=False)
    return d


@pytest.fixture(scope="module")
def sweep_dir(split_signal, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "sweep"
    sweep_run(split_signal / "task.csv", cache=split_signal / "cache.zarr", out=out,
              model="logistic", layers="all", pools=["cls", "mean"], n_bootstrap=100)
    return out


def test_sweep_chooses_on_validation_never_on_test(sweep_dir):
    run = read_run(sweep_dir, kind="sweep")
    table = pd.read_csv(sweep_dir / "sweep.csv")
    assert list(zip(table["layer"], table["pool"])) == [
        (l, p) for l in (1, 2, 3) for p in ("cls", "mean")]
    assert run.best.layer == 1 and run.best.pool == "cls"
    assert run.best.by == "validation mcc"
    # The test set would have chosen layer 3: the choice did not look at it.
    assert table.loc[table["test_mcc"].idxmax(), "layer"] == 3
    assert table.loc[table["val_mcc"].idxmax(), "layer"] == 1
    assert run.best.validation["mcc"] == pytest.approx(table["val_mcc"].max())
    for split in ("val", "test"):
        assert (table[f"{split}_n"] == 60).all()
        for m in SCALAR_METRICS:
            assert (table[f"{split}_{m}_low"] <= table[f"{split}_{m}"] + 1e-12).all(), m
            assert (table[f"{split}_{m}"] <= table[f"{split}_{m}_high"] + 1e-12).all(), m
    assert set(run.baselines) == {"majority", "kmer_logistic"}
    for name in ("mcc_by_layer.png", "auroc_by_layer.png"):
        assert (sweep_dir / "plots" / name).read_bytes().startswith(b"\x89PNG")
    report = (sweep_dir / "report.html").read_text()
    assert "Chosen on validation mcc (never on test): layer 1, cls pooling" in report
    assert "layer 3 · cls · test" in report


def test_sweep_rows_equal_single_fits_on_the_same_split(split_signal, sweep_dir, tmp_path):
    table = pd.read_csv(sweep_dir / "sweep.csv").set_index(["layer", "pool"])
    for layer, pool in [(3, "cls"), (2, "mean")]:
        run = fit_run(split_signal / "task.csv", cache=split_signal / "cache.zarr",
                      out=tmp_path / f"fit{layer}{pool}", model="logistic", layer=layer,
                      pool=pool, n_bootstrap=100)
        for m in SCALAR_METRICS:
            assert table.loc[(layer, pool), f"test_{m}"] == pytest.approx(run.metrics["test"][m])
            assert table.loc[(layer, pool), f"val_{m}"] == pytest.approx(
                run.metrics["validation"][m])
    # predictions.csv holds the chosen probe's scores.
    pred = pd.read_csv(sweep_dir / "predictions.csv")
    assert len(pred) == 300 and set(pred["split"]) == {"train", "validation", "test"}


def test_missing_layers_are_listed_in_one_error_with_the_build_command(tmp_path):
    table, feats = planted_task(n=60)  # layers 1 and 2 mean, layer 2 CLS: no layer 1 CLS
    write_feature_store(tmp_path / "c.zarr", table["sequence"], feats, num_layers=3)
    table.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(StoreError) as info:
        sweep_run(tmp_path / "t.csv", cache=tmp_path / "c.zarr", out=tmp_path / "s",
                  layers="all", pools=["cls", "mean"])
    message = str(info.value)
    assert "layer 1 cls, layer 3 cls, layer 3 mean" in message
    assert f"EmbeddingCache({str(tmp_path / 'c.zarr')!r}).build({str(tmp_path / 't.csv')!r}" in message
    assert "layers=[1, 3], pools=['cls', 'mean']" in message  # Python advice in Python
    command = info.value.cli_message()  # and a command on the command line
    assert f"embedcache build {tmp_path / 't.csv'}" in command and "--layers 1,3 --pool cls,mean" in command
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("layers, message", [
    ("0-2", "outside the backbone's layers 1-2"), ("two", "not a layer"), ("", "empty")])
def test_bad_layer_specs_are_refused(tmp_path, layers, message):
    table, feats = planted_task(n=60)
    write_feature_store(tmp_path / "c.zarr", table["sequence"], feats)
    table.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(InputError, match=message):
        sweep_run(tmp_path / "t.csv", cache=tmp_path / "c.zarr", out=tmp_path / "s",
                  layers=layers)
    assert not (tmp_path / "s").exists()


def test_layer_weighted_run_reports_reloads_and_predicts(split_signal, tmp_path):
    run = fit_run(split_signal / "task.csv", cache=split_signal / "cache.zarr",
                  out=tmp_path / "lw", model="layer-weighted", layers="1-3", pool="cls",
                  n_bootstrap=50)
    assert run.features.layer == [1, 2, 3]
    weights = run.layer_weights
    assert list(weights) == ["1", "2", "3"]
    assert sum(weights.values()) == pytest.approx(1.0)
    # Layers 1 and 3 carry the training signal, layer 2 none.
    assert weights["2"] < min(weights["1"], weights["3"])
    assert (tmp_path / "lw" / "plots" / "layer_weights.png").read_bytes().startswith(b"\x89PNG")
    assert "Learned layer weights" in (tmp_path / "lw" / "report.html").read_text()
    saved = json.loads((tmp_path / "lw" / "model" / "model.json").read_text())
    assert saved["kind"] == "layer-weighted"

    fitted = pd.read_csv(tmp_path / "lw" / "predictions.csv")
    out = predict_run(tmp_path / "lw", split_signal / "task.csv")
    again = pd.read_csv(out)
    np.testing.assert_allclose(again["score"], fitted["score"], rtol=1e-6)
    evaluation = evaluate_run(tmp_path / "lw", split_signal / "task.csv", n_bootstrap=20)
    assert evaluation.layer_weights == weights
    assert evaluation.metrics["evaluation"]["n"] == 300


def test_compare_takes_sweeps_and_layer_weighted_runs(split_signal, sweep_dir, tmp_path):
    fit_run(split_signal / "task.csv", cache=split_signal / "cache.zarr", out=tmp_path / "lw",
            model="layer-weighted", layers="all", n_bootstrap=50)
    table = compare_runs([sweep_dir, tmp_path / "lw"], out=tmp_path / "cmp")
    assert table["kind"].tolist() == ["sweep", "fit"]
    assert table["layer"].tolist() == [1, "layers 1-3"]
    sweep = pd.read_csv(sweep_dir / "sweep.csv").set_index(["layer", "pool"])
    # A sweep stands in the comparison by the layer it chose on validation, with its test score.
    assert table.loc[0, "mcc"] == pytest.approx(sweep.loc[(1, "cls"), "test_mcc"])
    assert table.loc[0, "mcc_low"] == pytest.approx(sweep.loc[(1, "cls"), "test_mcc_low"])
    assert (tmp_path / "cmp" / "metrics.png").is_file()


def test_layers_belong_to_the_layer_weighted_probe(split_signal, tmp_path):
    with pytest.raises(InputError, match="--layers is for --probe layer-weighted"):
        fit_run(split_signal / "task.csv", cache=split_signal / "cache.zarr",
                out=tmp_path / "r", model="logistic", layers="all")
    with pytest.raises(InputError, match="instead of a sweep"):
        sweep_run(split_signal / "task.csv", cache=split_signal / "cache.zarr",
                  out=tmp_path / "s", model="layer-weighted")
