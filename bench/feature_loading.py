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
warm-up each (page cache warm for both), and the medians compared. The store's time
includes the whole lookup: normalizing and hashing the 47k sequences, searching the
persisted index, checking the fill mask.

The layout's trade-off is measured in the same run: the same features are also written
with lz4-compressed chunks (Blosc, byte shuffle), and bytes on disk and speed of both are
printed. The chosen layout (uncompressed chunks with a CRC32C each) is the first.

Usage::

    python bench/feature_loading.py [--repeats 7] [--workdir DIR] [--rows N]

Target: store loading at >= 0.3x np.load's speed (ratio printed; exit status 1 below it).
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
TARGET = 0.3


def write_store(path: Path, sequences: list[str], features: np.ndarray, *, lz4: bool = False) -> str:
    """Write one model group holding ``features`` (row i for ``sequences[i]``); its key.

    ``lz4`` writes the pooled array with the compressed chunks of the alternative layout.
    """
    from embedcache.store import ModelSpec, Store, StoreWriting, layout, pooled_name, sequence_digest

    if lz4:
        saved, layout._RAW = layout._RAW, layout._LZ4
        try:
            return write_store(path, sequences, features)
        finally:
            layout._RAW = saved

    spec = ModelSpec(param_digest="0" * 64, max_tokens=512)
    attrs = {"model_name": "bench-synthetic", "source": "synthetic", "variant": "v2",
             "feature_dim": DIM, "num_layers": LAYER, "attention_heads": 16,
             "tokenizer": {"variant": "v2", "k": 6, "vocab_size": 4107}}
    name = pooled_name(LAYER, POOL)
    seen = set()
    with StoreWriting(Store(path)) as writing:
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
    layouts = ("uncompressed", "lz4")
    try:
        t0 = time.perf_counter()
        keys = {name: write_store(work / f"{name}.zarr", sequences, X, lz4=name == "lz4") for name in layouts}
        t_write = time.perf_counter() - t0
        np.save(work / "features.npy", X)
        caches = {name: EmbeddingCache(work / f"{name}.zarr") for name in layouts}

        def from_npy():
            return np.load(work / "features.npy")

        def from_store(name):
            return lambda: caches[name].embeddings(sequences, model=keys[name], layer=LAYER, pool=POOL)

        loads = {"np.load": from_npy, **{name: from_store(name) for name in layouts}}
        for load in loads.values():
            assert np.array_equal(load(), X)  # warm-up, and the values are right
        times = {label: [] for label in loads}
        cpu = {label: [] for label in loads}  # the machine is shared: CPU time is steadier
        for _ in range(args.repeats):
            for label, load in loads.items():
                t0, c0 = time.perf_counter(), time.process_time()
                load()
                times[label].append(time.perf_counter() - t0)
                cpu[label].append(time.process_time() - c0)
        disk = {name: caches[name].store.disk_bytes() for name in layouts}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    mb = X.nbytes / 2**20
    print(f"features: {n} x {DIM} float32 ({mb:.0f} MiB), {len(unique)} unique sequences; "
          f"stores written in {t_write:.1f} s")
    for label in loads:
        size = f"{disk[label] / 2**20:6.1f} MiB on disk" if label in disk else f"{mb:6.1f} MiB .npy     "
        print(f"{label:>13}: median {med[label] * 1e3:8.1f} ms  ({mb / med[label]:7.0f} MiB/s)  {size}  "
              f"x{med['np.load'] / med[label]:.2f} np.load  runs: {', '.join(f'{t * 1e3:.0f}' for t in times[label])} ms; "
              f"CPU median {med_cpu[label] * 1e3:.1f} ms (x{med_cpu['np.load'] / med_cpu[label]:.2f})")
    ratio = med["np.load"] / med["uncompressed"]
    print(f"ratio (store speed / np.load speed, chosen uncompressed layout): {ratio:.2f}  "
          f"(target >= {TARGET:.2f}: {'met' if ratio >= TARGET else 'NOT met'})")
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
