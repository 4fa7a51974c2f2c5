"""Ctrl-C in `classify`: a real SIGINT to a real process, delivered at a named point of the
workflow (the CLASSIFY_PAUSE_AT test hook), never at a guessed moment. The message says what
stopped and that no run was written (or that the run was complete); it speaks of no build
rows to resume, and nothing half-written is left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import planted_task, write_feature_store
from classifiers.runs import fit_run

ROOT = Path(__file__).resolve().parents[2]
# The command runs in a fresh interpreter, importing what this one imports.
ENV = {**os.environ,
       "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)]))}


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    d = tmp_path_factory.mktemp("interrupt")
    table, feats = planted_task(n=120)
    write_feature_store(d / "cache.zarr", table["sequence"], feats)
    table.to_csv(d / "task.csv", index=False)
    return d


def interrupted(args, pause_at, *, release: Path | None = None):
    """Run `classify ARGS`, wait until it reports the pause point, send SIGINT; return the
    process's exit code and stderr."""
    env = {**ENV, "CLASSIFY_PAUSE_AT": pause_at}
    if release is not None:
        env["CLASSIFY_PAUSE_UNTIL"] = str(release)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from cli.classify_app import main; main()", *map(str, args)],
        cwd=args[args.index("--out") + 1].parent, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in proc.stderr:  # blocks until the workflow reaches the point
            lines.append(line)
            if line.strip() == f"paused at {pause_at}":
                break
        else:
            raise AssertionError(f"the command never reached {pause_at}: {''.join(lines)}")
        proc.send_signal(signal.SIGINT)
        if release is not None:
            release.touch()
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    return proc.returncode, err


def common(task, out):
    return ["--data", task / "task.csv", "--cache", task / "cache.zarr", "--out", out,
            "--bootstrap", "20"]


def assert_nothing_left(parent: Path, keep=()):
    assert sorted(p.name for p in parent.iterdir()) == sorted(keep)


def test_ctrl_c_in_sweep_says_no_run_was_written(task, tmp_path):
    out = tmp_path / "sweep"
    code, err = interrupted(["sweep", *common(task, out), "--layers", "all"], "sweep:fitting")
    assert code == 130, err
    assert f"interrupted: classify sweep stopped; no run was written to {out}." in err
    assert "rows" not in err and "resume" not in err.replace("Nothing is resumed", "")
    assert "Traceback" not in err
    assert_nothing_left(tmp_path)


def test_ctrl_c_in_cv_says_no_run_was_written(task, tmp_path):
    out = tmp_path / "cv"
    code, err = interrupted(["cv", "--data", task / "task.csv", "--cache", task / "cache.zarr",
                             "--out", out, "--folds", "3"], "cv:fold")
    assert code == 130 and "classify cv stopped; no run was written" in err, err
    assert_nothing_left(tmp_path)


def test_ctrl_c_in_a_forced_fit_keeps_the_run_already_there(task, tmp_path):
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-c", "from cli.classify_app import main; main()", "fit",
         *map(str, common(task, out)), "--layer", "1"], cwd=tmp_path, capture_output=True,
        text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr
    before = (out / "metrics.json").read_text()
    code, err = interrupted(["fit", *common(task, out), "--layer", "2", "--force"], "fit:fitted")
    assert code == 130, err
    assert "no run was written" in err and "(the run already there is unchanged)" in err
    assert (out / "metrics.json").read_text() == before
    assert json.loads(before)["features"]["layer"] == 1
    assert_nothing_left(tmp_path, keep=["run"])


def test_ctrl_c_while_the_run_is_moved_into_place_lands_after_the_move(task, tmp_path):
    # The signal arrives between "finished" and "in place" (where a forced fit swaps two
    # directories): it is held back until the move is done, so the run is whole.
    out = tmp_path / "run"
    (out).mkdir()
    (out / "old.txt").write_text("an earlier run")
    code, err = interrupted(["fit", *common(task, out), "--force"], "run:moving",
                            release=tmp_path / "go")
    assert code == 130, err
    assert f"{out} was complete before it stopped" in err
    assert json.loads((out / "metrics.json").read_text())["kind"] == "fit"
    assert not (out / "old.txt").exists()
    assert_nothing_left(tmp_path, keep=["run", "go"])


def test_ctrl_c_in_predict_writes_no_file(task, tmp_path):
    fit_run(task / "task.csv", cache=task / "cache.zarr", out=tmp_path / "run", n_bootstrap=20)
    target = tmp_path / "scores.csv"
    code, err = interrupted(["predict", tmp_path / "run", "--data", task / "task.csv", "--out",
                             target], "predict:scored")
    assert code == 130, err
    assert f"classify predict stopped; no prediction file was written to {target}." in err
    assert "rows" not in err and "Traceback" not in err
    assert_nothing_left(tmp_path, keep=["run"])
