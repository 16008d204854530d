"""Storage: one interface (:mod:`.base`), a SQLite and a PostgreSQL implementation."""

from __future__ import annotations

from .base import (
    NameTaken,
    StorageError,
    StorageFull,
    StorageIOError,
    StorageReadOnly,
    StorageUnavailable,
    Store,
    Transaction,
)


def open_store(url: str, *, sqlite_synchronous: str = "NORMAL") -> Store:
    """Open the store a ``STRONGROOM_DATABASE_URL`` names, without migrating it."""
    if url.startswith("sqlite:///"):
        from .sqlite import SQLiteStore

        return SQLiteStore(url.removeprefix("sqlite:///"), synchronous=sqlite_synchronous)
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        from .postgres import PostgresStore

        return PostgresStore(url)
    raise ValueError(
        "STRONGROOM_DATABASE_URL must start with sqlite:/// or postgresql:// "
        f"(got a URL starting {url.split(':', 1)[0]!r})"
    )


__all__ = [
    "NameTaken",
    "StorageError",
    "StorageFull",
    "StorageIOError",
    "StorageReadOnly",
    "StorageUnavailable",
    "Store",
    "Transaction",
    "open_store",
]
