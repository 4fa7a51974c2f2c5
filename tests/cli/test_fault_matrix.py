"""Every command against every fault the README names: the documented exit code, one message, no traceback.

The commands run in this process through :func:`cli.errors.run_app`, as the console scripts
do, so the matrix costs no interpreter start per cell: an exception that escapes
``run_app`` (a bug, which would print a traceback) fails the cell. One store, one task and one
fitted run are built once for the module and only read by the cells; a cell that must damage
or write gets its own copy. The faults that need a process of their own (a file size limit, an
object-storage server killed mid-build, a model computing NaN, Ctrl-C) have their own tests:
tests/cli/test_write_faults.py, test_object_storage_faults.py, tests/build/test_model_outputs.py
and tests/cli/test_cli_faults.py.

A cell is a (command, fault) pair; a fault applies to the commands that take what it breaks
(an input file, a cache, a checkpoint, an output, a run directory).
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import socket
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import joblib
import numpy as np
import pandas as pd
import pytest

from conftest import TINY_CKPT, tree_hash
from cli.errors import run_app

pytestmark = pytest.mark.usefixtures("jax_compile_cache")

N = 40
BOOT = ["--bootstrap", "10"]
# What each command takes; {slot} fields are filled per cell.
COMMANDS: dict[str, tuple[str, list[str]]] = {
    "build": ("embedcache", ["build", "{input}", "--model", "{ckpt}", "--cache", "{cache}", "--max-tokens", "64",
                             "--layers", "1,2", "--attention", "1:1", "--batch-size", "8", "--quiet"]),
    "info": ("embedcache", ["info", "{cache}", "--input", "{input}"]),
    "export": ("embedcache", ["export", "--cache", "{cache}", "--input", "{input}", "--layer", "2", "--out", "{out}.npz"]),
    "verify": ("embedcache", ["verify", "{cache}"]),
    "upgrade": ("embedcache", ["upgrade", "{cache}"]),
    "attention-plot": ("embedcache", ["attention-plot", "--cache", "{cache}", "--layer", "1", "--head", "1",
                                      "--input", "{input}", "--sequence-id", "s1", "--out", "{out}.png"]),
    "models": ("embedcache", ["models"]),
    "convert": ("embedcache", ["convert", "{ckpt}", "--out", "{out}"]),
    "fit": ("classify", ["fit", "--probe", "logistic", "--data", "{input}", "--cache", "{cache}", "--layer", "2",
                         "--out", "{out}", *BOOT]),
    "sweep": ("classify", ["sweep", "--data", "{input}", "--cache", "{cache}", "--layers", "1,2", "--out", "{out}", *BOOT]),
    "cv": ("classify", ["cv", "--probe", "logistic", "--data", "{input}", "--cache", "{cache}", "--layer", "2",
                        "--folds", "2", "--out", "{out}"]),
    "evaluate": ("classify", ["evaluate", "{run}", "--data", "{input}", "--out", "{out}", *BOOT]),
    "predict": ("classify", ["predict", "{run}", "--data", "{input}", "--out", "{out}.csv"]),
    "compare": ("classify", ["compare", "{run}", "{run}", "--out", "{out}"]),
}
URL_CACHES = {"build", "info", "export", "verify", "upgrade", "attention-plot"}  # take s3:// URLs


def _slots(command: str) -> set[str]:
    return {part.split("}")[0] for arg in COMMANDS[command][1] for part in arg.split("{")[1:]}


@dataclass(frozen=True)
class Fault:
    """What a fault breaks (``slot``), how (``make(world, tmp) -> value``), the exit code, and
    words the message must hold; ``commands`` narrows it to some of the commands taking the slot."""

    name: str
    slot: str
    make: Callable[[dict, Path], str]
    code: int
    words: tuple[str, ...] = ()
    commands: tuple[str, ...] | None = None


def _table(world: dict, tmp: Path, text: str, name: str = "bad.csv") -> str:
    (tmp / name).write_text(text)
    return str(tmp / name)


def _task_rows(world: dict, n: int = 6) -> str:
    return "\n".join(world["task"].read_text().splitlines()[1:n + 1])


def _checkpoint(tmp: Path, edit: Callable[[dict, dict], None]) -> str:
    d = tmp / "ckpt"
    shutil.copytree(TINY_CKPT, d)
    params = joblib.load(d / "jax_model/pytree_ckpt.joblib")
    hp = json.loads((d / "jax_model/hyperparams.json").read_text())
    edit(params, hp)
    joblib.dump(params, d / "jax_model/pytree_ckpt.joblib")
    (d / "jax_model/hyperparams.json").write_text(json.dumps(hp))
    return str(d)


def _nan(params, hp):
    params["esm_transformer/attention_layer_1/~/fc1"]["w"][0, 0] = np.nan


def _billion_layers(params, hp):
    hp["num_layers"] = 1_000_000_000


def _damaged_store(world: dict, tmp: Path) -> str:
    """A copy of the store with every stored chunk of layer 2's pooled arrays and of a map deleted."""
    cache = tmp / "damaged.zarr"
    shutil.copytree(world["cache"], cache)
    for name in ("layer_2_cls", "layer_2_mean", "attention_1_1"):
        array = next(p for p in cache.rglob("*") if p.is_dir() and p.name == name)
        for chunk in [p for p in array.rglob("*") if p.is_file() and p.name != "zarr.json"]:
            chunk.unlink()
    return str(cache)


