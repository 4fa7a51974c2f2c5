"""Every damage is a message: five kinds of damage, five commands, no traceback; then
``verify --repair`` and the same build heal the store, nothing stored twice.

The kinds: an index run's objects deleted; one bit flipped in the digest shard; one bit
flipped in a fill mask; the root ``zarr.json`` replaced by ``[]``; the committed run list
edited. Exit codes as the README's table says: ``verify`` 1 (damage found); ``info``,
``export``, ``build`` and ``classify`` 0 where what they read is sound, else 2 with the
way out.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import TINY_V2
from embedcache import EmbeddingCache
from embedcache.store import Store

pytestmark = pytest.mark.usefixtures("jax_compile_cache")

ROOT = Path(__file__).resolve().parents[2]
N = 120
ARGS = ["--model", str(TINY_V2 / "checkpoint"), "--max-tokens", "64", "--layers", "1,2", "--batch-size", "16",
        "--quiet"]
KINDS = ["index run deleted", "digest bit flipped", "fill mask bit flipped", "root document replaced",
         "run list edited"]


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    d = tmp_path_factory.mktemp("messages")
    rng = np.random.default_rng(17)
    seqs = ["".join(rng.choice(list("ACGT"), size=int(rng.integers(40, 120)))) for _ in range(N)]
    pd.DataFrame({"id": [f"s{i}" for i in range(N)], "sequence": seqs, "label": rng.integers(0, 2, N)}).to_csv(
        d / "task.csv", index=False)
    # Small commits: several index runs.
    run = _cli("cli.embedcache_app", "build", d / "task.csv", "--cache", d / "clean.zarr", *ARGS)
    assert run.returncode == 0, run.stderr
    return d


def _flip(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))


def _damage(cache: Path, kind: str) -> None:
    store = Store(cache)
    (key,) = store.keys()
    g = store.group(key)
    head = cache / key / "commits" / f"{g.generation:012d}.json"
    if kind == "index run deleted":
        a, b = g.runs[0]
        for obj, *_ in g.manifest.arrays[f"index/run_{a}_{b}"]["chunks"].values():
            (cache / key / obj).unlink()
    elif kind == "digest bit flipped":
        _flip(cache / key / g.manifest.arrays["digest"]["chunks"]["0"][0])
    elif kind == "fill mask bit flipped":
        _flip(cache / key / g.manifest.arrays["has_layer_2_cls"]["chunks"]["0"][0])
    elif kind == "root document replaced":
        (cache / "zarr.json").write_text("[]")
    elif kind == "run list edited":
        doc = json.loads(head.read_text())
        doc["runs"] = doc["runs"][1:]  # the first run's rows no longer found: a build would store them twice
        head.write_text(json.dumps(doc))
    else:
        raise AssertionError(kind)


def _content(path: Path) -> dict:
    group = EmbeddingCache(path).group()
    digests = group.digests()
    out = {}
    for name in group.array_names():
        filled = np.flatnonzero(group.filled(name) & (digests != ""))
        out[name] = dict(zip(digests[filled].tolist(), group.read(name, filled)))
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_each_command_says_what_is_damaged_and_repair_heals(clean, tmp_path, kind):
    cache = tmp_path / "cache.zarr"
    shutil.copytree(clean / "clean.zarr", cache)
    task = clean / "task.csv"
    _damage(cache, kind)
    runs = {
        "info": _cli("cli.embedcache_app", "info", cache),
        "verify": _cli("cli.embedcache_app", "verify", cache),
        "export": _cli("cli.embedcache_app", "export", "--cache", cache, "--input", task, "--out",
                       tmp_path / "x.npz", "--layer", "2"),
        "classify": _cli("cli.classify_app", "fit", "--model", "logistic", "--data", task, "--cache", cache,
                         "--layer", "2", "--out", tmp_path / "run"),
    }
    runs["build"] = _cli("cli.embedcache_app", "build", task, "--cache", cache, *ARGS)
    for command, run in runs.items():
        assert "Traceback" not in run.stderr, (command, run.stderr[-3000:])
        assert run.returncode in ((1,) if command == "verify" else (0, 2)), (command, run.returncode, run.stderr)
        if run.returncode:
            assert "verify" in run.stderr, (command, run.stderr)  # the way out
    if runs["export"].returncode:
        assert not (tmp_path / "x.npz").exists()

    repair = _cli("cli.embedcache_app", "verify", cache, "--repair")
    assert repair.returncode == 0 and "repaired" in repair.stdout, repair.stdout + repair.stderr
    rebuilt = _cli("cli.embedcache_app", "build", task, "--cache", cache, *ARGS)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert Store(cache).verify() == []
    digests = EmbeddingCache(cache).group().digests().tolist()
    live = [d for d in digests if d]
    assert len(live) == len(set(live)) == N  # nothing stored twice
    healed, reference = _content(cache), _content(clean / "clean.zarr")
    assert healed.keys() == reference.keys()
    for name, values in reference.items():
        assert healed[name].keys() == values.keys(), name
        for d, v in values.items():
            np.testing.assert_allclose(healed[name][d], v, atol=1e-6, err_msg=name)
