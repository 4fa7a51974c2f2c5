"""End to end on the command line: `embedcache build` with the golden tiny checkpoint, then
`classify fit / evaluate / predict / cv / compare` and `embedcache attention-plot`, and the
exit code 2 with a clear message for bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from conftest import run_cli
from embedcache.attention_plot import attention_figure
from cli import classify_app, embedcache_app
from embedcache import EmbeddingCache
from embedcache.families.nt.tokenizer import tokenizer_for


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_v2_checkpoint):
    """A task of 48 sequences (GC-rich vs AT-rich, so there is something to learn) embedded by
    the golden tiny checkpoint into a real store."""
    d = tmp_path_factory.mktemp("e2e")
    rng = np.random.default_rng(0)
    labels = np.tile([0, 1], 24)
    seqs = ["".join(rng.choice(list("ACGT"), rng.integers(24, 60),
                               p=[0.15, 0.35, 0.35, 0.15] if y else [0.35, 0.15, 0.15, 0.35]))
            for y in labels]
    pd.DataFrame({"id": [f"r{i}" for i in range(48)], "sequence": seqs, "label": labels}).to_csv(
        d / "task.csv", index=False)
    EmbeddingCache(d / "cache.zarr").build(
        d / "task.csv", model=tiny_v2_checkpoint, layers=[1, 2], pools=["cls", "mean"],
        attention=[(1, 4)], max_tokens=32, quiet=True)
    return d


def test_fit_then_evaluate_predict_compare(built, tmp_path, monkeypatch, capsys):
    task, cache = built / "task.csv", built / "cache.zarr"
    code, out, err = run_cli(classify_app, [
        "fit", "--probe", "logistic", "--data", task, "--cache", cache, "--layer", "2",
        "--pool", "mean", "--out", tmp_path / "run", "--bootstrap", "100"], monkeypatch, capsys)
    assert code == 0, err
    assert "baseline: kmer_logistic" in out and "test (n=10)" in out
    run = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert run["provenance"]["command"].startswith("classify fit --probe logistic --data")
    assert run["features"]["backbone"]["name"] == "checkpoint" and run["features"]["layer"] == 2
    pred = pd.read_csv(tmp_path / "run" / "predictions.csv")
    test = pred[pred["split"] == "test"]
    assert run["metrics"]["test"]["auroc"] == pytest.approx(
        skm.roc_auc_score(test["label"] == 1, test["score"]))
    assert run["metrics"]["test"]["mcc"] == pytest.approx(
        skm.matthews_corrcoef(test["label"], test["prediction"]))

    code, out, err = run_cli(classify_app, ["evaluate", tmp_path / "run", "--data", task,
                                            "--bootstrap", "50"], monkeypatch, capsys)
    assert code == 0, err
    assert (tmp_path / "run" / "evaluate-task" / "report.html").is_file()
    assert "evaluation rows have a sequence the probe was trained on" in err
    # Label options are for runs on variant features: a sequence run refuses them (nothing written).
    code, _, err = run_cli(classify_app, ["evaluate", tmp_path / "run", "--data", task, "--positive", "1",
                                          "--out", tmp_path / "ev_pos"], monkeypatch, capsys)
    assert code == 2 and "--positive are for runs fitted on variant features" in err
    assert not (tmp_path / "ev_pos").exists()

    code, out, err = run_cli(classify_app, ["predict", tmp_path / "run", "--data", task,
                                            "--out", tmp_path / "scores.csv"], monkeypatch, capsys)
    assert code == 0, err
    scores = pd.read_csv(tmp_path / "scores.csv")
    np.testing.assert_allclose(scores["score"], pred["score"], rtol=1e-6)

    code, out, err = run_cli(classify_app, ["fit", "--probe", "logistic", "--data", task,
                                            "--cache", cache, "--layer", "1", "--pool", "mean",
                                            "--out", tmp_path / "run1", "--bootstrap", "50"],
                             monkeypatch, capsys)
    assert code == 0, err
    code, out, err = run_cli(classify_app, ["compare", tmp_path / "run", tmp_path / "run1",
                                            "--out", tmp_path / "cmp"], monkeypatch, capsys)
    assert code == 0, err
    assert "run1" in out and (tmp_path / "cmp" / "mcc_by_layer.png").is_file()


def test_mlp_fit_and_cv_on_the_command_line(built, tmp_path, monkeypatch, capsys):
    task, cache = built / "task.csv", built / "cache.zarr"
    code, out, err = run_cli(classify_app, [
        "fit", "--probe", "mlp", "--data", task, "--cache", cache, "--out", tmp_path / "mlp",
        "--bootstrap", "50", "--param", "max_epochs=3"], monkeypatch, capsys)
    assert code == 0, err
    run = json.loads((tmp_path / "mlp" / "metrics.json").read_text())
    assert run["model"]["kind"] == "mlp" and run["model"]["n_epochs"] == 3
    assert run["features"]["layer"] == 2  # the backbone's last layer by default
    assert (tmp_path / "mlp" / "plots" / "loss_curves.png").is_file()

    code, out, err = run_cli(classify_app, [
        "cv", "--data", task, "--cache", cache, "--out", tmp_path / "cv", "--folds", "3",
        "--seeds", "2"], monkeypatch, capsys)
    assert code == 0, err
    assert "±" in out
    assert len(json.loads((tmp_path / "cv" / "metrics.json").read_text())["cv"]["per_fold"]) == 6


def test_sweep_and_layer_weighted_on_the_command_line(built, tmp_path, monkeypatch, capsys):
    task, cache = built / "task.csv", built / "cache.zarr"
    code, out, err = run_cli(classify_app, [
        "sweep", "--probe", "logistic", "--data", task, "--cache", cache, "--layers", "all",
        "--pool", "cls,mean", "--out", tmp_path / "sweep", "--bootstrap", "50"],
        monkeypatch, capsys)
    assert code == 0, err
    table = pd.read_csv(tmp_path / "sweep" / "sweep.csv")
    assert list(zip(table["layer"], table["pool"])) == [
        (1, "cls"), (1, "mean"), (2, "cls"), (2, "mean")]
    best = json.loads((tmp_path / "sweep" / "metrics.json").read_text())["best"]
    assert f"best on validation mcc: layer {best['layer']}, {best['pool']} pooling" in out

    code, out, err = run_cli(classify_app, [
        "fit", "--probe", "layer-weighted", "--layers", "all", "--data", task, "--cache", cache,
        "--out", tmp_path / "lw", "--bootstrap", "50"], monkeypatch, capsys)
    assert code == 0, err
    weights = json.loads((tmp_path / "lw" / "metrics.json").read_text())["layer_weights"]
    assert f"layer 2: weight {weights['2']:.3f}" in out

    code, out, err = run_cli(classify_app, [
        "sweep", "--data", task, "--cache", cache, "--layers", "1-3", "--out", tmp_path / "bad"],
        monkeypatch, capsys)
    assert code == 2 and "outside the backbone's layers 1-2" in err
    assert not (tmp_path / "bad").exists()


def test_attention_plot_labels_the_axes_with_kmer_tokens(built, tmp_path, monkeypatch, capsys):
    table = pd.read_csv(built / "task.csv")
    seq = table.loc[3, "sequence"]
    code, out, err = run_cli(embedcache_app, [
        "attention-plot", "--cache", built / "cache.zarr", "--input", built / "task.csv",
        "--sequence-id", "r3", "--layer", "1", "--head", "4", "--out", tmp_path / "att.png"],
        monkeypatch, capsys)
    assert code == 0, err
    assert (tmp_path / "att.png").read_bytes()[:4] == b"\x89PNG"
    fig = attention_figure(EmbeddingCache(built / "cache.zarr"), seq, layer=1, head=4)
    tokenizer = tokenizer_for("v2", 6)
    expected = tokenizer.token_strings(tokenizer.encode(seq))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == expected
    assert [t.get_text() for t in ax.get_yticklabels()] == expected
    assert expected[0] == "<cls>" and len(expected[1]) == 6
    np.testing.assert_allclose(ax.images[0].get_array(), EmbeddingCache(
        built / "cache.zarr").attention(seq, layer=1, head=4))


def test_attention_plot_needs_a_sequence(built, tmp_path, monkeypatch, capsys):
    code, _, err = run_cli(embedcache_app, [
        "attention-plot", "--cache", built / "cache.zarr", "--layer", "1", "--head", "4",
        "--out", tmp_path / "a.png"], monkeypatch, capsys)
    assert code == 2 and "--sequence" in err and not (tmp_path / "a.png").exists()
    code, _, err = run_cli(embedcache_app, [
        "attention-plot", "--cache", built / "cache.zarr", "--input", built / "task.csv",
        "--sequence-id", "nope", "--layer", "1", "--head", "4", "--out", tmp_path / "a.png"],
        monkeypatch, capsys)
    assert code == 2 and "no record with id 'nope'" in err


def test_bad_input_exits_2_with_the_way_out(built, tmp_path, monkeypatch, capsys):
    cache = built / "cache.zarr"
    new = tmp_path / "new.csv"
    pd.DataFrame({"sequence": ["ACGTACGTAAAT", "GGGCCCAAATTT", "ACACACAC"],
                  "label": [0, 1, 0]}).to_csv(new, index=False)
    code, _, err = run_cli(classify_app, ["fit", "--data", new, "--cache", cache,
                                          "--out", tmp_path / "r"], monkeypatch, capsys)
    assert code == 2
    assert "3 of 3 sequences are not in the cache" in err and f"embedcache build {new}" in err
    assert not (tmp_path / "r").exists()

    one_class = tmp_path / "one.csv"
    pd.read_csv(built / "task.csv").assign(label=1).to_csv(one_class, index=False)
    code, _, err = run_cli(classify_app, ["fit", "--data", one_class, "--cache", cache,
                                          "--out", tmp_path / "r"], monkeypatch, capsys)
    assert code == 2 and "at least two classes" in err

    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("keep")
    code, _, err = run_cli(classify_app, ["fit", "--data", built / "task.csv", "--cache", cache,
                                          "--out", tmp_path / "taken"], monkeypatch, capsys)
    assert code == 2 and "--force" in err and (tmp_path / "taken" / "x").read_text() == "keep"

    code, _, err = run_cli(classify_app, ["evaluate", tmp_path / "taken", "--data",
                                          built / "task.csv"], monkeypatch, capsys)
    assert code == 2 and "not a classify run directory" in err


def test_a_layer_the_backbone_lacks_is_named_not_suggested(built, tmp_path, monkeypatch, capsys):
    task, cache = built / "task.csv", built / "cache.zarr"
    for command in ("fit", "cv"):
        code, _, err = run_cli(classify_app, [
            command, "--probe", "logistic", "--data", task, "--cache", cache, "--layer", "3",
            "--out", tmp_path / command], monkeypatch, capsys)
        assert code == 2 and "--layer 3" in err and "layers 1-2" in err
        assert "embedcache build" not in err  # building layer 3 would fail: the model has 2
        assert not (tmp_path / command).exists()