def _broken_run(world: dict, tmp: Path) -> str:
    run = tmp / "run"
    shutil.copytree(world["run"], run)
    (run / "metrics.json").write_text("{not json")
    return str(run)


def _file(tmp: Path, name: str = "a-file") -> Path:
    (tmp / name).write_text("not a directory\n")
    return tmp / name


FAULTS = [
    # bad input: exit 2, naming the file
    Fault("input missing", "input", lambda w, t: str(t / "absent.csv"), 2, ("absent.csv", "does not exist")),
    Fault("input is a directory", "input", lambda w, t: str(t), 2, ("is a directory",)),
    Fault("input binary", "input", lambda w, t: (t / "bin.csv").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00") and str(t / "bin.csv"),
          2, ("bin.csv",)),
    Fault("input empty", "input", lambda w, t: _table(w, t, ""), 2, ("bad.csv", "empty")),
    Fault("input empty record", "input", lambda w, t: _table(w, t, "id,sequence,label,split\ns0,,1,train\n" + _task_rows(w)),
          2, ("bad.csv", "empty or missing sequence")),
    Fault("input unknown character", "input", lambda w, t: _table(w, t, "id,sequence,label,split\ns0,ACGT!A,1,train\n" + _task_rows(w)),
          2, ("bad.csv", "'!'")),
    Fault("input row wider than header", "input",
          lambda w, t: _table(w, t, "id,sequence,label,split\n" + _task_rows(w) + "\nr1,ACGTACGTAA,1,train,TTTTT\n"),
          2, ("bad.csv, line 8", "5 fields")),
    Fault("input trailing comma", "input", lambda w, t: _table(w, t, "id,sequence,label,split\ns0,ACGTACGTAA,1,train,\n"),
          2, ("bad.csv, line 2", "a trailing comma")),
    Fault("input repeated column", "input", lambda w, t: _table(w, t, "id,sequence,sequence,label,split\ns0,ACGT,GG,1,train\n"),
          2, ("bad.csv, line 1", "'sequence' twice")),
    Fault("input not utf-8", "input", lambda w, t: (t / "latin.csv").write_bytes(b"id,sequence,label,split\ns\xe90,ACGT,1,train\n")
          and str(t / "latin.csv"), 2, ("latin.csv, line 2", "not UTF-8")),
    Fault("input over the token limit", "input", lambda w, t: _table(w, t, "id,sequence,label,split\ns0," + "ACGTAC" * 80 + ",1,train\n"),
          2, ("bad.csv", "tokens"), commands=("build",)),
    # the cache
    Fault("cache missing", "cache", lambda w, t: str(t / "absent.zarr"), 2, ("absent.zarr",),
          commands=("info", "export", "verify", "upgrade", "attention-plot", "fit", "sweep", "cv")),
    Fault("cache is a regular file", "cache", lambda w, t: str(_file(t, "file.zarr")), 1, ("file.zarr",)),
    Fault("cache is a foreign directory", "cache", lambda w, t: (t / "foreign").mkdir() or (t / "foreign" / "x.txt").write_text("x")
          and str(t / "foreign"), 2, ("foreign", "not an embedcache store"),
          commands=("build", "info", "export", "verify", "upgrade", "attention-plot", "fit", "sweep", "cv")),
    Fault("cache damaged", "cache", _damaged_store, 2, ("damaged.zarr", "embedcache verify"),
          commands=("export", "attention-plot", "fit", "sweep", "cv")),
    Fault("cache damaged (verify)", "cache", _damaged_store, 1, ("damaged.zarr",), commands=("verify",)),
    Fault("S3 endpoint unreachable", "cache", lambda w, t: "s3://caches/c.zarr", 1,
          ("cannot reach the S3 endpoint", "s3://caches/c.zarr"), commands=tuple(sorted(URL_CACHES))),
    Fault("S3 bucket missing", "cache", lambda w, t: "s3://no-such-bucket/c.zarr", 1,
          ("no-such-bucket", "does not exist on the S3 endpoint"), commands=("build",)),
    Fault("S3 no credentials", "cache", lambda w, t: "s3://caches/c.zarr", 1,
          ("no S3 credentials were found for http://127.0.0.1:", "AWS_ACCESS_KEY_ID"), commands=tuple(sorted(URL_CACHES))),
    Fault("S3 bucket missing (read)", "cache", lambda w, t: "s3://no-such-bucket/c.zarr", 1,
          ("the bucket 'no-such-bucket' does not exist on the S3 endpoint", "s3://no-such-bucket/c.zarr"),
          commands=tuple(sorted(URL_CACHES - {"build"}))),
    # the checkpoint
    Fault("checkpoint missing", "ckpt", lambda w, t: str(t / "absent-ckpt"), 2, ("absent-ckpt",)),
    Fault("checkpoint NaN tensor", "ckpt", lambda w, t: _checkpoint(t, _nan), 2,
          ("esm_transformer/attention_layer_1/~/fc1:w holds NaN or infinity",)),
    Fault("checkpoint a billion layers", "ckpt", lambda w, t: _checkpoint(t, _billion_layers), 2,
          ("hyperparams.json", "num_layers 1000000000, but the weights hold 2")),
    # outputs
    Fault("output under a regular file", "out", lambda w, t: str(_file(t) / "out"), 1, ("a-file",)),
    # run directories
    Fault("run missing", "run", lambda w, t: str(t / "absent-run"), 2, ("absent-run",)),
    Fault("run damaged", "run", _broken_run, 2, ("metrics.json",)),
]
CELLS = [pytest.param(c, f, id=f"{c}-{f.name}") for c in COMMANDS for f in FAULTS
         if f.slot in _slots(c) and (f.commands is None or c in f.commands)]
