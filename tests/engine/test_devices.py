"""Data parallel over every local device, and ``--devices``.

This process initialised JAX with one CPU device, so the multi-device runs happen in a child
process given two host devices (``--xla_force_host_platform_device_count=2``): the same XLA
sharding machinery that splits batches over several GPUs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.embedcache_app import app
from conftest import GOLDEN, TINY_V2
from embedcache import EmbeddingCache
from embedcache.build import build
from embedcache.errors import InputError
from embedcache.request import check_devices

pytestmark = pytest.mark.usefixtures("jax_compile_cache")

ROOT = Path(__file__).parents[2]
CKPT = str(TINY_V2 / "checkpoint")
V2 = dict(layers=[1, 2], attention=[(1, 3), (2, 1)], max_tokens=64)
V3 = dict(layers=[1, "final"], attention=[(2, 3)], max_tokens=64)

# Runs with two host devices: embeds with all of them and with one (tiny v2 and tiny NTv3),
# builds a store each way (Python and CLI), and writes what it saw for the test to check.
# Two devices are given twice the token budget of one, so that each device runs the rows the
# single device runs: XLA on CPU rounds a batch of 1-2 rows differently from one of 4 or more
# (~1.6e-6 apart, on one device too), which is batch size, not sharding.
CHILD = textwrap.dedent("""
    import json, sys
    from pathlib import Path

    import jax
    import numpy as np
    from typer.testing import CliRunner

    import embedcache.engine as engine
    from cli.embedcache_app import app
    from embedcache import EmbeddingCache
    from embedcache.checkpoints import load_checkpoint
    from embedcache.request import BuildRequest, RunOptions

    out, ckpt_v2, ckpt_v3 = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    args = json.loads((out / "args.json").read_text())
    seen = {"devices": [d.id for d in jax.devices()], "builds": []}

    # Which devices each build's embedders ran on (a spy: the real Embedder runs).
    real_init = engine.Embedder.__init__
    def spy(self, *a, **kw):
        real_init(self, *a, **kw)
        seen["builds"][-1].append([d.id for d in self.devices])
    engine.Embedder.__init__ = spy

    def embed(ckpt, request, devices, seqs, tag):
        seen["builds"].append([])
        budget = args["budget"][tag[:2]] * (2 if devices is None else 1)
        emb = engine.Embedder(ckpt, BuildRequest(**request), run=RunOptions(devices=devices, token_budget=budget))
        arrays = {}
        for batch in emb.embed(emb.family.encode_batch(seqs)):
            for kind, outputs in (("pooled", batch.pooled), ("attention", batch.attention)):
                for name, values in outputs.items():
                    for row, i in enumerate(batch.index):
                        arrays[f"{tag}|{kind} {name}|{i}"] = values[row]
        compiled = sorted({rows for rows, _ in emb.stats.compiled_shapes})
        # One batch of 4 rows: where its outputs live, and how they are split.
        tokens = np.tile(emb.family.filler(16), (4, 1))
        leaves = jax.tree_util.tree_leaves(emb._call(tokens, np.full(4, 16, np.int32)))
        seen[tag] = {"compiled_rows": compiled, "shards": sorted({(s.device.id, s.data.shape[0]) for leaf in leaves
                                       for s in leaf.addressable_shards}),
                     "devices": sorted({d.id for leaf in leaves for d in leaf.sharding.device_set})}
        # A lone sequence: a partial batch of one row, padded to one row per device.
        lone = engine.Embedder(ckpt, BuildRequest(**request), run=RunOptions(devices=devices))
        list(lone.embed(lone.family.encode_batch(seqs[:1])))
        seen[tag]["lone_rows"] = [rows for rows, _ in lone.stats.compiled_shapes]
        return arrays

    v2, v3 = load_checkpoint(ckpt_v2), load_checkpoint(ckpt_v3)
    arrays = {}
    for n in (None, 1):
        arrays.update(embed(v2, args["v2"], n, args["seqs_v2"], f"v2-{n}"))
        arrays.update(embed(v3, args["v3"], n, args["seqs_v3"], f"v3-{n}"))
    np.savez(out / "arrays.npz", **arrays)

    seen["builds"].append([])
    EmbeddingCache(out / "all.zarr").build(args["seqs"], model=ckpt_v2, quiet=True, **args["v2"])
    seen["builds"].append([])
    result = CliRunner().invoke(app, ["build", str(out / "seqs.csv"), "--cache", str(out / "one.zarr"),
                                      "--model", ckpt_v2, "--layers", "1,2", "--attention", "1:3,2:1",
                                      "--max-tokens", "64", "--devices", "1", "--quiet"])
    seen["cli_exit"], seen["cli_output"] = result.exit_code, result.output
    (out / "seen.json").write_text(json.dumps(seen))
