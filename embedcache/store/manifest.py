"""The committed state of a model group: one manifest per commit, swapped in create-only.

A model group's rows are whatever its newest *manifest* says. Generation ``g + 1`` is
written with a create-only write (a hard link locally, ``If-None-Match: *`` on S3), so of
all writers that read generation ``g`` exactly one can commit after it; the others lose
the swap, re-plan on the new state and try again. A writer whose lock or lease ran out
can therefore never make its commit visible: correctness rests on the swap, not on timing.

A manifest names, per array, its Zarr metadata and each chunk's object with the CRC32C
and size of its bytes. Chunk objects are written once, under fresh names (copy-on-write),
and only become data when a manifest naming them is committed; so a chunk read is checked
against the manifest (:class:`~.view.GroupView`), and a stale, moved or foreign chunk is
damage, never data. Objects a commit supersedes are deleted a commit later (readers of
an older snapshot that miss them start again from the newest); objects of writers that lost
the swap or died are garbage that ``embedcache gc`` removes.

Keys under ``<model key>/``::

    zarr.json                   the group's descriptive attributes, written once
    commits/<generation>.json   the manifests (older than the last :data:`KEEP`: stubs)
    head.json                   a hint: a recent generation (readers probe forward from it)
    <array>/<chunk>.<token>     chunk objects
"""

from __future__ import annotations

import json
import uuid

import google_crc32c
from dataclasses import dataclass, field

from embedcache.errors import StoreError
from embedcache.store import access

__all__ = ["Manifest", "head", "publish", "write_hint", "manifest_key", "new_object_name", "KEEP"]

COMMITS = "commits"
HINT = "head.json"
#: Manifests kept behind the newest: enough for readers of a recent snapshot.
KEEP = 8
#: Commits a superseded object outlives its last manifest before it is deleted.
GRACE = 1
#: What an old manifest is replaced by (see :func:`retire`).
STUB = b'{"superseded":true}'


def manifest_key(key: str, generation: int) -> str:
    return f"{key}/{COMMITS}/{int(generation):012d}.json"


def new_object_name(array: str, index: int) -> str:
    """A fresh object name for chunk ``index`` of ``array``: never reused, so a name once
    superseded is never referred to again (and deleting it is always safe)."""
    return f"{array}/{int(index)}.{uuid.uuid4().hex[:16]}"


@dataclass
class Manifest:
    """One committed state of a model group.

    Attributes
    ----------
    generation : int
        0 for the empty group; each commit adds one.
    n_rows : int
        Committed rows.
    runs : list
        The digest index's runs ``[a, b]`` (arrays ``index/run_a_b``).
    arrays : dict
        Array name to ``{"meta": Zarr metadata, "chunks": {index: [object, crc32c, size]}}``;
        a chunk absent from ``chunks`` holds fill values (never written).
    garbage : list
        ``[generation, [objects]]`` superseded by recent commits, deleted :data:`GRACE`
        commits later.
    """

    generation: int = 0
    n_rows: int = 0
    runs: list = field(default_factory=list)
    arrays: dict = field(default_factory=dict)
    garbage: list = field(default_factory=list)

    @classmethod
    def from_bytes(cls, raw: bytes, where: str) -> "Manifest":
        try:
            doc = json.loads(raw)
            m = cls(int(doc["generation"]), int(doc["n_rows"]), [list(map(int, r)) for r in doc["runs"]],
                    dict(doc["arrays"]), list(doc.get("garbage", [])))
            for name, entry in m.arrays.items():
                if not isinstance(entry.get("meta"), dict) or not isinstance(entry.get("chunks"), dict):
                    raise ValueError(f"array {name!r} has no metadata or chunk table")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StoreError(f"the commit manifest {where} is unreadable ({exc}); the store is damaged. "
                             "Run `embedcache verify` on the cache.") from None
        return m

    def to_bytes(self) -> bytes:
        return json.dumps({"generation": self.generation, "n_rows": self.n_rows, "runs": self.runs,
                           "arrays": self.arrays, "garbage": self.garbage}, separators=(",", ":")).encode()

    def successor(self) -> "Manifest":
        """A copy to edit into the next generation (chunk tables copied, metadata shared)."""
        arrays = {n: {"meta": dict(e["meta"]), "chunks": dict(e["chunks"])} for n, e in self.arrays.items()}
        return Manifest(self.generation + 1, self.n_rows, [list(r) for r in self.runs], arrays,
                        [list(g) for g in self.garbage])

    def take_garbage(self, superseded: list) -> list:
        """Record ``superseded`` (objects this commit replaces) for deletion later; return
        the objects whose :data:`GRACE` has passed, to delete once this commit is in."""
        due = [o for g, objs in self.garbage if g <= self.generation - GRACE for o in objs]
        self.garbage = [[g, objs] for g, objs in self.garbage if g > self.generation - GRACE]
        if superseded:
            self.garbage.append([self.generation, list(superseded)])
        return due

    def objects(self) -> set[str]:
        """Every chunk object this state refers to (names relative to the group)."""
        return {c[0] for e in self.arrays.values() for c in e["chunks"].values()}


