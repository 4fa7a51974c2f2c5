"""Faults of the environment end in a message, the way out and a documented exit code."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import typer

from cli.errors import EXIT_ENVIRONMENT, EXIT_INTERRUPTED, environment_message, run_app
from embedcache.errors import InputError

ROOT = Path(__file__).parents[2]


def _cli(*args: str, app: str = "cli.embedcache_app", **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", app, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, **kw)


def _run(app: typer.Typer, capsys, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as stop:
        sys.argv = ["embedcache", *args]
        run_app(app)
    return stop.value.code, capsys.readouterr().err


@pytest.fixture()
def faulty_app():
    app = typer.Typer()

    @app.command()
    def fail(kind: str) -> None:
        if kind == "input":
            raise InputError("r1 in x.fa is empty; remove it.")
        code = {"full": errno.ENOSPC, "ro": errno.EROFS, "file": errno.ENOTDIR, "perm": errno.EACCES}[kind]
        raise OSError(code, os.strerror(code), "/data/cache.zarr")

    @app.command()
    def other() -> None:  # a second command, so that `fail` is addressed by name
        pass

    return app


@pytest.mark.parametrize("kind, words", [
    ("full", "free space"), ("ro", "read-only"), ("file", "a cache is a directory"), ("perm", "permission denied"),
])
def test_os_faults_exit_1_with_the_way_out(faulty_app, capsys, kind, words):
    code, err = _run(faulty_app, capsys, "fail", kind)
    assert code == EXIT_ENVIRONMENT == 1
    assert err.startswith("error: /data/cache.zarr: ") and words in err.lower() and "Traceback" not in err


def test_input_errors_exit_2(faulty_app, capsys):
    code, err = _run(faulty_app, capsys, "fail", "input")
    assert code == 2 and err == "error: r1 in x.fa is empty; remove it.\n"


def test_unknown_errno_still_names_the_path():
    msg = environment_message(OSError(errno.EIO, "Input/output error", "/mnt/x"))
    assert msg.startswith("/mnt/x: Input/output error. ") and "retry" in msg


def test_ctrl_c_exits_130_and_says_a_rerun_resumes(tmp_path):
    # A real process and a real SIGINT: the signal arrives while the command runs.
    script = tmp_path / "slow.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time, typer
        sys.path.insert(0, {str(ROOT)!r})
        from cli.errors import run_app
        app = typer.Typer()
        @app.command()
        def slow() -> None:
            print("started", flush=True)
            time.sleep(60)
        @app.command()
        def other() -> None:
            pass
        run_app(app)
    """))
    proc = subprocess.Popen([sys.executable, str(script), "slow"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "started"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED == 130
    assert "interrupted" in err and "rerun" in err and "Traceback" not in err


def test_regular_file_as_cache(tmp_path):
    not_a_store = tmp_path / "cache.zarr"
    not_a_store.write_text("I am a file\n")
    task = tmp_path / "t.csv"
    pd.DataFrame({"sequence": ["ACGTACGTAA"], "label": [1]}).to_csv(task, index=False)
    for args in (["info", str(not_a_store)], ["verify", str(not_a_store)]):
        done = _cli(*args)
        assert done.returncode == 1, (args, done.stderr)
        assert str(not_a_store) in done.stderr and "directory" in done.stderr and "Traceback" not in done.stderr
    assert not_a_store.read_text() == "I am a file\n"


def test_directory_as_input(tmp_path):
    folder = tmp_path / "inputs"
    folder.mkdir()
    checkpoint = ROOT / "tests" / "golden" / "tiny_v2" / "checkpoint"
    done = _cli("build", str(folder), "--model", str(checkpoint), "--max-tokens", "64",
                "--cache", str(tmp_path / "c.zarr"))
    assert done.returncode == 2 and "is a directory" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "c.zarr").exists()
