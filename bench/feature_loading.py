"""Loading probe features from the store vs ``np.load`` of the same matrix from a .npy file.

The task is gue_prom_core_all's training split (47,356 sequences, ``data/prom_core_all.parquet``)
with 512-wide float32 features, the size of NT-50M's layer-12 CLS embeddings. The features are
synthetic (random, seeded): computing real ones needs the 50M model over 47k sequences, and
loading speed does not depend on the values' meaning, only on their size and compressibility
(random floats are the worst case for the store's compressor). They are written through the
real store (:class:`embedcache.store.Store`, the writer ``embedcache build`` uses) and read
back the way ``classify`` reads them: ``EmbeddingCache.embeddings(sequences, ...)`` for the
task's sequences in file order, duplicates included. The baseline is ``np.load`` of the same
(47,356, 512) matrix saved as .npy. Both are timed in the same run, alternating, after one
warm-up each (page cache warm for both), and the medians compared.

Usage::

    python bench/feature_loading.py [--repeats 7] [--workdir DIR] [--rows N]

Target: store loading at >= 50% of np.load's speed (ratio printed; exit status 1 below it).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
TASK = ROOT / "data" / "prom_core_all.parquet"
DIM = 512
LAYER, POOL = 12, "cls"
TARGET = 0.5


def write_store(path: Path, sequences: list[str], features: np.ndarray) -> str:
    """Write one model group holding ``features`` (row i for ``sequences[i]``); its key."""
    from embedcache.store import ModelSpec, Store, pooled_name, sequence_digest

    spec = ModelSpec(param_digest="0" * 64, max_tokens=512)
    attrs = {"model_name": "bench-synthetic", "source": "synthetic", "variant": "v2",
             "feature_dim": DIM, "num_layers": LAYER, "attention_heads": 16,
             "tokenizer": {"variant": "v2", "k": 6, "vocab_size": 4107}}
    name = pooled_name(LAYER, POOL)
    seen = set()
    with Store(path).writing() as writing:
        writer = writing.group(spec, attrs)
        writer.ensure_arrays([name], feature_dim=DIM)
        for seq, x in zip(sequences, features):
            if seq not in seen:
                seen.add(seq)
                writer.add_new_row(sequence_digest(seq), seq, len(seq) // 6 + 2, 1, {name: x})
        writer.flush()
    return spec.key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rows", type=int, default=None, help="use the first N rows only")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)

    from embedcache import EmbeddingCache

    table = pd.read_parquet(TASK)
    sequences = table.loc[table["split"] == "train", "sequence"].str.upper().tolist()[: args.rows]
    n = len(sequences)
    # Rows of a repeated sequence share their features, as they do in the store.
    first = pd.Series(sequences).groupby(sequences, sort=False).ngroup().to_numpy()
    unique = np.random.default_rng(0).standard_normal((first.max() + 1, DIM), dtype=np.float32)
    X = unique[first]

    work = Path(tempfile.mkdtemp(prefix="bench-features-", dir=args.workdir))
    try:
        t0 = time.perf_counter()
        key = write_store(work / "cache.zarr", sequences, X)
        t_write = time.perf_counter() - t0
        np.save(work / "features.npy", X)
        cache = EmbeddingCache(work / "cache.zarr")

        def from_npy():
            return np.load(work / "features.npy")

        def from_store():
            return cache.embeddings(sequences, model=key, layer=LAYER, pool=POOL)

        assert np.array_equal(from_store(), X) and np.array_equal(from_npy(), X)
        times = {"np.load": [], "store": []}
        for _ in range(args.repeats):
            for label, load in (("np.load", from_npy), ("store", from_store)):
                t0 = time.perf_counter()
                load()
                times[label].append(time.perf_counter() - t0)
        disk = sum(p.stat().st_size for p in (work / "cache.zarr").rglob("*") if p.is_file())
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["np.load"] / med["store"]
    mb = X.nbytes / 2**20
    print(f"features: {n} x {DIM} float32 ({mb:.0f} MiB), {len(unique)} unique sequences; "
          f"store written in {t_write:.1f} s, {disk / 2**20:.0f} MiB on disk")
    for label in ("np.load", "store"):
        print(f"{label:>8}: median {med[label] * 1e3:8.1f} ms  ({mb / med[label]:7.0f} MiB/s)  "
              f"runs: {', '.join(f'{t * 1e3:.0f}' for t in times[label])} ms")
    print(f"ratio (store speed / np.load speed): {ratio:.2f}  (target >= {TARGET:.2f}: "
          f"{'met' if ratio >= TARGET else 'NOT met'})")
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
