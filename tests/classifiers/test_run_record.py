"""The typed run record against the file: runs written by the release before it (a
``RunRecord(dict)`` mutated in place, ``tests/fixtures/runs_v1``) read and write back key for
key, and what this release writes reads back to the same record."""

from __future__ import annotations

import json
import shutil
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from classifiers.runs import compare_runs, fit_run, read_run
from classifiers.runs.record import RunRecord, SweepChoice, SweepRow
from conftest import planted_task, write_feature_store
from embedcache.errors import InputError

OLD = Path(__file__).resolve().parents[1] / "fixtures" / "runs_v1"
KINDS = {"fit": "fit", "mlp": "fit", "lw": "fit", "sweep": "sweep", "cv": "cv", "eval": "evaluate"}


def _old_run(tmp_path: Path, name: str) -> Path:
    run_dir = tmp_path / name
    run_dir.mkdir()
    shutil.copy(OLD / f"{name}.json", run_dir / "metrics.json")
    return run_dir


@pytest.mark.parametrize("name", sorted(KINDS))
def test_a_previous_release_run_reads_and_writes_back_unchanged(tmp_path, name):
    run_dir = _old_run(tmp_path, name)
    written = json.loads((run_dir / "metrics.json").read_text())
    run = read_run(run_dir, kind=KINDS[name])
    assert run.kind == KINDS[name]
    assert run.to_json() == written
    run.write(tmp_path)  # the writer, not only the mapping
    assert json.loads((tmp_path / "metrics.json").read_text()) == written
    # The views read the typed sections: the headline row is the written one.
    if run.kind == "cv":
        n, mcc = written["cv"]["n_rows"], written["cv"]["summary"]["mcc"]["mean"]
    elif run.kind == "sweep":
        best = written["best"]
        row = next(r for r in written["sweep"]["rows"] if (r["layer"], r["pool"]) == (best["layer"], best["pool"]))
        n, mcc = row["metrics"]["test"]["n"], row["metrics"]["test"]["mcc"]
    else:
        test = written["metrics"]["evaluation" if run.kind == "evaluate" else "test"]
        n, mcc = test["n"], test["mcc"]
    assert (run.headline().n, run.headline().metrics["mcc"].value) == (n, mcc)
    assert run.title().endswith(f"— {run.kind}")


def test_the_old_sections_come_back_typed(tmp_path):
    sweep = read_run(_old_run(tmp_path, "sweep"))
    raw = json.loads((OLD / "sweep.json").read_text())
    assert isinstance(sweep.best, SweepChoice) and all(isinstance(r, SweepRow) for r in sweep.sweep.rows)
    assert sweep.chosen_features() == (raw["best"]["layer"], raw["best"]["pool"])
    assert sweep.best_row().metrics == next(r["metrics"] for r in raw["sweep"]["rows"]
                                            if r["layer"] == raw["best"]["layer"])
    weighted = read_run(_old_run(tmp_path, "lw"))
    assert weighted.layers == [1, 2] and set(weighted.layer_weights) == {"1", "2"}
    mlp = read_run(_old_run(tmp_path, "mlp"))
    assert mlp.model.n_epochs == len(mlp.model.history["val_loss"])
    with pytest.raises(FrozenInstanceError):
        mlp.kind = "cv"


def test_compare_reads_previous_release_runs(tmp_path):
    dirs = [_old_run(tmp_path, name) for name in ("fit", "sweep", "cv", "eval")]
    table = compare_runs(dirs)
    assert table["kind"].tolist() == ["fit", "sweep", "cv", "evaluate"]
    fit = json.loads((OLD / "fit.json").read_text())
    assert table.loc[0, "mcc"] == fit["metrics"]["test"]["mcc"]
    cv = json.loads((OLD / "cv.json").read_text())["cv"]["summary"]["mcc"]
    assert table.loc[2, "mcc"] == cv["mean"]


def test_a_record_missing_what_its_kind_needs_is_refused_as_damaged(tmp_path):
    run_dir = _old_run(tmp_path, "fit")
    raw = json.loads((run_dir / "metrics.json").read_text())
    del raw["features"]
    (run_dir / "metrics.json").write_text(json.dumps(raw))
    with pytest.raises(InputError, match="is damaged"):
        read_run(run_dir)


def test_what_a_run_returns_is_what_it_wrote(tmp_path):
    table, feats = planted_task(n=120)
    write_feature_store(tmp_path / "c.zarr", table["sequence"], feats)
    table.to_csv(tmp_path / "t.csv", index=False)
    run = fit_run(tmp_path / "t.csv", cache=tmp_path / "c.zarr", out=tmp_path / "r",
                  model="mlp", n_bootstrap=20, params={"max_epochs": 2})
    assert isinstance(run, RunRecord)
    written = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert run.to_json() == written
    assert read_run(tmp_path / "r") == run
    assert set(written) == {"encoding", "kind", "warnings", "task", "features", "model",
                            "provenance", "metrics", "intervals", "baselines", "duplicates"}
    assert set(written["model"]) == {"kind", "params", "best_epoch", "n_epochs", "history"}
    assert set(written["provenance"]["seconds"]) == {"read", "fit", "evaluate", "write"}
