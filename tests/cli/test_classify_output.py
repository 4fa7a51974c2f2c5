"""What `classify` prints and draws: tables that fit 120 columns outside a terminal, compare's
report.html and named default directory, baselines on the sweep plots with the legend off
the data, the overfitting note, and defaults and hints that agree across fit, sweep and cv."""

from __future__ import annotations

import json
import re
import shlex

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli, write_feature_store
from classifiers import plots
from cli import classify_app
from cli.tables import Column, render_text

N, D, LAYERS = 240, 16, 12


@pytest.fixture(scope="module")
def deep(tmp_path_factory):
    """A store of 12 layers x 2 poolings; layer 8 mean carries the label, the rest is noise."""
    d = tmp_path_factory.mktemp("deep")
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), rng.integers(30, 60))) for _ in range(N)]
    y = rng.integers(0, 2, N)
    feats = {(l, p): rng.normal(size=(N, D)).astype(np.float32)
             for l in range(1, LAYERS + 1) for p in ("cls", "mean")}
    feats[8, "mean"][:, :4] += 1.2 * (2 * y[:, None] - 1)
    write_feature_store(d / "cache.zarr", seqs, feats, num_layers=LAYERS)
    pd.DataFrame({"id": [f"s{i}" for i in range(N)], "sequence": seqs, "label": y}).to_csv(
        d / "task.csv", index=False)
    return d


def classify(args, monkeypatch, capsys, code=0):
    got, out, err = run_cli(classify_app, args, monkeypatch, capsys)
    assert got == code, err
    return out, err


def data(deep):
    return ["--data", deep / "task.csv", "--cache", deep / "cache.zarr", "--bootstrap", "50"]


def assert_fits(out: str, width: int = 120):
    wide = [line for line in out.splitlines() if len(line) > width and not line.startswith(
        ("note:", "fit it with:", "wrote ", "best on "))]
    assert not wide, wide


def test_tables_outside_a_terminal_fit_120_columns(deep, tmp_path, monkeypatch, capsys):
    out, _ = classify(["sweep", *data(deep), "--out", tmp_path / "s", "--pool", "cls,mean"],
                      monkeypatch, capsys)
    assert_fits(out)
    # One line per (layer, pooling), the choice marked once, the baselines below.
    assert len(re.findall(r"^layer \d+ · (cls|mean) ", out, flags=re.M)) == 2 * LAYERS
    assert out.count("← chosen") == 1 and "baseline: kmer_logistic" in out
    assert "layer 8 · mean" in out.split("← chosen")[0].splitlines()[-1]

    for command, extra in (("fit", []), ("cv", ["--folds", "3"])):
        args = [a for a in data(deep) if command != "cv" or a not in ("--bootstrap", "50")]
        out, _ = classify([command, *args, "--out", tmp_path / command, "--layer", "8", *extra],
                          monkeypatch, capsys)
        assert_fits(out)
        assert "baseline: majority" in out
    assert "±" in out  # cv keeps its spread

    runs = []
    for i, layer in enumerate((8, 3, 11)):
        runs.append(tmp_path / f"a-rather-long-run-directory-name-for-layer-{layer}-number-{i}")
        classify(["fit", *data(deep), "--out", runs[-1], "--layer", str(layer)], monkeypatch,
                  capsys)
    out, _ = classify(["compare", *runs, tmp_path / "cv", tmp_path / "s", "--out",
                       tmp_path / "cmp"], monkeypatch, capsys)
    assert_fits(out)
    table = pd.read_csv(tmp_path / "cmp" / "compare.csv")
    for value in table["mcc"]:
        assert f"{value:.3f}" in out  # numbers are never cut, only names
    assert "0.…" not in out


def test_a_table_too_wide_to_fit_points_to_the_csv():
    columns = [Column(f"column {i}", right=True) for i in range(20)]
    text = render_text("t", columns, [["0.123456789"] * 20], full="runs/x/sweep.csv")
    assert text == "t: too wide for 120 columns; the full table is in runs/x/sweep.csv\n"
    shrunk = render_text("t", [Column("name", shrink=True), Column("v", right=True)],
                         [["n" * 200, ("0.5 [0.1, 0.9]", "0.5")]])
    assert max(map(len, shrunk.splitlines())) <= 120 and "0.5 [0.1, 0.9]" in shrunk
    assert "…" in shrunk
    long_title = render_text("a title " * 30, [Column("v")], [["1"]])
    assert max(map(len, long_title.splitlines())) <= 120 and long_title.count("title") == 30


