"""Leftovers: objects no committed state refers to, and ``embedcache gc``, which removes them.

Writers write a commit's chunks before swapping its manifest in (:mod:`.manifest`). A
writer that lost the swap deletes what it wrote; one killed or stopped for good leaves
it behind, as does a commit killed before it deleted the objects it superseded. Such
*leftovers* are never data: nothing committed names them. :func:`leftovers` lists them
(``verify`` reports their count) and :func:`collect` deletes those older than
``older_than`` seconds: a younger one may belong to a commit being written right now,
which would become damage if its chunks vanished before its swap.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from embedcache.store import access, manifest

__all__ = ["Leftovers", "leftovers", "group_leftovers", "collect", "OLDER_THAN"]

#: Default age (seconds) past which ``embedcache gc`` deletes a leftover.
OLDER_THAN = 3600.0


@dataclass
class Leftovers:
    """Leftover objects of a store: ``{key: modification time}`` and their bytes."""

    objects: dict
    nbytes: int = 0


def group_leftovers(store, key: str) -> dict[str, float]:
    head = manifest.head(store, key)
    listed = access.list_with_times(store.zstore, f"{key}/")
    keep = {f"{key}/zarr.json", f"{key}/{manifest.HINT}"}
    if head is not None:
        keep |= {f"{key}/{obj}" for obj in head.objects()}

    def is_manifest(k: str) -> bool:
        # Every generation's name stays taken (a stub once old): see manifest.retire.
        folder, _, name = k.rpartition("/")
        return folder == f"{key}/{manifest.COMMITS}" and name.endswith(".json") and name[:-5].isdigit()

    return {k: t for k, t in listed.items() if k not in keep and not is_manifest(k)}


def leftovers(store) -> Leftovers:
    """Objects of every model group that no committed state refers to."""
    found = {}
    for key in store.keys():
        found.update(group_leftovers(store, key))
    return Leftovers(found, sum(access.size_of(store.zstore, k) for k in found))


def collect(store, *, older_than: float = OLDER_THAN) -> Leftovers:
    """Delete the leftovers older than ``older_than`` seconds; what was deleted."""
    now = time.time()
    old = {k: t for k, t in leftovers(store).objects.items() if now - t >= older_than}
    nbytes = sum(access.size_of(store.zstore, k) for k in old)
    for k in old:
        access.delete_key(store.zstore, k)
    return Leftovers(old, nbytes)
