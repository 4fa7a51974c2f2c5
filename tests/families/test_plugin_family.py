"""A third-party model family, installed as a distribution with an `embedcache.families` entry
point (tests/fixtures/plugins), builds, reads and classifies without any edit to embedcache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from embedcache import EmbeddingCache
from embedcache.families import family_class, registry

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "tests" / "fixtures" / "plugins"


@pytest.fixture()
def plugin(monkeypatch):
    """The plugin's folder on sys.path, as `pip install` would put it: its dist-info makes the
    entry point visible to importlib.metadata; the registry is read afresh."""
    monkeypatch.syspath_prepend(str(PLUGINS))
    registry.cache_clear()
    import toyfamily

    yield toyfamily
    registry.cache_clear()


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGINS), str(ROOT)]), "EMBEDCACHE_COMPILE_CACHE": "off"}
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_the_plugin_is_found_by_its_entry_point(plugin):
    assert "toy" in registry() and family_class("toy") is plugin.ToyFamily
    assert {"nt", "ntv3"} <= registry().keys()  # the built-ins are still there


def test_without_the_plugin_its_variant_is_refused_by_name():
    registry.cache_clear()
    with pytest.raises(Exception, match="variant 'toy'"):
        family_class("toy")


def test_plugin_family_builds_reads_and_classifies(plugin, tmp_path):
    ckpt = plugin.write_checkpoint(tmp_path / "toy_model", embed_dim=8, num_layers=2, seed=3)
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGT"), size=int(rng.integers(20, 60)))) for _ in range(60)]
    # A label the toy model can see: GC content above the median.
    gc = np.array([(s.count("G") + s.count("C")) / len(s) for s in seqs])
    task = tmp_path / "task.csv"
    pd.DataFrame({"id": [f"s{i}" for i in range(len(seqs))], "sequence": seqs,
                  "label": (gc > np.median(gc)).astype(int)}).to_csv(task, index=False)
    cache = tmp_path / "cache.zarr"

    built = _run("cli.embedcache_app", "build", str(task), "--model", str(ckpt), "--cache", str(cache),
                 "--layers", "1,2", "--pool", "mean", "--quiet", cwd=ROOT)
    assert built.returncode == 0, built.stderr[-3000:]

    x = EmbeddingCache(cache).embeddings(seqs, model=str(ckpt), layer=2, pool="mean")
    np.testing.assert_allclose(x, plugin.reference_embeddings(ckpt, seqs, layer=2), atol=1e-5)

    run = tmp_path / "run"
    fit = _run("cli.classify_app", "fit", "--probe", "logistic", "--data", str(task), "--cache", str(cache),
               "--layer", "2", "--pool", "mean", "--out", str(run), cwd=ROOT)
    assert fit.returncode == 0, fit.stderr[-3000:]
    record = json.loads((run / "metrics.json").read_text())
    backbone = record["features"]["backbone"]
    assert backbone["variant"] == "toy" and backbone["tokenizer"]["variant"] == "toy"
    assert (record["features"]["layer"], record["features"]["pool"]) == (2, "mean")
    assert {"train", "validation", "test"} <= record["metrics"].keys()