def test_compare_writes_a_report_beside_its_csv_in_a_named_directory(deep, tmp_path,
                                                                      monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name, model, layer in (("logistic8", "logistic", "8"), ("xgb3", "xgboost", "3")):
        classify(["fit", *data(deep), "--out", tmp_path / "runs" / name, "--layer", layer,
                  "--model", model], monkeypatch, capsys)
    out, _ = classify(["compare", "runs/logistic8", "runs/xgb3"], monkeypatch, capsys)
    target = tmp_path / "compare-logistic8-xgb3"
    assert "wrote compare-logistic8-xgb3 (report: compare-logistic8-xgb3/report.html)" in out
    assert {p.name for p in target.iterdir()} >= {"compare.csv", "metrics.png", "report.html"}
    html = (target / "report.html").read_text()
    assert "logistic8" in html and "xgb3" in html and "data:image/png;base64," in html
    # XGBoost fits the training rows of a noise layer perfectly, and the report says so.
    xgb = json.loads((tmp_path / "runs" / "xgb3" / "metrics.json").read_text())
    assert xgb["metrics"]["train"]["mcc"] == 1.0 > xgb["metrics"]["validation"]["mcc"]
    assert "xgb3: overfitting: the probe is perfect on its" in html
    # A glob over the runs does not pick the comparison up.
    assert not (tmp_path / "runs" / "compare").exists()


def test_overfitting_is_noted_in_the_summary_and_the_report(deep, tmp_path, monkeypatch,
                                                            capsys):
    out, _ = classify(["fit", *data(deep), "--out", tmp_path / "xgb", "--layer", "3",
                       "--probe", "xgboost"], monkeypatch, capsys)
    run = json.loads((tmp_path / "xgb" / "metrics.json").read_text())
    held = run["metrics"]["validation"]["mcc"]
    assert run["metrics"]["train"]["mcc"] == 1.0 > held
    assert (f"note: overfitting: the probe is perfect on its {run['metrics']['train']['n']} "
            f"training rows (train MCC 1.000) but not on validation (MCC {held:.3f})") in out
    assert "<p class='overfit'>overfitting:" in (tmp_path / "xgb" / "report.html").read_text()

    # Perfect on validation as on train (layer 8 carries the label): nothing to note.
    out, _ = classify(["fit", *data(deep), "--out", tmp_path / "lin", "--layer", "8"],
                      monkeypatch, capsys)
    run = json.loads((tmp_path / "lin" / "metrics.json").read_text())
    assert run["metrics"]["train"]["mcc"] == run["metrics"]["validation"]["mcc"] == 1.0
    assert "note: overfitting" not in out
    assert "class='overfit'" not in (tmp_path / "lin" / "report.html").read_text()


def test_sweep_plots_draw_the_baselines_with_the_legend_off_the_data():
    rows = [{"layer": l, "pool": "mean",
             "metrics": {s: {"mcc": 0.1 + 0.01 * l} for s in ("validation", "test")},
             "intervals": {"test": {"mcc": [0.05 * l, 0.2 + 0.01 * l]}, "validation": {}}}
            for l in range(1, 13)]
    fig = plots.sweep_figure(rows, "mcc", best={"layer": 12, "pool": "mean"},
                             baselines={"majority": 0.0, "kmer_logistic": 0.94})
    ax = fig.axes[0]
    labels = {line.get_label(): line for line in ax.get_lines()}
    assert "baseline kmer_logistic: test 0.940" in labels
    assert "baseline majority: test 0.000" in labels
    kmer = labels["baseline kmer_logistic: test 0.940"]
    assert list(kmer.get_ydata()) == [0.94, 0.94]
    low, high = ax.get_ylim()
    assert low <= 0.0 and high >= 0.94  # the reference lines are in view, not clipped
    fig.draw_without_rendering()  # runs the constrained layout
    legend = fig.legends[0].get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1  # beside the axes, covering no data
    assert fig.bbox.contains(legend.x1 - 1, legend.y1 - 1)  # and inside the figure


def test_defaults_agree_and_the_sweep_hint_fits_the_same_probe(deep, tmp_path, monkeypatch,
                                                               capsys):
    monkeypatch.chdir(tmp_path)
    out, _ = classify(["sweep", *data(deep), "--out", "sweep", "--layers", "6-9", "--param",
                       "C=0.5"], monkeypatch, capsys)
    sweep = json.loads((tmp_path / "sweep" / "metrics.json").read_text())
    best = sweep["best"]
    # The defaults: the logistic probe on mean pooling, as in fit and cv.
    assert sweep["model"]["kind"] == "logistic" and sweep["sweep"]["pools"] == ["mean"]
    assert (best["layer"], best["pool"]) == (8, "mean")
    hint = next(line for line in out.splitlines() if line.startswith("fit it with: "))
    command = shlex.split(hint.removeprefix("fit it with: "))
    assert command[:2] == ["classify", "fit"] and command == shlex.split(best["fit_command"])
    assert best["fit_command"] in (tmp_path / "sweep" / "report.html").read_text().replace(
        "&#x27;", "'")

    classify(command[1:], monkeypatch, capsys)  # pasted as printed
    fit = json.loads((tmp_path / "sweep-layer8-mean" / "metrics.json").read_text())
    assert fit["model"]["kind"] == "logistic" and fit["model"]["params"]["C"] == 0.5
    assert (fit["features"]["layer"], fit["features"]["pool"]) == (8, "mean")
    chosen = next(r for r in sweep["sweep"]["rows"] if r["layer"] == 8)
    for split in ("validation", "test"):  # the same probe on the same split: the same scores
        assert fit["metrics"][split]["mcc"] == pytest.approx(chosen["metrics"][split]["mcc"])
        assert fit["metrics"][split]["auroc"] == pytest.approx(chosen["metrics"][split]["auroc"])

    classify(["fit", *data(deep), "--out", "fit"], monkeypatch, capsys)
    classify(["cv", "--data", deep / "task.csv", "--cache", deep / "cache.zarr", "--out", "cv",
              "--folds", "3"], monkeypatch, capsys)
    for name in ("fit", "cv"):
        run = json.loads((tmp_path / name / "metrics.json").read_text())
        assert run["model"]["kind"] == "logistic" and run["features"]["pool"] == "mean"
