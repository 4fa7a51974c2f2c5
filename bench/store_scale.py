"""Grow one model group through the real write path and measure what grows with it.

``python bench/store_scale.py --rows 1000000 --width 16`` writes ``--rows`` synthetic
rows (one pooled array ``--width`` wide) in commits of ``--block`` rows with one writer,
timing every commit, then verifies the store and runs 4 writers against 1 on a fresh
store. It ends by printing one JSON line:

* ``commit_median_ratio``: median commit time over the last tenth of the commits, over
  the first tenth; ``commit_max_s``: the longest the lock was held (by a commit, or an
  index compaction's swap);
* ``index_bytes_read_per_commit``: digest-index bytes a commit read (its lookup of the
  new rows, outside the lock, and runs it merged), median over the last tenth, and
  ``index_bytes_read_under_lock``: those read holding the lock;
* ``verify_peak_rss_mb`` and ``verify_mb_per_s`` of verifying the store in a child
  process (its interpreter start-up not timed), and ``verify_vs_raw``: that speed over a
  plain sequential read of the files;
* ``write_mb_per_s``: the bytes of the store's chunk objects over the seconds the store
  took to write them (the synthetic input is made outside that time), and
  ``write_vs_raw``: that over ``numpy.tofile`` writing files of the same sizes;
* ``writers4_vs_1``: rows per second of 4 writer processes together over one's, from the
  first one's start of writing to the last one's end (interpreter start-ups left out);
  ``lock_wait_fraction``: the share of the 4 writers' wall time spent waiting for the lock;
* ``lookup_ratio``: a ``--lookup``-sequence lookup and read at the end over the same at
  100,000 rows (or half the rows, if fewer); ``lookup_peak_ratio``: the same for the
  peak memory of the process doing it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def sequences(start: int, n: int) -> list[str]:
    """Distinct synthetic sequences: row ``i`` spells ``i`` in base 4, padded (cheap to make)."""
    out = []
    for i in range(start, start + n):
        digits = np.base_repr(i, 4).rjust(16, "0")
        out.append("ACGT"[int(digits[0])] + digits.translate(str.maketrans("0123", "ACGT")) + "ACGTTGCA")
    return out


class Probe:
    """Times commits and the lock, and counts index bytes read, by wrapping the store's functions."""

    def __init__(self):
        from embedcache.store import chunks, lock as store_lock, write

        self.commits, self.waits, self.holds, self.index_bytes, self.locked_bytes, self.current = [], [], [], [], [], 0
        from embedcache.store import index

        real_lock, real_fetch, real_read_run = write.commit_lock, chunks.fetch, index.read_run
        real_commit, real_retries = write.GroupWriter._commit, write.GroupWriter._commit_with_retries
        probe = self

        @contextmanager
        def lock(*args, **kwargs):
            t0 = time.perf_counter()
            with real_lock(*args, **kwargs):
                t1 = time.perf_counter()
                probe.waits.append(t1 - t0)
                try:
                    yield
                finally:
                    probe.holds.append(time.perf_counter() - t1)

        def fetch(arr, indices, into=None):
            raws = real_fetch(arr, indices, into)
            if "index/" in str(arr.store_path.path):
                probe.current += sum(0 if r is None else r.nbytes for r in raws)
            return raws

        def commit(self_, before, planned):
            start = probe.current
            t0 = time.perf_counter()
            try:
                return real_commit(self_, before, planned)
            finally:
                if planned[0]:
                    probe.commits.append(time.perf_counter() - t0)
                    probe.locked_bytes.append(probe.current - start)

        def retries(self_, p):
            probe.current = 0
            try:
                return real_retries(self_, p)
            finally:
                if p.new:
                    probe.index_bytes.append(probe.current)

        def read_run(group, a, b):  # a merge reads whole runs through Zarr
            entries = real_read_run(group, a, b)
            probe.current += entries.nbytes
            return entries

        # Commits and index compactions (store.compact) alike.
        write.commit_lock = store_lock.commit_lock = lock
        chunks.fetch, index.read_run = fetch, read_run
        write.GroupWriter._commit, write.GroupWriter._commit_with_retries = commit, retries


