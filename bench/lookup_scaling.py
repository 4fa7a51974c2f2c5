"""Finding a task's rows costs what the task costs, not what the store holds.

The task is gue_prom_core_all's training split (47,356 sequences). It is read from two
stores: one holding just the task's sequences, and one 5x larger (the task's sequences
spread at random among four times as many others, committed in batches as builds do).
For each, in the same run and alternating, it times (medians):

- the lookup: normalizing and hashing the task's sequences, searching the persisted
  index and checking the fill mask (``EmbeddingCache._rows``), with its peak memory;
- the whole read through ``EmbeddingCache.embeddings`` (lookup and features), with its
  peak memory.

Features are synthetic, 128 wide (the lookup does not depend on their width; a narrow
store keeps the 5x store quick to write). Target: the 5x store costs <= 1.5x (exit 1 if not).

Usage::

    python bench/lookup_scaling.py [--repeats 5] [--scale 5] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
TASK = ROOT / "data" / "prom_core_all.parquet"
DIM, LAYER, POOL = 128, 12, "cls"
TARGET = 1.5


def write_store(path: Path, sequences: list[str], block_rows: int = 4096) -> str:
    from embedcache.store import ModelSpec, Store, StoreWriting, pooled_name, sequence_digest

    spec = ModelSpec(param_digest="0" * 64, max_tokens=512)
    attrs = {"model_name": "bench-synthetic", "feature_dim": DIM, "num_layers": LAYER}
    name = pooled_name(LAYER, POOL)
    rng = np.random.default_rng(0)
    writer = StoreWriting(Store(path)).group(spec, attrs, block_rows=block_rows, commit_seconds=1e9)
    writer.ensure_arrays([name], feature_dim=DIM)
    for seq in dict.fromkeys(sequences):
        writer.add_new_row(sequence_digest(seq), seq, len(seq) // 6 + 2, 1,
                           {name: rng.standard_normal(DIM, dtype=np.float32)})
    writer.flush()
    return spec.key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scale", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)

    from embedcache import EmbeddingCache
    from embedcache.store import pooled_name

    table = pd.read_parquet(TASK)
    task = table.loc[table["split"] == "train", "sequence"].str.upper().tolist()
    rng = random.Random(1)
    others = ["".join(rng.choices("ACGT", k=70)) for _ in range((args.scale - 1) * len(task))]
    big = task + others
    rng.shuffle(big)

    work = Path(tempfile.mkdtemp(prefix="bench-lookup-", dir=args.workdir))
    try:
        t0 = time.perf_counter()
        keys = {"1x": write_store(work / "small.zarr", task), f"{args.scale}x": write_store(work / "big.zarr", big)}
        t_write = time.perf_counter() - t0
        caches = {"1x": EmbeddingCache(work / "small.zarr"), f"{args.scale}x": EmbeddingCache(work / "big.zarr")}
        name = pooled_name(LAYER, POOL)
        groups = {label: caches[label].group(keys[label]) for label in caches}
        runs = {label: groups[label].runs for label in caches}

        def lookup(label):
            return caches[label]._rows(groups[label], task, name, "", "")

        def read(label):
            return caches[label].embeddings(task, model=keys[label], layer=LAYER, pool=POOL)

        for label in caches:  # warm-up, and both find every row
            assert (lookup(label) >= 0).all() and read(label).shape == (len(task), DIM)
        times = {(what, label): [] for what in ("lookup", "read") for label in caches}
        cpu = {key: [] for key in times}  # the machine is shared: CPU time is steadier
        for _ in range(args.repeats):
            for label in caches:
                for what, f in (("lookup", lookup), ("read", read)):
                    t0, c0 = time.perf_counter(), time.process_time()
                    f(label)
                    times[(what, label)].append(time.perf_counter() - t0)
                    cpu[(what, label)].append(time.process_time() - c0)
        peak, read_peak = {}, {}
        for label in caches:
            for f, into in ((lookup, peak), (read, read_peak)):
                tracemalloc.start()
                f(label)
                into[label] = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
        rows = {label: groups[label].n_rows for label in caches}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    print(f"task: {len(task)} sequences; stores written in {t_write:.1f} s")
    for label in caches:
        print(f"store {label:>3}: {rows[label]:>8} rows, {len(runs[label])} index runs; lookup median "
              f"{med[('lookup', label)] * 1e3:7.1f} ms (peak {peak[label] / 2**20:5.1f} MiB), embeddings median "
              f"{med[('read', label)] * 1e3:7.1f} ms (peak {read_peak[label] / 2**20:5.1f} MiB); CPU medians "
              f"{med_cpu[('lookup', label)] * 1e3:.1f} / {med_cpu[('read', label)] * 1e3:.1f} ms")
    big_label = f"{args.scale}x"
    ratios = {what: med[(what, big_label)] / med[(what, "1x")] for what in ("lookup", "read")}
    ok = all(r <= TARGET for r in ratios.values())
    print(f"cost of the {big_label} store / the 1x store: lookup {ratios['lookup']:.2f}, embeddings "
          f"{ratios['read']:.2f}; memory: lookup {peak[big_label] / peak['1x']:.2f}, embeddings "
          f"{read_peak[big_label] / read_peak['1x']:.2f}  (target <= {TARGET}: "
          f"{'met' if ok else 'NOT met'}); CPU time: lookup "
          f"{med_cpu[('lookup', big_label)] / med_cpu[('lookup', '1x')]:.2f}, embeddings "
          f"{med_cpu[('read', big_label)] / med_cpu[('read', '1x')]:.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
