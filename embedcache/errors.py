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
    "UnsafeCheckpointError",
    "StoreError",
    "StoreLockedError",
    "StoreVersionError",
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


class UnsafeCheckpointError(CheckpointError):
    """A pickle tried to load something other than arrays and plain containers."""


class StoreError(EmbedcacheError):
    """The Zarr store is missing, damaged or does not match the request."""


class StoreLockedError(StoreError):
    """Another process is writing to the store."""


class StoreVersionError(StoreError):
    """The store was written in an encoding version this release does not know."""