def writer_for(path: Path, width: int, block: int):
    from embedcache.store import ModelSpec, Store, StoreWriting, pooled_name

    spec = ModelSpec(param_digest="5" * 64, max_tokens=64)
    writer = StoreWriting(Store(path)).group(spec, {"model_name": "scale"}, block_rows=block, commit_seconds=1e9)
    writer.ensure_arrays([pooled_name(1, "cls")], feature_dim=width)
    writer.planned_on(writer.snapshot())  # the rows grown are new: as a build plans them
    return writer


def grow(writer, start: int, n: int, width: int, on_rows=None) -> float:
    """Add rows ``start..start+n`` (values: a fixed random block); seconds the store took.

    The synthetic input (sequences, their digests) is made outside the time measured:
    a build has it before it writes.
    """
    from embedcache.store import pooled_name, sequence_digest

    name = pooled_name(1, "cls")
    values = np.random.default_rng(0).standard_normal((1024, width)).astype(np.float32)
    took = 0.0
    step = 65536
    for lo in range(start, start + n, step):
        seqs = sequences(lo, min(step, start + n - lo))
        digests = [sequence_digest(s) for s in seqs]
        t0 = time.perf_counter()
        for i, (d, s) in enumerate(zip(digests, seqs)):
            writer.add_new_row(d, s, 4, 1, {name: values[(lo + i) % 1024]})
        took += time.perf_counter() - t0
        if on_rows is not None:
            on_rows(lo + step)
    t0 = time.perf_counter()
    writer.flush()
    return took + time.perf_counter() - t0


