"""The errors storage raises on purpose; any other exception is a bug, raised as it is."""

from __future__ import annotations


class StorageError(Exception):
    """Base of the errors storage raises on purpose."""


class NameTaken(StorageError):
    """A unique name (secret or tenant) is already in use."""


class StorageUnavailable(StorageError):
    """The database could not be reached or refused the operation."""


class StorageFull(StorageUnavailable):
    """The database has no room for the write: its disk is full."""

    what = "the database is full"


class StorageReadOnly(StorageUnavailable):
    """The database refuses writes: a read-only file or filesystem, or a standby server."""

    what = "the database is read-only"


class StorageIOError(StorageUnavailable):
    """The database's storage failed to read or write (a disk I/O error)."""

    what = "the database's storage failed (disk I/O error)"
