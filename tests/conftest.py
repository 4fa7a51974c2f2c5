"""Shared fixtures: the golden reference checkpoint and checkpoints the tests write themselves."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

GOLDEN = Path(__file__).parent / "golden"
TINY_V2 = GOLDEN / "tiny_v2"

_spec = importlib.util.spec_from_file_location("make_weights", GOLDEN / "make_weights.py")
make_weights = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_weights)

# Hyperparameters in the released `jax_model/hyperparams.json` form.
TINY_V2_HP = json.loads((TINY_V2 / "hyperparams.json").read_text())
# The build many store tests run, by command line and by API: tiny_v2, layers 1 and 2, small batches.
TINY_CKPT = TINY_V2 / "checkpoint"
TINY_BUILD_ARGS = ["--model", str(TINY_CKPT), "--max-tokens", "64", "--layers", "1,2", "--batch-size", "4", "--quiet"]
TINY_BUILD_API = dict(model=TINY_CKPT, max_tokens=64, layers=[1, 2], batch_size=4, quiet=True)

# Small builds: one padded length, one compilation.
FAST = dict(max_tokens=64, quiet=True, batch_size=8)


def short_seqs(n: int, seed: int) -> list[str]:
    """Random sequences of 30-84 bp: at most 15 tokens, one padded length, one compilation."""
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGT"), size=int(rng.integers(30, 85)))) for _ in range(n)]


def tree_hash(path: Path) -> dict:
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


# A v1-style model: learned positions, GELU, FFN biases, token dropout at inference.
TINY_V1_HP = {
    "max_positions": 64,
    "embed_scale": 1.0,
    "emb_layer_norm_before": False,
    "attention_heads": 4,
    "embed_dim": 32,
    "ffn_embed_dim": 64,
    "num_layers": 2,
    "add_bias_kv": False,
    "token_dropout": True,
    "masking_ratio": 0.1,
    "masking_prob": 0.8,
    "k_for_kmers": 6,
}

# The 50M_multi_species_v2 architecture (12 layers, 512 wide, 16 heads, 2048 FFN with GLU).
NT50M_V2_HP = {
    "max_positions": 2048,
    "embed_scale": 1.0,
    "emb_layer_norm_before": False,
    "attention_heads": 16,
    "embed_dim": 512,
    "ffn_embed_dim": 2048,
    "num_layers": 12,
    "positional_embedding": None,
    "add_bias_kv": False,
    "add_bias_ffn": False,
    "use_glu_in_ffn": True,
    "ffn_activation_name": "swish",
    "use_rotary_embedding": True,
    "token_dropout": False,
    "masking_ratio": 0.1,
    "masking_prob": 0.8,
    "k_for_kmers": 6,
}


def write_checkpoint(out_dir: Path, hyperparams: dict, *, seed: int = 0, names: str = "ondisk",
                     model_name: str | None = None) -> Path:
    """Write a random checkpoint in the official layout (`OUT/jax_model/...`); return OUT."""
    make_weights.main([
        _write_json(out_dir / "hp.json", hyperparams), str(out_dir), "--seed", str(seed),
        "--names", names, *(["--model-name", model_name] if model_name else []),
    ])
    (out_dir / "hp.json").unlink()
    return out_dir


def _write_json(path: Path, obj: dict) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return str(path)


@pytest.fixture(scope="session")
def tiny_v2_checkpoint() -> Path:
    """The golden tiny v2 checkpoint directory (read-only: copy it before changing it)."""
    return TINY_V2 / "checkpoint"


@pytest.fixture(scope="session")
def tiny_v1_checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("tiny_v1"), TINY_V1_HP, seed=1)


@pytest.fixture(scope="session")
def jax_compile_cache(tmp_path_factory) -> dict:
    """A persistent JAX compilation cache for the session; returns the environment that gives
    subprocesses the same cache. Each Embedder jits its own function, so without it every
    build in a test recompiles the same shapes (seconds each on a small machine)."""
    import jax

    path = str(tmp_path_factory.mktemp("jax_cache"))
    env = {
        "JAX_COMPILATION_CACHE_DIR": path,
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
    }
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return env


def kill_at_pause(victim, procs, marker, timeout: float = 300) -> tuple[bool, list]:
    """SIGKILL ``victim`` once it has stopped itself at its pause point (it was started with
    ``EMBEDCACHE_TEST_PAUSE=<point>:<marker>[:<n>]``, see :mod:`embedcache.store.pause`), then
    wait for every process of ``procs``. The fault happens where the test says, whatever the
    machine's speed.

    Returns whether the victim reached the point (``False``: it ended first), and each
    process's ``(stdout, stderr)``. Whatever happens, no process is left running.
    """
    import os
    import signal
    import subprocess

    try:
        while not os.path.exists(marker) and victim.poll() is None:
            try:
                victim.wait(timeout=0.02)
            except subprocess.TimeoutExpired:
                pass
        reached = os.path.exists(marker)
        if reached:
            os.kill(victim.pid, signal.SIGKILL)
        return reached, [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            p.kill()


def kill_once_rows_committed(victim, procs, cache_path, rows: int, timeout: float = 180) -> tuple[bool, list]:
    """SIGKILL ``victim`` once the store at ``cache_path`` holds ``rows`` committed rows (or when
    ``timeout`` passes), then wait for every process of ``procs``.

    Returns whether the victim was still running when killed, and each process's
    ``(stdout, stderr)``. Whatever happens, no process is left running.
    """
    import os
    import signal
    import time

    from embedcache.store import Store

    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and victim.poll() is None:
            store = Store(cache_path)
            if store.exists() and store.keys() and store.group(store.keys()[0]).n_rows >= rows:
                break
            time.sleep(0.02)
        killed = victim.poll() is None
        os.kill(victim.pid, signal.SIGKILL)
        return killed, [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()


# -- classify: a store of planted features, and the command line in-process ----------------

#: Width of planted_task's features.
PLANTED_D = 16


def write_feature_store(path: Path, sequences, features: dict, *, name="planted", seed=0,
                        num_layers=2, random_weights=None, max_tokens=64) -> str:
    """A real embedcache store whose (layer, pool) arrays hold the given features.

    ``features`` maps (layer, pool) to an (n, D) array, row i for ``sequences[i]``. Returns the
    model key.
    """
    from embedcache.store import ModelSpec, Store, StoreWriting, pooled_name, sequence_digest

    dim = next(iter(features.values())).shape[1]
    spec = ModelSpec(param_digest=f"{seed:064x}", max_tokens=max_tokens)
    attrs = {"model_name": name, "source": name, "variant": "v2", "feature_dim": dim,
             "num_layers": num_layers, "attention_heads": 4,
             "tokenizer": {"variant": "v2", "k": 6, "vocab_size": 4107}}
    if random_weights is not None:
        attrs["random_weights"] = random_weights
    seen = set()
    with StoreWriting(Store(path)) as writing:
        writer = writing.group(spec, attrs)
        writer.ensure_arrays([pooled_name(l, p) for l, p in features], feature_dim=dim)
        for i, seq in enumerate(sequences):
            if seq in seen:
                continue
            seen.add(seq)
            writer.add_new_row(sequence_digest(seq), seq, len(seq) // 6 + 2, 1,
                               {pooled_name(l, p): x[i] for (l, p), x in features.items()})
        writer.flush()
    return spec.key


def planted_task(n=240, classes=(0, 1), seed=0, signal=0.6):
    """Random sequences, labels, and features where layer 2 mean (the default pooling) carries
    the label strongly, layer 1 mean weakly and the CLS pool not at all."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    seqs = ["".join(rng.choice(list("ACGT"), rng.integers(30, 60))) for _ in range(n)]
    y_idx = rng.integers(0, len(classes), n)
    centers = rng.normal(size=(len(classes), PLANTED_D))
    feats = {
        (2, "mean"): (signal * centers[y_idx] + rng.normal(size=(n, PLANTED_D))).astype(np.float32),
        (1, "mean"): (0.3 * centers[y_idx] + rng.normal(size=(n, PLANTED_D))).astype(np.float32),
        (2, "cls"): rng.normal(size=(n, PLANTED_D)).astype(np.float32),
    }
    table = pd.DataFrame({"id": [f"seq{i}" for i in range(n)], "sequence": seqs,
                          "label": np.array(classes, dtype=object)[y_idx]})
    return table, feats


def run_cli(module, args, monkeypatch, capsys):
    """Run a console script's main() in-process; return (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", [module.app.info.name, *map(str, args)])
    monkeypatch.setenv("COLUMNS", "220")  # rich's width, where a test makes stdout a terminal
    with pytest.raises(SystemExit) as exit_info:
        module.main()
    captured = capsys.readouterr()
    code = exit_info.value.code
    return (0 if code is None else code), captured.out, captured.err