def lookup(path: Path, n_rows: int, n: int) -> tuple[float, float]:
    """Seconds of looking up and reading ``n`` stored sequences (in a child process), and the
    peak MiB allocated doing it (tracemalloc: NumPy's buffers included), result included."""
    code = f"""
import sys, time, numpy as np
sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / 'bench')!r})
from store_scale import sequences
from embedcache.store import Store, pooled_name, sequence_digest
g = Store({str(path)!r}).group(Store({str(path)!r}).keys()[0])
rng = np.random.default_rng(1)
picks = np.sort(rng.choice({n_rows}, {n}, replace=False))
seqs = [sequences(int(i), 1)[0] for i in picks]
import tracemalloc
tracemalloc.start()
t0 = time.perf_counter()
rows = g.rows_of([sequence_digest(s) for s in seqs])
x = g.read(pooled_name(1, "cls"), rows)
took = time.perf_counter() - t0
print(took, tracemalloc.get_traced_memory()[1] / 2**20)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


def raw_write_mb_s(work: Path, sizes: list) -> float:
    """MiB/s of ``numpy.tofile`` writing files of ``sizes`` bytes (the store's objects):
    the same bytes in the same chunking as the store holds."""
    block = np.random.default_rng(0).integers(0, 255, max(sizes), dtype=np.uint8)
    folder = work / "raw"
    folder.mkdir()
    t0 = time.perf_counter()
    for i, size in enumerate(sizes):
        block[:size].tofile(folder / str(i))
    took = time.perf_counter() - t0
    shutil.rmtree(folder)
    return sum(sizes) / 2**20 / took


def object_sizes(path: Path) -> list:
    """Sizes of the chunk objects of a store (manifests, hints and metadata left out)."""
    return [p.stat().st_size for p in path.rglob("*") if p.is_file() and "." in p.name
            and not p.name.endswith(".json") and "commits" not in p.parts and p.name != "embedcache.lock"]


def raw_read_mb_s(path: Path) -> tuple[float, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    t0 = time.perf_counter()
    total = sum(len(p.read_bytes()) for p in files)
    return total / 2**20 / (time.perf_counter() - t0), total


def verify(path: Path) -> tuple[float, float]:
    """Seconds of verifying the store in a child process (its start-up left out) and the
    child's peak RSS in MiB."""
    code = f"""
import resource, sys, time
sys.path.insert(0, {str(ROOT)!r})
from embedcache.store import Store
t0 = time.perf_counter()
problems = Store({str(path)!r}).verify()
took = time.perf_counter() - t0
assert not problems, problems
print(took, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


def writers(work: Path, width: int, block: int, n: int, count: int) -> tuple[float, float]:
    """Rows per second of ``count`` writer processes adding ``n`` distinct rows each, and
    the share of their wall time spent waiting for the lock."""
    path = work / f"w{count}.zarr"
    writer_for(path, width, block)
    code = f"""
import json, sys, time
sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / 'bench')!r})
import store_scale as s
probe = s.Probe()
w = s.writer_for(s.Path({str(path)!r}), {width}, {block})
start = time.time()
s.grow(w, int(sys.argv[1]) * {n}, {n}, {width})
print(json.dumps({{"start": start, "end": time.time(), "wait": sum(probe.waits)}}))
"""
    procs = [subprocess.Popen([sys.executable, "-c", code, str(i)], stdout=subprocess.PIPE, text=True)
             for i in range(count)]
    results = [json.loads(p.communicate()[0]) for p in procs]
    # From the first writer's start to the last one's end: interpreter start-ups (which more
    # writers on few cores would serialize) are not the store's.
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    return count * n / wall, sum(r["wait"] for r in results) / sum(r["end"] - r["start"] for r in results)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--block", type=int, default=4096, help="rows per commit")
    parser.add_argument("--lookup", type=int, default=50_000)
    parser.add_argument("--writer-rows", type=int, default=None, help="rows per writer in the 4-vs-1 run")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="store-scale-", dir=args.workdir))
    try:
        probe = Probe()
        path = work / "grow.zarr"
        writer = writer_for(path, args.width, args.block)
        at = min(100_000, args.rows // 2)
        n_lookup = min(args.lookup, at)
        early = {}

        def on_rows(rows):
            if not early and rows >= at:
                writer.flush()
                early["lookup"] = lookup(path, writer.n_rows, n_lookup)

        took = grow(writer, 0, args.rows, args.width, on_rows)
        late, late_mb = lookup(path, args.rows, n_lookup)
        sizes = object_sizes(path)
        raw_write = raw_write_mb_s(work, sizes)
        verify_s, verify_rss = verify(path)
        raw_read, store_bytes = raw_read_mb_s(path)
        tenth = max(1, len(probe.commits) // 10)
        n_w = args.writer_rows or max(args.block * 4, min(args.rows // 4, 100_000))
        one, _ = writers(work, args.width, args.block, n_w, 1)
        four, wait = writers(work, args.width, args.block, n_w, 4)
        out = {
            "rows": args.rows, "width": args.width, "block": args.block, "commits": len(probe.commits),
            "commit_median_ratio": round(statistics.median(probe.commits[-tenth:])
                                         / statistics.median(probe.commits[1:tenth + 1] or probe.commits), 3),
            "commit_max_s": round(max(probe.holds), 3),
            "commit_median_s": round(statistics.median(probe.commits), 4),
            "index_bytes_read_per_commit": int(statistics.median(probe.index_bytes[-tenth:])),
            "index_bytes_read_under_lock": int(statistics.median(probe.locked_bytes[-tenth:])),
            "verify_peak_rss_mb": round(verify_rss, 1),
            "verify_mb_per_s": round(store_bytes / 2**20 / verify_s, 1),
            "verify_vs_raw": round(store_bytes / 2**20 / verify_s / raw_read, 3),
            "write_mb_per_s": round(sum(sizes) / 2**20 / took, 1),
            "write_vs_raw": round(sum(sizes) / 2**20 / took / raw_write, 3),
            "writers4_vs_1": round(four / one, 3),
            "lock_wait_fraction": round(wait, 3),
            "lookup_ratio": round(late / early["lookup"][0], 3),
            "lookup_peak_ratio": round(late_mb / early["lookup"][1], 3),
            "cpus": os.cpu_count(),
        }
        print(json.dumps(out))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
