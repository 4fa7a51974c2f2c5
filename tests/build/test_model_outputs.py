"""Model outputs are checked before they are stored (issue 18).

A checkpoint whose weights are finite but overflow float32 for one token computes NaN for the
sequences holding it: the build stops with exit 1 naming the model and the record, and nothing
of that batch is committed; rows committed before it are kept and counted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np

from conftest import TINY_CKPT
from embedcache import EmbeddingCache
from embedcache.checkpoints import load_checkpoint
from embedcache.store import sequence_digest

ROOT = Path(__file__).resolve().parents[2]
GOOD = ["ACGTACGTACGTACGT", "CCCCCCGGGGGGTTTA", "GATTACAGATTACA"]
BAD = "AAAAAAACGTACGTAC"  # its first 6-mer token is the one that overflows


def _overflowing_checkpoint(tmp_path: Path) -> Path:
    d = tmp_path / "overflow"
    shutil.copytree(TINY_CKPT, d)
    token = int(load_checkpoint(TINY_CKPT).tokenizer().encode("AAAAAA")[-1])
    pickle = d / "jax_model" / "pytree_ckpt.joblib"
    params = joblib.load(pickle)
    # Finite (so the load accepts it), but the layer norm's mean of this row overflows to inf.
    params["esm_transformer/~/embed"]["embeddings"][token] = 3e38
    joblib.dump(params, pickle)
    return d


def test_non_finite_output_stops_the_build_and_stores_nothing_of_its_batch(tmp_path):
    ckpt = _overflowing_checkpoint(tmp_path)
    fasta = tmp_path / "in.fa"
    fasta.write_text("".join(f">good{i}\n{s}\n" for i, s in enumerate(GOOD)) + f">bad\n{BAD}\n")
    cache = tmp_path / "cache.zarr"
    done = subprocess.run(
        [sys.executable, "-m", "cli.embedcache_app", "build", str(fasta), "--model", str(ckpt), "--cache", str(cache),
         "--max-tokens", "64", "--layers", "1,2", "--attention", "1:1", "--batch-size", "1", "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "EMBEDCACHE_COMMIT_SECONDS": "0"},  # a commit after every batch
    )
    assert done.returncode == 1, done.stderr
    err = done.stderr
    assert "Traceback" not in err
    assert "error: model overflow computed non-finite values (NaN or infinity)" in err
    assert "of record 'bad'" in err and "nothing of the batch was stored" in err
    committed = int(err.split("this build committed ")[1].split(" ")[0])
    group = EmbeddingCache(cache).group()
    stored = set(group.digests().tolist())
    assert len(stored) == committed and sequence_digest(BAD) not in stored
    assert stored <= {sequence_digest(s) for s in GOOD}
    for name in group.array_names():
        assert np.isfinite(group.read(name, np.arange(group.n_rows))).all()


def test_a_nan_tensor_is_refused_before_any_forward(tmp_path):
    ckpt = tmp_path / "nan"
    shutil.copytree(TINY_CKPT, ckpt)
    pickle = ckpt / "jax_model" / "pytree_ckpt.joblib"
    params = joblib.load(pickle)
    params["esm_transformer/attention_layer_0/~/mha/query"]["w"][0, 0] = np.nan
    joblib.dump(params, pickle)
    cache, fasta = tmp_path / "cache.zarr", tmp_path / "in.fa"
    fasta.write_text(">r1\nACGTACGTACGT\n")
    done = subprocess.run(
        [sys.executable, "-m", "cli.embedcache_app", "build", str(fasta), "--model", str(ckpt), "--cache", str(cache)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert "esm_transformer/attention_layer_0/~/mha/query:w holds NaN or infinity" in done.stderr
    assert "Traceback" not in done.stderr and not cache.exists()
