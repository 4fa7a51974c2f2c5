"""`embedcache build / info / export / verify` through Typer's runner and as real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.embedcache_app import app
from conftest import TINY_V2
from embedcache import EmbeddingCache
from embedcache.errors import InputError, SequenceTooLongError
from conftest import short_seqs, tree_hash

pytestmark = pytest.mark.usefixtures("jax_compile_cache")

CKPT = str(TINY_V2 / "checkpoint")
FAST = ["--model", CKPT, "--max-tokens", "64", "--batch-size", "8"]
ROOT = Path(__file__).parents[2]
runner = CliRunner()


@pytest.fixture()
def task(tmp_path) -> Path:
    path = tmp_path / "task.csv"
    seqs = short_seqs(12, seed=30)
    pd.DataFrame({"id": [f"r{i}" for i in range(12)], "sequence": seqs, "label": [i % 2 for i in range(12)]}).to_csv(
        path, index=False)
    return path


def _build(task: Path, cache: Path, *extra: str):
    return runner.invoke(app, ["build", str(task), "--cache", str(cache), *FAST, *extra])


def test_build_info_export_verify(task, tmp_path):
    cache = tmp_path / "c.zarr"
    result = _build(task, cache, "--layers", "1,2", "--pool", "cls,mean", "--attention", "1:2,2:4", "--quiet")
    assert result.exit_code == 0, result.output
    assert "12 records, 12 unique sequences: 12 computed, 0 reused" in result.stdout
    assert "attention_2_4: 12 computed" in result.stdout

    again = _build(task, cache, "--layers", "2", "--pool", "cls", "--quiet")
    assert "12 computed, 0 reused" not in again.stdout and "0 computed, 12 reused" in again.stdout

    info = runner.invoke(app, ["info", str(cache)])
    assert info.exit_code == 0
    key = EmbeddingCache(cache).models()[0].key
    assert key in info.stdout and "rows 12" in info.stdout and "layer_1_mean" in info.stdout
    assert "attention_2_4" in info.stdout and "MiB" in info.stdout

    out = tmp_path / "feat.npz"
    exported = runner.invoke(app, ["export", "--cache", str(cache), "--input", str(task), "--layer", "1",
                                   "--pool", "mean", "--out", str(out)])
    assert exported.exit_code == 0, exported.output
    data = np.load(out)
    assert data["id"].tolist() == [f"r{i}" for i in range(12)]
    seqs = pd.read_csv(task)["sequence"].tolist()
    np.testing.assert_array_equal(data["X"], EmbeddingCache(cache).embeddings(seqs, layer=1, pool="mean"))

    ok = runner.invoke(app, ["verify", str(cache)])
    assert ok.exit_code == 0 and "ok (12 rows checked)" in ok.stdout


def test_verify_reports_damage_and_rows(task, tmp_path):
    cache = tmp_path / "c.zarr"
    assert _build(task, cache, "--layers", "2", "--quiet").exit_code == 0
    from embedcache.store import manifest
    from embedcache.store.cow import ChunkWriter

    group = EmbeddingCache(cache).group()
    key = group.key
    # A commit of wrong contents (every chunk sound): a sequence that no longer matches its digest, a NaN.
    values = group.read("layer_2_mean", np.arange(group.n_rows))
    values[5, 0] = np.nan
    target = group.manifest.successor()
    writer = ChunkWriter(group.store, key, group, target)
    writer.write("sequence", np.array([3]), np.array(["ACGTTT"], dtype=object))
    writer.write("layer_2_mean", np.arange(group.n_rows), values)
    writer.finish()
    assert manifest.publish(group.store, key, target)
    obj = target.arrays["layer_2_cls"]["chunks"]["0"][0]
    shard = cache / key / obj
    shard.write_bytes(shard.read_bytes()[:-40])  # truncated
    result = runner.invoke(app, ["verify", str(cache)])
    assert result.exit_code == 1
    err = result.stderr
    assert "digest does not match the row's sequence (rows 3)" in err
    assert "layer_2_mean: NaN or inf values (rows 5)" in err
    assert f"layer_2_cls: chunk {key}/{obj} is not the one committed" in err and "rows 0-11" in err
    assert "3 problem(s)" in err


def test_progress_bar_unless_quiet(task, tmp_path):
    loud = _build(task, tmp_path / "a.zarr", "--layers", "2")
    # No terminal here (as in a batch job's log): a plain summary line instead of a bar.
    assert loud.exit_code == 0 and "embedded 12/12 sequences in" in loud.stderr and "seq/s" in loud.stderr
    quiet = _build(task, tmp_path / "b.zarr", "--layers", "2", "--quiet")
    assert quiet.exit_code == 0 and "seq/s" not in quiet.stderr


def test_bad_arguments_are_usage_errors(task, tmp_path):
    for extra in (["--attention", "1-4"], ["--layers", "one"]):
        result = _build(task, tmp_path / "c.zarr", *extra)
        assert result.exit_code == 2 and "Invalid value" in result.output
    assert not (tmp_path / "c.zarr").exists()


def test_bad_option_values_fail_while_parsing_before_any_checkpoint_is_read(task, tmp_path):
    for option, value in (("--pool", "cls,max"), ("--long", "sideways"), ("--alphabet", "rna"),
                          ("--dtype", "float64"), ("--store-dtype", "int8")):
        # A model that does not exist: had it been looked up first, the error would name it.
        result = runner.invoke(app, ["build", str(task), "--model", str(tmp_path / "no-such-model"),
                                     "--cache", str(tmp_path / "c.zarr"), option, value])
        assert result.exit_code == 2, (option, result.output)
        shown = " ".join(result.output.replace("│", " ").split())
        assert f"Invalid value for {option}: " in shown and "is not one of" in shown and "no-such-model" not in shown
    assert not (tmp_path / "c.zarr").exists()


def test_bad_input_raises_the_library_error(task, tmp_path):
    long = tmp_path / "long.fa"
    long.write_text(">big\n" + "ACGTAC" * 80 + "\n")
    result = _build(long, tmp_path / "c.zarr", "--quiet")
    assert isinstance(result.exception, SequenceTooLongError)
    (tmp_path / "noseq.csv").write_text("id,dna\na,ACGT\n")
    result = _build(tmp_path / "noseq.csv", tmp_path / "c.zarr", "--quiet")
    assert isinstance(result.exception, InputError) and "sequence" in str(result.exception)
    result = runner.invoke(app, ["export", "--cache", str(tmp_path / "c.zarr"), "--input", str(task),
                                 "--out", str(tmp_path / "x.npz")])
    assert "no embedding cache" in str(result.exception)


def _cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.embedcache_app", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, **env})


def test_process_exit_codes_and_untouched_store(task, tmp_path, jax_compile_cache):
    cache = tmp_path / "c.zarr"
    assert _build(task, cache, "--layers", "2", "--quiet").exit_code == 0
    before = tree_hash(cache)
    long = tmp_path / "long.fa"
    long.write_text(">ok\nACGTACGT\n>chrX_region\n" + "ACGTAC" * 80 + "\n")
    done = _cli("build", str(long), "--cache", str(cache), *FAST, "--layers", "1,2", "--quiet", env=jax_compile_cache)
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "long.fa" in done.stderr and "chrX_region" in done.stderr
    assert "Traceback" not in done.stderr
    assert tree_hash(cache) == before
    group = EmbeddingCache(cache).group()
    shard = cache / group.key / group.manifest.arrays["layer_2_cls"]["chunks"]["0"][0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    checked = _cli("verify", str(cache), env=jax_compile_cache)
    assert checked.returncode == 1 and "layer_2_cls" in checked.stderr and "rows 0-11" in checked.stderr


def test_random_weight_stand_in_is_recorded_and_announced(task, tmp_path, monkeypatch):
    import embedcache.checkpoints as checkpoints
    from conftest import TINY_V2_HP

    # A small "released" architecture, so that the stand-in is quick to build.
    monkeypatch.setitem(checkpoints.RELEASED_ARCHITECTURES, "tiny_v2", TINY_V2_HP)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = tmp_path / "c.zarr"
    args = ["build", str(task), "--cache", str(cache), "--model", "tiny_v2", "--max-tokens", "64", "--quiet"]
    refused = runner.invoke(app, args)
    assert refused.exit_code != 0 and not cache.exists()
    with pytest.warns(checkpoints.RandomWeightsWarning):
        result = runner.invoke(app, [*args, "--allow-random-weights"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("RANDOM WEIGHTS: random-tiny_v2")
    (m,) = EmbeddingCache(cache).models()
    assert m.random_weights is True and m.name == "random-tiny_v2"
    assert "RANDOM WEIGHTS" in runner.invoke(app, ["info", str(cache)]).stdout
    # The key finds its stand-in again (made from its name, same digest).
    again = runner.invoke(app, ["build", str(task), "--cache", str(cache), "--model", m.key, "--quiet"])
    assert again.exit_code == 0 and "0 computed, 12 reused" in again.stdout
