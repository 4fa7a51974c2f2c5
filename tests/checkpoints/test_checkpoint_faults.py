"""A checkpoint is checked before any forward: counts against the tensors present, finite weights.

Issue 18: ``"num_layers": 1000000000`` made memory grow until the process was killed, and a NaN
weight built NaN embeddings for every row with exit 0.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import joblib
import numpy as np
import pytest

from conftest import GOLDEN, TINY_CKPT
from embedcache.checkpoints import load_checkpoint
from embedcache.errors import CheckpointError

ROOT = Path(__file__).resolve().parents[2]
HP = "jax_model/hyperparams.json"
PICKLE = "jax_model/pytree_ckpt.joblib"


def _copy(tmp_path: Path, name: str = "ckpt") -> Path:
    d = tmp_path / name
    shutil.copytree(TINY_CKPT, d)
    return d


def _edit_hp(d: Path, **changes) -> Path:
    hp = json.loads((d / HP).read_text())
    (d / HP).write_text(json.dumps({**hp, **changes}))
    return d


def test_a_billion_layers_fails_fast_in_bounded_memory(tmp_path):
    d = _edit_hp(_copy(tmp_path), num_layers=1_000_000_000)
    # 1 GiB of address space: the old code made names for each of 10**9 layers and ran out.
    script = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        from embedcache.checkpoints import load_checkpoint
        from embedcache.errors import CheckpointError
        try:
            load_checkpoint({str(d)!r})
        except CheckpointError as exc:
            print(exc)
            sys.exit(2)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"{d / HP}: the configuration says num_layers 1000000000, but the weights hold 2" in done.stdout


@pytest.mark.parametrize("changes, words", [
    ({"num_layers": 3}, "says num_layers 3, but the weights hold 2"),
    ({"num_layers": 0}, "num_layers must be a positive whole number, not 0"),
    ({"attention_heads": 0}, "attention_heads must be a positive whole number, not 0"),
    ({"embed_dim": "abc"}, "embed_dim must be a positive whole number, not 'abc'"),
    ({"k_for_kmers": 1_000_000_000}, "k_for_kmers 1000000000 is not a k-mer size NT uses"),
    ({"embed_dim": 48}, "wrong shape"),           # widths against the tensors
    ({"attention_heads": 3}, "not divisible"),
    ({"key_dim": 8}, "wrong shape esm_transformer/attention_layer_0/~/mha/query:w"),  # heads x key width
])
def test_hyperparameters_disagreeing_with_the_tensors_are_named(tmp_path, changes, words):
    d = _edit_hp(_copy(tmp_path), **changes)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(d)
    assert words in str(err.value) and str(d) in str(err.value)


def test_vocabulary_against_the_embedding_table(tmp_path):
    d = _copy(tmp_path)
    params = joblib.load(d / PICKLE)
    table = params["esm_transformer/~/embed"]["embeddings"]
    params["esm_transformer/~/embed"]["embeddings"] = table[:-7]
    joblib.dump(params, d / PICKLE)
    with pytest.raises(CheckpointError, match=r"wrong shape esm_transformer/~/embed:embeddings is \(4100, 64\)"):
        load_checkpoint(d)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_tensor_is_refused_by_name(tmp_path, bad):
    d = _copy(tmp_path)
    params = joblib.load(d / PICKLE)
    params["esm_transformer/attention_layer_1/~/fc2"]["w"][3, 5] = bad
    joblib.dump(params, d / PICKLE)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(d)
    msg = str(err.value)
    assert "esm_transformer/attention_layer_1/~/fc2:w holds NaN or infinity (1 of its" in msg
    assert str(d / PICKLE) in msg and "Download it again" in msg


def test_ntv3_counts_are_checked_before_shapes(tmp_path):
    d = tmp_path / "v3"
    shutil.copytree(GOLDEN / "ntv3_tiny", d)
    cfg = json.loads((d / "config.json").read_text())
    for key, value, words in (("num_downsamples", 10**9, "says num_downsamples 1000000000, but the weights hold"),
                              ("num_layers", 10**9, "says num_layers 1000000000, but the weights hold 2"),
                              ("attention_heads", 0, "attention_heads must be a whole number >= 1, not 0")):
        (d / "config.json").write_text(json.dumps({**cfg, key: value}))
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(d)
        assert words in str(err.value) and "config.json" in str(err.value)
