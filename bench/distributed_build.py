"""Scaling of a build beyond one process, measured side by side in one run (medians over repeats).

Run:  flock /tmp/embedcache-bench.lock python bench/distributed_build.py [--sequences 300] [--repeats 1]

The same work each time: a build of N random 300-bp sequences (default 1,600) into an empty store
with the 50M_multi_species_v2 architecture (seeded random weights, last layer, CLS + mean,
batches of 16), every model process limited to one CPU: pinned to its own core
(``os.sched_setaffinity``; XLA's CPU runtime starts as many threads as it is allowed cores,
and its thread-count flags no longer bound it):

(a) ``build(..., dask=...)`` on a LocalCluster of 2 single-threaded worker processes against
    1 worker (each cluster warmed up first: the workers' checkpoint load and compilation
    are not timed; the client's scan and the store's commits are).
(b) 2 concurrent ``--shard 0/2`` / ``--shard 1/2`` jobs (separate processes, one store)
    against 1 job over the whole input; wall time from start to the last job's exit
    (process start and checkpoint load included, compiled programs in a warm disk cache).

Target: >= 1.6x the throughput of one worker / one job in both cases, on 2 cores. A shard
job's fixed start (interpreter, JAX, checkpoint, scan: several seconds) is paid by every job
in parallel, so it does not shrink with more jobs, and the digest split of a small input is
uneven by a few percent: measured, 1.45x at N = 300, 1.57x at 800, 1.82x at 1,600. Real
array jobs embed far more than that per job. The store's
commit time as a share of each build's time is printed beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def _pin(core: int) -> int:
    """Limit this process (every thread it has, and so those they start) to one CPU core."""
    for tid in os.listdir("/proc/self/task"):
        os.sched_setaffinity(int(tid), {core % os.cpu_count()})
    return core
MODEL = "random-50M_multi_species_v2"
OPTIONS = dict(model=MODEL, pools=["cls", "mean"], max_tokens=64, batch_size=16, quiet=True)


def _fasta(path: Path, n: int, seed: int) -> Path:
    import numpy as np

    rng = np.random.default_rng(seed)
    path.write_text("".join(f">s{i}\n{''.join(rng.choice(list('ACGT'), size=300))}\n" for i in range(n)))
    return path


def _job(cache: str, fasta: str, shard: str | None) -> None:
    """One build process (case b); prints its report as JSON."""
    from embedcache import EmbeddingCache

    report = EmbeddingCache(cache).build(fasta, shard=shard, **OPTIONS)
    print(json.dumps(report.to_dict()))


def _shard_jobs(work: Path, fasta: Path, n_jobs: int, tag: str) -> tuple[float, list[dict]]:
    cache = work / f"shards-{tag}.zarr"
    specs = [None] if n_jobs == 1 else [f"{i}/{n_jobs}" for i in range(n_jobs)]
    env = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, __file__, "--job", str(cache), str(fasta), spec or "-"], env=env,
                              stdout=subprocess.PIPE, text=True, preexec_fn=lambda core=core: _pin(core))
             for core, spec in enumerate(specs)]
    outs = [p.communicate()[0] for p in procs]
    seconds = time.perf_counter() - t0
    if any(p.returncode for p in procs):
        raise SystemExit(f"a shard job failed: {outs}")
    return seconds, [json.loads(o.strip().splitlines()[-1]) for o in outs]


def _dask_build(client, work: Path, fasta: Path, warm: Path, tag: str):
    from embedcache import EmbeddingCache

    for core, worker in enumerate(sorted(client.scheduler_info()["workers"])):
        client.run(_pin, core, workers=[worker])  # before the workers load JAX (in the warm-up)

    # Warm-up: every worker loads the checkpoint and compiles (one batch per worker at least).
    EmbeddingCache(work / f"warm-{tag}.zarr").build(warm, dask=client, **OPTIONS)
    t0 = time.perf_counter()
    report = EmbeddingCache(work / f"dask-{tag}.zarr").build(fasta, dask=client, **OPTIONS)
    return time.perf_counter() - t0, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=1600)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--job", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        cache, fasta, shard = args.job
        return _job(cache, fasta, None if shard == "-" else shard)

    os.environ.update(ONE_THREAD)  # inherited by the Dask workers and the shard jobs
    work = Path(tempfile.mkdtemp(prefix="distributed-bench-"))
    os.environ.setdefault("EMBEDCACHE_COMPILE_CACHE", str(work / "xla-cache"))  # shared by every process
    os.environ["PYTHONPATH"] = str(ROOT)
    from distributed import Client, LocalCluster

    n = args.sequences
    fasta = _fasta(work / "input.fa", n, seed=0)
    # One warm-up input per cluster: 4 full batches, so that each of 2 workers gets some.
    warm = [_fasta(work / f"warm{r}.fa", 64, seed=100 + r) for r in range(2 * args.repeats + 1)]
    print(f"{n} x 300 bp, {MODEL}, each model process pinned to one of {os.cpu_count()} CPU cores; work in {work}")

    # Fill the disk compile cache once (the shapes of full and partial batches), untimed.
    _shard_jobs(work, warm[-1], 1, "compile")

    figures: dict[str, list[float]] = {k: [] for k in ("dask1", "dask2", "shard1", "shard2")}
    write_share: dict[str, list[float]] = {k: [] for k in figures}
    for r in range(args.repeats):
        for workers in (1, 2):
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                              dashboard_address=None) as cluster, Client(cluster) as client:
                seconds, report = _dask_build(client, work, fasta, warm[2 * r + workers - 1], f"{r}-{workers}")
            assert report.computed == n, report.summary()
            figures[f"dask{workers}"].append(n / seconds)
            write_share[f"dask{workers}"].append(report.write_seconds / report.seconds)
            print(f"  repeat {r}: dask {workers} worker(s): {seconds:.1f} s, {n / seconds:.2f} seq/s, "
                  f"store commits {100 * report.write_seconds / report.seconds:.1f}% of the build")
        for jobs in (1, 2):
            seconds, reports = _shard_jobs(work, fasta, jobs, f"{r}-{jobs}")
            assert sum(rep["computed"] for rep in reports) == n, reports
            figures[f"shard{jobs}"].append(n / seconds)
            share = max(rep["write_seconds"] / rep["seconds"] for rep in reports)
            write_share[f"shard{jobs}"].append(share)
            print(f"  repeat {r}: {jobs} shard job(s): {seconds:.1f} s, {n / seconds:.2f} seq/s, "
                  f"store commits {100 * share:.1f}% of a job's build")

    med = {k: statistics.median(v) for k, v in figures.items()}
    print("\nmedians (sequences per second)")
    for a, b, what in (("dask1", "dask2", "2 Dask workers vs 1"), ("shard1", "shard2", "2 --shard jobs vs 1")):
        ratio = med[b] / med[a]
        print(f"  {what:<22} {med[b]:7.2f} vs {med[a]:7.2f} seq/s: {ratio:.2f}x (target >= 1.6x: "
              f"{'met' if ratio >= 1.6 else 'NOT met'}); store commits "
              f"{100 * statistics.median(write_share[b]):.1f}% / {100 * statistics.median(write_share[a]):.1f}% "
              "of build time")


if __name__ == "__main__":
    main()