""")


def _python(code_or_module: list[str], env: dict, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **env, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    return subprocess.run([sys.executable, *code_or_module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=env)


@pytest.fixture(scope="module")
def two_devices(tmp_path_factory, jax_compile_cache):
    """What the child process with two devices computed and saw."""
    out = tmp_path_factory.mktemp("devices")
    rng = np.random.default_rng(11)
    # Whole batches of 4 rows per device (see CHILD): 16 sequences of padded length 16 and 8 of 24
    # (v2), 8 of 64 bases (NTv3); the store's sequences are one bucket of 16.
    def dna(lengths):  # whole 6-mers: 1 + bp / 6 tokens
        return ["".join(rng.choice(list("ACGT"), size=int(n))) for n in lengths]

    seqs_v2 = dna(rng.choice([60, 72, 84, 90], size=16)) + dna(rng.choice([120, 126, 132, 138], size=8))
    seqs_v3 = ["".join(rng.choice(list("ACGTN"), size=n)) for n in range(57, 65)]
    seqs = dna(rng.choice([60, 66, 78, 90], size=16))
    # Token budgets of one device: 4 rows of 16 or 24 tokens (v2), of 64 bases (NTv3).
    (out / "args.json").write_text(json.dumps({"seqs": seqs, "seqs_v2": seqs_v2, "seqs_v3": seqs_v3,
                                               "v2": V2, "v3": V3, "budget": {"v2": 96, "v3": 256}}))
    (out / "seqs.csv").write_text("sequence\n" + "\n".join(seqs) + "\n")
    done = _python(["-c", CHILD], jax_compile_cache, str(out), CKPT, str(GOLDEN / "ntv3_tiny"))
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads((out / "seen.json").read_text())
    with np.load(out / "arrays.npz") as npz:
        arrays = dict(npz)
    return out, seqs, seen, arrays


def test_a_batch_is_split_over_every_device_unless_restricted(two_devices):
    _, _, seen, _ = two_devices
    assert seen["devices"] == [0, 1]
    for family in ("v2", "v3"):
        # All devices: each holds half of the 4 rows of every output; the parameters are on both.
        assert seen[f"{family}-None"]["devices"] == [0, 1]
        assert seen[f"{family}-None"]["shards"] == [[0, 2], [1, 2]]
        # devices=1: the whole batch on the first device.
        assert seen[f"{family}-1"]["devices"] == [0] and seen[f"{family}-1"]["shards"] == [[0, 4]]
        # Rows are padded to a multiple of the devices: a lone sequence runs as 2 rows.
        assert seen[f"{family}-None"]["compiled_rows"] == [8] and seen[f"{family}-1"]["compiled_rows"] == [4]
        assert seen[f"{family}-None"]["lone_rows"] == [2] and seen[f"{family}-1"]["lone_rows"] == [1]


@pytest.mark.parametrize("family", ["v2", "v3"])
def test_two_devices_give_the_outputs_of_one(two_devices, family):
    _, _, _, arrays = two_devices
    one = {k.split("|", 1)[1]: v for k, v in arrays.items() if k.startswith(f"{family}-1|")}
    both = {k.split("|", 1)[1]: v for k, v in arrays.items() if k.startswith(f"{family}-None|")}
    assert one.keys() == both.keys()
    assert {k.split()[0] for k in one} == {"pooled", "attention"}
    for key, value in one.items():
        # Different rows per device change float32 summation order: a few ulps, no more.
        np.testing.assert_allclose(both[key], value, rtol=0, atol=1e-6, err_msg=key)


def test_stores_built_on_two_devices_and_on_one_hold_the_same(two_devices):
    out, seqs, seen, _ = two_devices
    assert seen["cli_exit"] == 0, seen["cli_output"]
    # The Python build used both devices, the CLI's --devices 1 only the first.
    assert seen["builds"][-2] and all(ids == [0, 1] for ids in seen["builds"][-2])
    assert seen["builds"][-1] and all(ids == [0] for ids in seen["builds"][-1])
    both, one = EmbeddingCache(out / "all.zarr"), EmbeddingCache(out / "one.zarr")
    [m_both], [m_one] = both.models(), one.models()
    assert m_both.key == m_one.key and m_both.rows == m_one.rows == len(set(seqs))
    key = m_both.key
    for layer in (1, 2):
        for pool in ("cls", "mean"):
            np.testing.assert_allclose(both.embeddings(seqs, model=key, layer=layer, pool=pool),
                                       one.embeddings(seqs, model=key, layer=layer, pool=pool), rtol=0, atol=1e-6)
    for seq in seqs:
        for layer, head in V2["attention"]:
            np.testing.assert_allclose(both.attention(seq, model=key, layer=layer, head=head),
                                       one.attention(seq, model=key, layer=layer, head=head), rtol=0, atol=1e-6)


def test_more_devices_than_exist_exit_2_before_the_checkpoint_is_read(tmp_path, jax_compile_cache):
    (tmp_path / "s.csv").write_text("sequence\nACGTACGTAA\n")
    done = _python(["-m", "cli.embedcache_app"], jax_compile_cache, "build", str(tmp_path / "s.csv"),
                   "--model", str(tmp_path / "no-such-model"), "--cache", str(tmp_path / "c.zarr"), "--devices", "3")
    assert done.returncode == 2, done.stderr
    assert "--devices 3" in done.stderr and "has 2 cpu device(s)" in done.stderr
    assert "no-such-model" not in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "c.zarr").exists()


@pytest.mark.parametrize("value", ["0", "-1", "x", "1.5", "", "0,2"])
def test_bad_devices_values_are_usage_errors(tmp_path, value):
    result = CliRunner().invoke(app, ["build", str(tmp_path / "s.csv"), "--model", str(tmp_path / "no-such-model"),
                                      "--cache", str(tmp_path / "c.zarr"), "--devices", value])
    assert result.exit_code == 2, result.output
    shown = " ".join(result.output.replace("│", " ").split())
    assert "Invalid value for --devices" in shown and "no-such-model" not in shown
    assert not (tmp_path / "c.zarr").exists()


def test_python_devices_are_checked_the_same_way(tmp_path):
    assert check_devices(None) is None and check_devices(2) == 2 and check_devices(" 3 ") == 3
    for bad in (0, -2, True, 1.5, "two"):
        with pytest.raises(InputError, match="--devices"):
            check_devices(bad)
    # This process has one device; the error says so, before a checkpoint is looked up.
    with pytest.raises(InputError, match="has 1 cpu device"):
        build(tmp_path / "c.zarr", ["ACGT"], model=str(tmp_path / "no-such-model"), devices=2)
    # Dask workers use one device each: --devices with --dask is refused before a cluster starts.
    with pytest.raises(InputError, match="--devices is for a build on this machine"):
        build(tmp_path / "c.zarr", ["ACGT"], model=str(tmp_path / "no-such-model"), dask="local:1", devices=1)
    assert not (tmp_path / "c.zarr").exists()
