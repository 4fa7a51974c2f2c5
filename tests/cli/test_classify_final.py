"""`classify --layer final`: NTv3's full-resolution output is probed like any layer, from a
cache built by the real NTv3 path (the tiny golden checkpoint); a cache without it is refused
with the build that adds it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from classifiers.persistence import load_estimator
from cli import classify_app
from conftest import run_cli, short_seqs
from embedcache import EmbeddingCache

GOLDEN = Path(__file__).parents[1] / "golden"


@pytest.fixture(scope="module")
def ntv3_task(tmp_path_factory):
    d = tmp_path_factory.mktemp("ntv3_final")
    seqs = [s[:32] for s in short_seqs(80, seed=3)]  # one padded length: one compilation
    task = pd.DataFrame({"id": [f"r{i}" for i in range(len(seqs))], "sequence": seqs,
                         "label": np.tile([0, 1], len(seqs) // 2)})
    task.to_csv(d / "task.csv", index=False)
    EmbeddingCache(d / "c.zarr").build(seqs, model=GOLDEN / "ntv3_tiny", layers=[2, "final"],
                                       max_tokens=320, quiet=True)
    return d, task


def test_fit_sweep_and_predict_take_the_final_output(ntv3_task, tmp_path, monkeypatch, capsys):
    d, task = ntv3_task
    code, out, err = run_cli(classify_app, [
        "fit", "--data", d / "task.csv", "--cache", d / "c.zarr", "--layer", "final",
        "--out", tmp_path / "fit", "--bootstrap", "20"], monkeypatch, capsys)
    assert code == 0, err
    run = json.loads((tmp_path / "fit" / "metrics.json").read_text())
    assert run["features"]["layer"] == "final" and "layer final, mean pooling" in out
    # The saved probe reads the final output's features (16 wide; layer 2 is 32): its scores
    # on them are the run's.
    X = EmbeddingCache(d / "c.zarr").embeddings(list(task["sequence"]), layer="final")
    assert X.shape[1] == 16
    pred = pd.read_csv(tmp_path / "fit" / "predictions.csv")
    np.testing.assert_allclose(load_estimator(tmp_path / "fit" / "model").predict_proba(X)[:, 1],
                               pred["score"], rtol=1e-6)

    code, out, err = run_cli(classify_app, [
        "predict", tmp_path / "fit", "--data", d / "task.csv", "--out", tmp_path / "p.csv"],
        monkeypatch, capsys)
    assert code == 0, err
    np.testing.assert_allclose(pd.read_csv(tmp_path / "p.csv")["score"], pred["score"], rtol=1e-6)

    code, out, err = run_cli(classify_app, [
        "sweep", "--data", d / "task.csv", "--cache", d / "c.zarr", "--layers", "2,final",
        "--out", tmp_path / "sweep", "--bootstrap", "20"], monkeypatch, capsys)
    assert code == 0, err
    table = pd.read_csv(tmp_path / "sweep" / "sweep.csv")
    assert table["layer"].astype(str).tolist() == ["2", "final"]
    # The sweep's final row is the fit above: same split, seed and features.
    assert table.loc[1, "test_mcc"] == pytest.approx(run["metrics"]["test"]["mcc"])
    assert (tmp_path / "sweep" / "plots" / "mcc_by_layer.png").stat().st_size > 0


def test_the_layer_weighted_probe_does_not_mix_final_with_core_layers(ntv3_task, tmp_path, monkeypatch,
                                                                       capsys):
    d, _ = ntv3_task
    code, _, err = run_cli(classify_app, [
        "fit", "--probe", "layer-weighted", "--layers", "2,final", "--data", d / "task.csv",
        "--cache", d / "c.zarr", "--out", tmp_path / "lw"], monkeypatch, capsys)
    assert code == 2 and "--layers 2, final: the layer-weighted probe mixes layers of one width" in err
    assert "Traceback" not in err and not (tmp_path / "lw").exists()


def test_final_is_refused_where_the_cache_lacks_it(ntv3_task, tmp_path, monkeypatch, capsys):
    d, task = ntv3_task
    cache = tmp_path / "no_final.zarr"
    EmbeddingCache(cache).build(list(task["sequence"]), model=GOLDEN / "ntv3_tiny", layers=[2],
                                max_tokens=320, quiet=True)
    code, _, err = run_cli(classify_app, [
        "fit", "--data", d / "task.csv", "--cache", cache, "--layer", "final",
        "--out", tmp_path / "r"], monkeypatch, capsys)
    assert code == 2 and "holds no final output" in err and "--layers final" in err
    assert "Traceback" not in err and not (tmp_path / "r").exists()
    code, _, err = run_cli(classify_app, [
        "fit", "--data", d / "task.csv", "--cache", cache, "--layer", "last",
        "--out", tmp_path / "r"], monkeypatch, capsys)
    assert code == 2 and "'last' is not a layer" in err and not (tmp_path / "r").exists()