CELLS += [pytest.param(c, Fault("unknown option", "-", lambda w, t: "", 2, ("--no-such-option",)), id=f"{c}-unknown option")
          for c in COMMANDS]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """A labelled task, its store (tiny_v2, layers 1-2, map 1:1) and a fitted run; read only."""
    from embedcache import EmbeddingCache

    d = tmp_path_factory.mktemp("matrix")
    rng = np.random.default_rng(3)
    seqs = ["".join(rng.choice(list("ACGT"), size=int(rng.integers(30, 85)))) for _ in range(N)]
    task = d / "task.csv"
    pd.DataFrame({"id": [f"s{i}" for i in range(N)], "sequence": seqs, "label": np.arange(N) % 2,
                  "split": ["train"] * 30 + ["test"] * 10}).to_csv(task, index=False)
    EmbeddingCache(d / "cache.zarr").build(task, model=TINY_CKPT, max_tokens=64, layers=[1, 2], attention=[(1, 1)],
                                           batch_size=8, quiet=True)
    world = {"task": task, "cache": d / "cache.zarr", "run": d / "run", "ckpt": TINY_CKPT}
    code, err = _run("classify", ["fit", "--probe", "logistic", "--data", str(task), "--cache", str(world["cache"]),
                                  "--layer", "2", "--out", str(world["run"]), *BOOT])
    assert code == 0, err
    return world