def identity(data) -> int:
    """The checksum a manifest records for an object: CRC32C of all but its last 4 bytes.

    Not of the whole object: every object ends with a CRC32C, of its payload (a plain
    chunk) or of its index (a shard), and the CRC32C of data followed by its own CRC32C
    is the same constant for all data.
    """
    return int(google_crc32c.value(bytes(memoryview(data)[:-4]) if not hasattr(data, "dtype") else data[:-4]))


def head(store, key: str) -> Manifest | None:
    """The newest committed manifest of group ``key`` (``None`` if it has none)."""
    zs = store.zstore
    try:
        g = int(access.get_json(zs, f"{key}/{HINT}")["generation"])
    except (ValueError, TypeError, KeyError):
        g = None  # no hint yet, or a damaged one: the listing decides
    if g is not None:
        # The hint may lag (a writer wrote it late); generations are consecutive.
        while access.exists(zs, manifest_key(key, g + 1)):
            g += 1
        raw = access.get_bytes(zs, manifest_key(key, g))
        if raw is not None:
            return Manifest.from_bytes(raw, f"{store.path}/{manifest_key(key, g)}")
    listed = [n for n in access.list_dir(zs, f"{key}/{COMMITS}") if n.endswith(".json")]
    while listed:
        g = max(int(n.split(".")[0]) for n in listed if n.split(".")[0].isdigit())
        raw = access.get_bytes(zs, manifest_key(key, g))
        if raw is not None:
            while access.exists(zs, manifest_key(key, g + 1)):  # committed while listing
                g += 1
                raw = access.get_bytes(zs, manifest_key(key, g))
            return Manifest.from_bytes(raw, f"{store.path}/{manifest_key(key, g)}")
        listed = [n for n in listed if not n.startswith(f"{g:012d}")]
    return None


def publish(store, key: str, manifest: Manifest, *, hint: bool = True) -> bool:
    """Commit ``manifest`` if its generation is still free: the compare-and-swap. With
    ``hint=False`` the caller writes the hint later (:func:`write_hint`), out of its lock."""
    if not access.create_exclusive(store.zstore, manifest_key(key, manifest.generation), manifest.to_bytes()):
        return False
    if hint:
        write_hint(store, key, manifest.generation)
    return True


def write_hint(store, key: str, generation: int) -> None:
    """Point readers at ``generation`` (a hint: it may lag, readers probe forward from it)."""
    access.put_bytes(store.zstore, f"{key}/{HINT}", json.dumps({"generation": int(generation)}).encode())


def retire(store, key: str, manifest: Manifest, dropped: list) -> None:
    """After committing ``manifest``: delete objects superseded :data:`GRACE` commits ago
    (``dropped``, taken out of its garbage list), and empty the manifest :data:`KEEP` behind.

    An old manifest is replaced by a stub, never deleted: its name must stay taken, or a
    writer stopped since it read the generation before could create it again and believe
    it had committed.
    """
    for obj in dropped:
        access.delete_key(store.zstore, f"{key}/{obj}")
    if manifest.generation > KEEP:
        access.put_bytes(store.zstore, manifest_key(key, manifest.generation - KEEP - 1), STUB)
