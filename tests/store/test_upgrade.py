"""A version-1 store (written by the version-1 code) is refused until upgraded, then reads the same."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from conftest import TINY_V2
from embedcache import EmbeddingCache
from embedcache.errors import StoreVersionError
from embedcache.store import ENCODING_VERSION

pytestmark = pytest.mark.usefixtures("jax_compile_cache")

FIXTURE = Path(__file__).parents[1] / "fixtures" / "store_v1"
ROOT = Path(__file__).parents[2]


@pytest.fixture
def v1(tmp_path) -> Path:
    path = tmp_path / "cache.zarr"
    shutil.copytree(FIXTURE / "cache.zarr", path)
    return path


def _tree(path: Path) -> dict:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file() and p.name != "embedcache.lock"}


def _upgrade_cli(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.embedcache_app", "upgrade", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_version_1_is_refused_with_the_way_out_and_left_untouched(v1):
    before = _tree(v1)
    cache = EmbeddingCache(v1)
    expected = np.load(FIXTURE / "expected.npz")
    with pytest.raises(StoreVersionError, match=f"version 1.*embedcache upgrade {v1}"):
        cache.embeddings(expected["sequences"].tolist(), layer=2, pool="cls")
    with pytest.raises(StoreVersionError, match="embedcache upgrade"):
        cache.build(["ACGTACGT"], model=TINY_V2 / "checkpoint", layers=[2], max_tokens=64, quiet=True)
    done = subprocess.run([sys.executable, "-m", "cli.embedcache_app", "info", str(v1)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "embedcache upgrade" in done.stderr
    assert _tree(v1) == before  # nothing misread, nothing written


def test_upgrade_reads_the_same_values_and_is_idempotent(v1):
    done = _upgrade_cli(v1)
    assert done.returncode == 0, done.stderr
    assert "upgraded 1 model group(s)" in done.stdout
    cache = EmbeddingCache(v1)
    expected = np.load(FIXTURE / "expected.npz")
    seqs = expected["sequences"].tolist()
    np.testing.assert_array_equal(cache.embeddings(seqs, layer=2, pool="cls"), expected["layer_2_cls"])
    np.testing.assert_array_equal(cache.embeddings(seqs[:30], layer=1, pool="mean"), expected["layer_1_mean"])
    assert cache.verify() == []
    info = json.loads((FIXTURE / "info.json").read_text())
    (now,) = cache.info()
    assert now.key == info[0]["key"] and now.filled == info[0]["arrays"] and now.rows == info[0]["rows"]
    assert zarr.open_group(str(v1), mode="r").attrs["encoding_version"] == ENCODING_VERSION

    after = _tree(v1)
    again = _upgrade_cli(v1)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert _tree(v1) == after

    # The same model resolves to the same group: only new sequences are computed.
    report = cache.build(seqs + ["ACGTTGCAACGTTGCAACGT"], model=TINY_V2 / "checkpoint", layers=[2],
                         max_tokens=64, quiet=True, batch_size=8)
    assert (report.computed, report.reused) == (1, 40)
    assert cache.verify() == []


@pytest.mark.parametrize("stage", ["manifest", "group", "root"])
def test_an_interrupted_upgrade_is_refused_then_finished_by_a_rerun(v1, monkeypatch, stage):
    from embedcache.store import access, manifest

    if stage == "manifest":  # killed while writing the first manifest's index run
        def crash(*args, **kwargs):
            raise KeyboardInterrupt("killed")
        monkeypatch.setattr(manifest, "publish", crash)
    else:  # killed as the group's, or the root's, version is stamped
        real = access.put_bytes

        def crash(store, key, data):
            if key == ("zarr.json" if stage == "root" else f"{_key(v1)}/zarr.json"):
                raise KeyboardInterrupt("killed")
            return real(store, key, data)
        monkeypatch.setattr(access, "put_bytes", crash)
    with pytest.raises(KeyboardInterrupt):
        EmbeddingCache(v1).upgrade()
    monkeypatch.undo()
    expected = np.load(FIXTURE / "expected.npz")
    with pytest.raises(StoreVersionError, match="embedcache upgrade"):
        EmbeddingCache(v1).embeddings(expected["sequences"].tolist(), layer=2, pool="cls")
    assert _upgrade_cli(v1).returncode == 0
    cache = EmbeddingCache(v1)
    np.testing.assert_array_equal(cache.embeddings(expected["sequences"].tolist(), layer=2, pool="cls"),
                                  expected["layer_2_cls"])
    assert cache.verify() == [] and cache.leftovers().objects == {}


def _key(path: Path) -> str:
    return next(p.name for p in path.iterdir() if p.is_dir())


FIXTURE_V2 = Path(__file__).parents[1] / "fixtures" / "store_v2"


def test_format_2_upgrades_to_3_in_place_and_reads_the_same(tmp_path):
    path = tmp_path / "cache.zarr"
    shutil.copytree(FIXTURE_V2 / "cache.zarr", path)
    expected = np.load(FIXTURE_V2 / "expected.npz")
    seqs = expected["sequences"].tolist()
    with pytest.raises(StoreVersionError, match=f"version 2.*embedcache upgrade {path}"):
        EmbeddingCache(path).embeddings(seqs, layer=2, pool="cls")
    done = _upgrade_cli(path)
    assert done.returncode == 0 and "upgraded 1 model group(s)" in done.stdout, done.stderr
    cache = EmbeddingCache(path)
    np.testing.assert_array_equal(cache.embeddings(seqs, layer=2, pool="cls"), expected["layer_2_cls"])
    np.testing.assert_array_equal(cache.embeddings(seqs[:30], layer=1, pool="mean"), expected["layer_1_mean"])
    info = json.loads((FIXTURE_V2 / "info.json").read_text())
    (now,) = cache.info()
    assert (now.key, now.rows) == (info[0]["key"], info[0]["rows"])
    assert now.filled == {"attention_1_2": 30, "layer_1_cls": 30, "layer_1_mean": 30, "layer_2_cls": 40,
                             "layer_2_mean": 40}
    assert cache.verify() == [] and cache.leftovers().objects == {}
    after = _tree(path)
    assert _upgrade_cli(path).returncode == 0 and _tree(path) == after  # idempotent
    report = cache.build(seqs + ["ACGTTGCAACGTTGCAACGT"], model=TINY_V2 / "checkpoint", layers=[2],
                         max_tokens=64, quiet=True, batch_size=8)
    assert (report.computed, report.reused) == (1, 40) and cache.verify() == []
