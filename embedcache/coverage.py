"""How much of an input a cache holds: per model group, its unique sequences, how many hold
each array, and which ``--shard I/N`` shares still have work (``embedcache info --input``)."""

from __future__ import annotations

import numpy as np

from embedcache.request import Shard
from embedcache.sequences.readers import iter_records
from embedcache.store import Store, sequence_digest
from embedcache.util.ranges import array_order

__all__ = ["input_coverage"]


def input_coverage(store: Store, input_path, *, reference=None, shards: int | None = None) -> list[dict]:
    """See :meth:`embedcache.EmbeddingCache.progress`.

    Cheap: the input is read once per alphabet policy and looked up in the persisted digest
    index; only the masks of the rows found are read.
    """
    if shards is not None:
        Shard(0, shards)  # N checked as --shard checks it
    out, digests_by_alphabet = [], {}
    for group in store.groups():
        alphabet = group.attrs.get("alphabet")
        if alphabet not in digests_by_alphabet:
            digests_by_alphabet[alphabet] = sorted({sequence_digest(s) for df in iter_records(
                input_path, reference=reference, alphabet=alphabet) for s in df["sequence"]})
        digests = digests_by_alphabet[alphabet]
        found = group.index(digests)
        rows = np.fromiter(found.values(), dtype=np.int64)
        names = sorted(group.array_names(), key=array_order)
        summary = {"key": group.key, "name": group.model_name, "unique": len(digests), "rows": int(rows.size),
                   "arrays": {n: int(group.filled(n, rows).sum()) for n in names}}
        if shards is not None:
            done = np.ones(rows.size, dtype=bool)
            for name in names:
                done &= group.filled(name, rows)
            complete = {d for d, ok in zip(found, done.tolist()) if ok}
            # The assignment --shard I/N uses: a shard has work while one of its sequences does.
            summary["shards_left"] = sorted({Shard.index_of(d, shards) for d in digests if d not in complete})
        out.append(summary)
    return out
