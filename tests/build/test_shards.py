"""`--shard I/N`: N concurrent jobs over the same input cover every unique sequence once, with
no merge step; a killed shard leaves the others unaffected and its rerun completes its share."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.embedcache_app import app
from conftest import TINY_BUILD_API as API, TINY_BUILD_ARGS as ARGS, kill_at_pause
from embedcache import EmbeddingCache
from embedcache.errors import InputError
from embedcache.request import BuildRequest, Shard
from embedcache.store import sequence_digest

pytestmark = pytest.mark.usefixtures("jax_compile_cache")

ROOT = Path(__file__).parents[2]
N = 240
NAMES = ["layer_1_cls", "layer_1_mean", "layer_2_cls", "layer_2_mean"]


def _seqs() -> list[str]:
    rng = np.random.default_rng(9)
    return ["".join(rng.choice(list("ACGT"), size=int(rng.integers(30, 85)))) for _ in range(N)]


def _fasta(tmp_path: Path, seqs: list[str]) -> Path:
    path = tmp_path / "in.fa"
    # Every sequence twice, so that shares are of unique sequences, not of records.
    path.write_text("".join(f">r{i}\n{s}\n" for i, s in enumerate(seqs + seqs)))
    return path


def _start(fasta: Path, cache: Path, shard: str, env: dict) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "cli.embedcache_app", "build", str(fasta), "--cache", str(cache), *ARGS,
           "--shard", shard]
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _counts(out: str) -> tuple[int, int, int]:
    m = re.search(r"shard \d+/\d+: (\d+) computed, (\d+) reused, (\d+) left to other shards", out)
    assert m, out
    return tuple(int(x) for x in m.groups())


def _assert_complete_and_equal(cache_path: Path, seqs: list[str], tmp_path: Path) -> None:
    cache = EmbeddingCache(cache_path)
    assert cache.verify() == []
    group = cache.group()
    assert sorted(group.digests().tolist()) == sorted({sequence_digest(s) for s in seqs})  # each once
    assert group.array_names() == NAMES and all(group.filled(n).all() for n in NAMES)
    reference = EmbeddingCache(tmp_path / "plain.zarr")
    reference.build(seqs, **API)
    for name in NAMES:
        layer, pool = int(name.split("_")[1]), name.split("_")[2]
        np.testing.assert_allclose(cache.embeddings(seqs, layer=layer, pool=pool),
                                   reference.embeddings(seqs, layer=layer, pool=pool), atol=1e-5)


def test_shard_share_is_by_digest_and_partitions():
    digests = [sequence_digest(s) for s in _seqs()]
    shards = [Shard(i, 3) for i in range(3)]
    owners = [[s.owns(d) for s in shards] for d in digests]
    assert all(sum(o) == 1 for o in owners)
    assert all(20 < sum(o[i] for o in owners) < 140 for i in range(3))  # every shard gets a share
    assert BuildRequest(shard=(1, 3)).shard == BuildRequest(shard="1/3").shard == Shard(1, 3)


@pytest.mark.parametrize("spec", ["3/3", "-1/3", "x/3", "1/0", "1", "1/", "/3"])
def test_bad_shard_specs_exit_2_naming_the_option(spec, tmp_path):
    fasta = _fasta(tmp_path, _seqs()[:3])
    result = CliRunner().invoke(app, ["build", str(fasta), "--cache", str(tmp_path / "c.zarr"), *ARGS,
                                      "--shard", spec])
    assert result.exit_code == 2
    assert "--shard" in result.output
    assert not (tmp_path / "c.zarr").exists()
    with pytest.raises(InputError, match="--shard"):
        BuildRequest(shard=spec)


def test_three_concurrent_shards_cover_each_sequence_once(tmp_path, jax_compile_cache):
    seqs = _seqs()
    fasta, cache_path = _fasta(tmp_path, seqs), tmp_path / "shared.zarr"
    env = {**os.environ, **jax_compile_cache, "EMBEDCACHE_COMMIT_SECONDS": "0.05", "EMBEDCACHE_COMMIT_ROWS": "8"}
    procs = [_start(fasta, cache_path, f"{i}/3", env) for i in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    for i, (p, (out, err)) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, f"shard {i}: {err[-2000:]}"
    counts = [_counts(out) for out, _ in outs]
    owned = [sum(Shard(i, 3).owns(sequence_digest(s)) for s in seqs) for i in range(3)]
    assert [c[0] + c[1] for c in counts] == owned  # own share computed (or reused), nothing else
    assert [c[2] for c in counts] == [N - n for n in owned]
    assert sum(c[0] for c in counts) == N  # no sequence computed twice
    _assert_complete_and_equal(cache_path, seqs, tmp_path)

    # info --input: every unique sequence of the input done for each array.
    result = CliRunner().invoke(app, ["info", str(cache_path), "--input", str(fasta)])
    assert result.exit_code == 0, result.output
    assert f"has {N} unique sequences, {N} in the cache" in result.output
    for name in NAMES:
        assert re.search(rf"{name}\s+{N} / {N} done", result.output)


def test_killed_shard_leaves_others_whole_and_its_rerun_completes(tmp_path, jax_compile_cache):
    seqs = _seqs()
    fasta, cache_path = _fasta(tmp_path, seqs), tmp_path / "shared.zarr"
    env = {**os.environ, **jax_compile_cache, "EMBEDCACHE_COMMIT_SECONDS": "0.05", "EMBEDCACHE_COMMIT_ROWS": "8"}
    marker = tmp_path / "stopped"
    # Shard 1 stops itself in its third commit (chunks written, not yet swapped in) and is killed there.
    procs = [_start(fasta, cache_path, f"{i}/3",
                    {**env, "EMBEDCACHE_TEST_PAUSE": f"before_publish:{marker}:3"} if i == 1 else env)
             for i in range(3)]
    victim = procs[1]
    killed, outs = kill_at_pause(victim, procs, marker)
    assert killed, "shard 1 finished before its third commit: enlarge the input"
    assert victim.returncode == -signal.SIGKILL
    for i in (0, 2):
        assert procs[i].returncode == 0, outs[i][1][-2000:]
        owned = sum(Shard(i, 3).owns(sequence_digest(s)) for s in seqs)
        assert sum(_counts(outs[i][0])[:2]) == owned

    # The store holds whole rows only; info says part of the input is done.
    cache = EmbeddingCache(cache_path)
    assert cache.verify() == []
    done = cache.progress(fasta)[0]
    assert done["unique"] == N and done["rows"] < N
    assert all(done["arrays"][n] == done["rows"] for n in NAMES)

    # Rerun the failed shard only: it completes its share; nothing to clean up.
    rerun = _start(fasta, cache_path, "1/3", env)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-2000:]
    computed, reused, _ = _counts(out)
    assert computed + reused == sum(Shard(1, 3).owns(sequence_digest(s)) for s in seqs) and computed > 0
    _assert_complete_and_equal(cache_path, seqs, tmp_path)
