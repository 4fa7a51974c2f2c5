"""Many `embedcache build` processes on one store at once, with overlapping inputs and a SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_BUILD_API as API, TINY_BUILD_ARGS as ARGS, kill_at_pause
from embedcache import EmbeddingCache
from embedcache.store import sequence_digest

pytestmark = pytest.mark.usefixtures("jax_compile_cache")

ROOT = Path(__file__).parents[2]
N = 320
# Four inputs that overlap pairwise and all together (rows 100-139 are in every one).
SLICES = [(0, 140), (60, 220), (100, 320), (0, 40), (180, 320)]


def _seqs() -> list[str]:
    rng = np.random.default_rng(8)
    return ["".join(rng.choice(list("ACGT"), size=int(rng.integers(30, 85)))) for _ in range(N)]


def _inputs(tmp_path: Path, seqs: list[str]) -> list[Path]:
    paths = []
    for w, parts in enumerate([[SLICES[0]], [SLICES[1]], [SLICES[2]], [SLICES[3], SLICES[4]]]):
        path = tmp_path / f"w{w}.fa"
        rows = [i for a, b in parts for i in range(a, b)]
        path.write_text("".join(f">w{w}_{i}\n{seqs[i]}\n" for i in rows))
        paths.append(path)
    return paths


def _start(fasta: Path, cache: Path, env: dict) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "cli.embedcache_app", "build", str(fasta), "--cache", str(cache), *ARGS]
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_four_writers_one_killed_store_each_sequence_once_with_single_writer_values(tmp_path, jax_compile_cache):
    seqs = _seqs()
    inputs = _inputs(tmp_path, seqs)
    cache_path = tmp_path / "shared.zarr"
    env = {**os.environ, **jax_compile_cache, "EMBEDCACHE_COMMIT_SECONDS": "0.05", "EMBEDCACHE_COMMIT_ROWS": "8"}

    marker = tmp_path / "stopped"
    # Writer 1 stops itself in its third commit (chunks written, not swapped in) and is killed there.
    procs = [_start(fasta, cache_path, {**env, "EMBEDCACHE_TEST_PAUSE": f"before_publish:{marker}:3"} if w == 1
                    else env) for w, fasta in enumerate(inputs)]
    victim = procs[1]
    killed, outs = kill_at_pause(victim, procs, marker)
    assert killed, "writer 1 finished before its third commit: enlarge the inputs"
    assert victim.returncode == -signal.SIGKILL
    for w, (p, (out, err)) in enumerate(zip(procs, outs)):
        if p is not victim:
            assert p.returncode == 0, f"writer {w}: {err[-2000:]}"  # none fails for the lock

    rerun = _start(inputs[1], cache_path, env)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-2000:]

    cache = EmbeddingCache(cache_path)
    assert cache.verify() == []
    group = cache.group()
    digests = group.digests().tolist()
    assert sorted(digests) == sorted({sequence_digest(s) for s in seqs})  # each sequence exactly once
    names = group.array_names()
    assert names == ["layer_1_cls", "layer_1_mean", "layer_2_cls", "layer_2_mean"]
    assert all(group.filled(n).all() for n in names)

    reference = EmbeddingCache(tmp_path / "single.zarr")
    reference.build(seqs, **API)
    for layer, pool in [(1, "cls"), (1, "mean"), (2, "cls"), (2, "mean")]:
        np.testing.assert_allclose(cache.embeddings(seqs, layer=layer, pool=pool),
                                   reference.embeddings(seqs, layer=layer, pool=pool), atol=1e-5)
    # The index found each row through the runs the commits merged.
    assert sum(b - a for a, b in group.runs) == N and len(group.runs) <= 1 + int(np.log2(N))
