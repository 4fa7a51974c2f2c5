"""Merging the digest index's large runs after a commit, with the lock held only to swap.

A commit merges its new index run with the runs before it like a binary counter carries
(:func:`~.index.plan_merge`), but only up to :data:`~.index.MERGE_UNDER_LOCK` entries: a
carry that reaches the store's oldest runs would read and rewrite the whole index (at 20M
rows, 480 MB and 9 s) while every other writer waits. Such merges are *compactions*, done
by the writer after its commit: it reads the two runs from its snapshot, merges them and
writes the merged run copy-on-write, all without the lock; under the lock it only checks
that both runs are still committed unchanged and swaps in a manifest that names the merged
run instead. If they changed (another writer compacted them, or a repair rebuilt the
index), the objects written are deleted and nothing is committed: the index stays correct
either way, only longer.
"""

from __future__ import annotations

from embedcache.store import index, lock, manifest
from embedcache.store.cow import ChunkWriter

__all__ = ["compact"]

#: Compactions one call does at most (each at least halves what is left to do).
ROUNDS = 8


def compact(store, key: str, timeout: float, group=None) -> int:
    """Merge the runs of group ``key`` that a commit left for later; how many merges were
    committed. ``group``: a snapshot known to be current (saves reading it)."""
    done = 0
    for _ in range(ROUNDS):
        g = group if group is not None else store.group(key)
        group = None
        i = index.next_compaction(g.runs, least=index.MERGE_UNDER_LOCK)
        if i is None:
            return done
        (a, b), (c, d) = g.runs[i], g.runs[i + 1]
        names = [index.run_path(a, b), index.run_path(c, d)]
        tables = [g.manifest.arrays[n]["chunks"] for n in names]
        entries = index.merge_runs([index.read_run(g, a, b), index.read_run(g, c, d)])
        scratch = g.manifest.successor()
        writer = ChunkWriter(store, key, g, scratch)
        index.add_run(writer, a, d, entries)
        del entries
        writer.finish()  # the merged run's objects, written outside the lock
        with lock.commit_lock(store, timeout):
            now = store.group(key)
            runs = [list(r) for r in now.runs]
            ok = [a, b] in runs and runs.index([a, b]) + 1 < len(runs) and runs[runs.index([a, b]) + 1] == [c, d] \
                and all(now.manifest.arrays.get(n, {}).get("chunks") == t for n, t in zip(names, tables))
            if ok:
                target = now.manifest.successor()
                old = [obj for n in names for obj, *_ in target.arrays.pop(n)["chunks"].values()]
                target.arrays[index.run_path(a, d)] = scratch.arrays[index.run_path(a, d)]
                j = runs.index([a, b])
                target.runs = runs[:j] + [[a, d]] + runs[j + 2:]
                dropped = target.take_garbage(old)
                ok = manifest.publish(store, key, target, hint=False)
        if not ok:
            writer.discard()
            return done
        manifest.write_hint(store, key, target.generation)
        manifest.retire(store, key, target, dropped)
        done += 1
    return done
