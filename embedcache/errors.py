"""Exceptions raised by embedcache.

Every error a user can cause by their input derives from :class:`EmbedcacheError`
and carries a message that names the file or record at fault and the way out.
The command line turns these into a clean message and exit code 2.
"""

from collections.abc import Mapping

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

    def cli_message(self) -> str:
        """The message on the command line (where the way out is a command, not a call)."""
        return str(self)


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

    The message names what is missing (the sequences themselves, or the layer and pooling or
    attention map of sequences the cache holds), the first record lacking it (by id where the
    reader knows ids), and the build that adds it: a ``cache.build(...)`` call in Python
    (``str(exc)``), an ``embedcache build`` command on the command line (:meth:`cli_message`).

    Attributes
    ----------
    missing : int
        How many of the requested sequences lack the output.
    absent : int
        How many of those are not in the cache at all (the rest lack only the output).
    total : int
        How many were requested.
    first : int
        0-based position of the first missing one in the request.
    first_id : str or None
        Its record id, when the request came from a file.
    store, model, key, what : str
        Where it was looked for, and what (``"layer 12, mean pooling"``).
    held : bool
        Whether the model group holds the output for any row at all (else it was never built).
    advice : embedcache.advice.BuildAdvice
        The build that adds it.
    summary : str or None
        What is missing, said by the caller in its own terms (several arrays at once).
    """

    def __init__(self, *, missing: int, total: int, first: int, store: str, model: str, key: str,
                 what: str, advice, absent: int | None = None, held: bool = True, first_id: str | None = None,
                 first_sequence: str = "", summary: str | None = None):
        self.missing, self.total, self.first, self.first_id = missing, total, first, first_id
        self.absent = missing if absent is None else absent
        self.store, self.model, self.key, self.what, self.held = store, model, key, what, held
        self.advice, self.first_sequence, self.summary = advice, first_sequence, summary
        super().__init__(str(self))

    def _what(self) -> str:
        if self.summary is not None:
            return self.summary
        if self.first_id is not None:
            first = f"first: id {self.first_id}"
        else:
            shown = self.first_sequence[:20] + ("..." if len(self.first_sequence) > 20 else "")
            first = f"first: sequence #{self.first + 1}" + (f" {shown}" if shown else "")
        where = f"the cache {self.store} for model {self.model} (key {self.key})"
        if self.absent == self.missing:
            return f"{self.missing} of {self.total} sequences are not in {where} ({first})."
        if not self.absent:
            lack = f"{self.what} was never built for it" if not self.held else f"they lack {self.what}"
            return f"{self.missing} of {self.total} sequences are in {where}, but {lack} ({first})."
        return (f"{self.missing} of {self.total} sequences lack {self.what} in {where}: {self.absent} are not in "
                f"the cache at all, {self.missing - self.absent} are but without {self.what} ({first}).")

    def __str__(self) -> str:
        return f"{self._what()} Build them with: {self.advice.python(self.store)}"

    def cli_message(self) -> str:
        return f"{self._what()} Build them with: {self.advice.command(self.store)}"

    def for_source(self, inputs, *, reference=None, ids=None) -> "MissingRowsError":
        # ids: the request's record ids in order, or a mapping sequence -> record id.
        """The same error, its advice naming the input file(s) (and genome), the first missing
        record by its id when ``ids`` (the request's record ids, in order) are given."""
        fields = {k: getattr(self, k) for k in ("missing", "total", "first", "store", "model", "key", "what",
                                                "absent", "held", "first_id", "first_sequence", "summary")}
        if isinstance(ids, Mapping):  # sequence -> record id
            fields["first_id"] = None if ids.get(self.first_sequence) is None else str(ids[self.first_sequence])
        elif ids is not None:  # the request's ids, in order
            fields["first_id"] = str(list(ids)[self.first])
        return MissingRowsError(**fields, advice=self.advice.for_inputs(inputs, reference))


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
