"""Exceptions raised by embedcache.

Every error a user can cause by their input derives from :class:`EmbedcacheError`
and carries a message that names the file or record at fault and the way out.
The command line turns these into a clean message and exit code 2.
"""

__all__ = [
    "EmbedcacheError",
    "InputError",
    "AlphabetError",
    "SequenceTooLongError",
    "CheckpointError",
    "ModelOutputError",
    "UnsafeCheckpointError",
    "StoreError",
    "StoreLockedError",
    "StoreVersionError",
    "MissingRowsError",
    "DamagedChunkError",
]


class EmbedcacheError(Exception):
    """Base class of the errors caused by input, checkpoints or the store (CLI exit 2)."""

    exit_code = 2


class InputError(EmbedcacheError, ValueError):
    """An input file or record cannot be used as it is."""


class AlphabetError(InputError):
    """A sequence holds characters outside the alphabet policy."""


class SequenceTooLongError(InputError):
    """A sequence needs more tokens than allowed under ``--long error``."""


class CheckpointError(EmbedcacheError):
    """A model checkpoint cannot be found, read or matched."""


class ModelOutputError(EmbedcacheError):
    """A model computed NaN or infinity for a record; nothing of its batch is stored (CLI exit 1:
    the input was fine, the weights or the arithmetic were not)."""

    exit_code = 1


class UnsafeCheckpointError(CheckpointError):
    """A pickle tried to load something other than arrays and plain containers."""


class StoreError(EmbedcacheError):
    """The Zarr store is missing, damaged or does not match the request."""


class StoreLockedError(StoreError):
    """Another process is writing to the store."""


class StoreVersionError(StoreError):
    """The store was written in an encoding version this release does not know."""


class MissingRowsError(StoreError):
    """Some requested sequences (or their layer, pooling or map) are not in the store.

    Attributes
    ----------
    missing : int
        How many of the requested sequences lack the array.
    total : int
        How many were requested.
    first : int
        0-based position of the first missing one in the request.
    store, model, key, array : str
        Where they were looked for.
    build_args : str
        The ``embedcache build`` options that add them (after ``--model`` and ``--cache``).
    source : str
        The input named in the suggested command (``INPUT`` unless known).
    """

    def __init__(self, *, missing: int, total: int, first: int, store: str, model: str, key: str,
                 array: str, what: str, build_model: str, build_args: str, source: str = "INPUT"):
        self.missing, self.total, self.first = missing, total, first
        self.store, self.model, self.key, self.array, self.what = store, model, key, array, what
        self.build_model, self.build_args, self.source = build_model, build_args, source
        super().__init__(str(self))

    def __str__(self) -> str:
        return (f"{self.missing} of {self.total} sequences are not in the cache {self.store} for model "
                f"{self.model} (key {self.key}) {self.what} (first: sequence #{self.first + 1}). "
                f"Build them with: embedcache build {self.source} --model {self.build_model} "
                f"--cache {self.store} {self.build_args}")

    def for_source(self, source: str) -> "MissingRowsError":
        """The same error, its build command naming ``source`` as the input."""
        fields = {k: getattr(self, k) for k in ("missing", "total", "first", "store", "model", "key", "array",
                                                "what", "build_model", "build_args")}
        return MissingRowsError(**fields, source=source)


class DamagedChunkError(StoreError):
    """Stored rows cannot be read back: their chunk is missing or fails its checksum.

    Raised instead of handing back fill values as data. The way out is
    ``embedcache verify PATH --repair`` (marks the rows unfilled, removes unreadable
    chunks), then rerunning the build, which recomputes only those rows.

    Attributes
    ----------
    store, array, chunk, what : str
        The cache, the array (``key/name``), the chunk's store key and what is wrong.
    rows : tuple of int
        First and last row (inclusive) of the damaged chunk.
    """

    def __init__(self, *, store: str, array: str, rows: tuple, what: str, chunk: str = ""):
        self.store, self.array, self.rows, self.what, self.chunk = store, array, tuple(rows), what, chunk
        super().__init__(str(self))

    def __str__(self) -> str:
        return (f"rows {self.rows[0]}-{self.rows[1]} of array {self.array} in the cache {self.store} cannot be "
                f"read: chunk {self.chunk} is {self.what}. The store is damaged; nothing was read as data. "
                f"Mark the damaged rows for recomputation with `embedcache verify {self.store} --repair`, "
                f"then rerun the same `embedcache build` to recompute only them.")