@pytest.fixture()
def s3_endpoints(monkeypatch):
    """For the S3 cells: a live S3 server with no buckets but `caches`, or an address nobody answers."""
    from moto.server import ThreadedMotoServer
    import s3fs

    def free_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_MAX_ATTEMPTS": "1"}.items():
        monkeypatch.setenv(key, value)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    s3fs.S3FileSystem.clear_instance_cache()  # an instance remembers the endpoint it was made for
    try:
        yield {"live": f"http://127.0.0.1:{port}", "dead": f"http://127.0.0.1:{free_port()}"}
    finally:
        server.stop()
        s3fs.S3FileSystem.clear_instance_cache()


def _run(tool: str, args: list[str]) -> tuple[int, str]:
    """Run a command as its console script does; returns (exit code, stderr)."""
    import io
    from contextlib import redirect_stderr

    if tool == "embedcache":
        from cli.embedcache_app import app
    else:
        from cli.classify_app import app
    saved = sys.argv, signal.getsignal(signal.SIGINT), warnings.showwarning, logging.getLogger("asyncio").level
    err = io.StringIO()
    try:
        sys.argv = [tool, *args]
        with redirect_stderr(err), pytest.raises(SystemExit) as stop:
            run_app(app)
    finally:
        sys.argv = saved[0]
        signal.signal(signal.SIGINT, saved[1])
        warnings.showwarning = saved[2]
        logging.getLogger("asyncio").setLevel(saved[3])
    code = stop.value.code
    return (0 if code is None else code), err.getvalue()


@pytest.mark.parametrize("command, fault", CELLS)
def test_fault_matrix(command, fault, world, tmp_path, request, monkeypatch):
    if fault.name.startswith("S3"):
        endpoints = request.getfixturevalue("s3_endpoints")
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoints["dead" if "unreachable" in fault.name else "live"])
        if "credentials" in fault.name:  # none in the environment, none in a home directory, no instance metadata
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN",
                        "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
                monkeypatch.delenv(key, raising=False)
            monkeypatch.setenv("HOME", str(tmp_path))
            monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    values = {"input": str(world["task"]), "cache": str(world["cache"]), "ckpt": str(world["ckpt"]),
              "out": str(tmp_path / "out"), "run": str(world["run"])}
    if command == "build":  # a build writes: its own copy of the store
        shutil.copytree(world["cache"], tmp_path / "own.zarr")
        values["cache"] = str(tmp_path / "own.zarr")
    if fault.slot in values:
        values[fault.slot] = fault.make(world, tmp_path)
    tool, template = COMMANDS[command]
    args = [a.format(**values) for a in template] + (["--no-such-option"] if fault.slot == "-" else [])
    before = tree_hash(Path(values["cache"])) if "://" not in values["cache"] else None

    code, err = _run(tool, args)

    assert code == fault.code, err
    assert "Traceback" not in err and "never retrieved" not in err, err
    assert all(w in err for w in fault.words), err
    if fault.slot != "-" and command != "verify":  # verify lists every problem it finds, one per line
        assert len([line for line in err.splitlines() if line.startswith("error: ")]) == 1, err
    if before is not None and fault.slot != "cache":
        assert tree_hash(Path(values["cache"])) == before, "a refused command changed the store"
