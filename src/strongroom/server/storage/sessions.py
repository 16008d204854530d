"""Browser sessions: the record, the interface, and its SQL.

A session is stored by the keyed hash of its token (see :mod:`strongroom.server.sessions`),
never the token: a copy of the database opens no browser's session.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row

from . import schema as t
from .dialect import SQLArea
from .rows import record_of, values_of


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: str  # the keyed hash of the token: what the session is found by, and named by
    tenant_id: str
    key_id: str  # the API key it acts as
    created_at: dt.datetime
    expires_at: dt.datetime
    revoked_at: dt.datetime | None  # ended by logout

    def ended(self, now: dt.datetime) -> bool:
        return self.revoked_at is not None or self.expires_at <= now


class SessionStorage(ABC):
    @abstractmethod
    def insert(self, session: SessionRecord) -> None: ...

    @abstractmethod
    def by_id(self, session_id: str) -> SessionRecord | None:
        """The session, ended ones included (until :meth:`purge_ended` removes them)."""

    @abstractmethod
    def revoke(self, session_id: str, at: dt.datetime) -> bool:
        """End the session at ``at``; False when no unrevoked session has that id."""

    @abstractmethod
    def purge_ended(self, key_id: str, now: dt.datetime) -> int:
        """Delete the key's sessions that have ended by ``now``; how many were."""


# -- SQL --------------------------------------------------------------------------------------
_NO_JSON: dict[str, str] = {}


def _session(row: Row[Any]) -> SessionRecord:
    return record_of(SessionRecord, row, _NO_JSON)


# Every request that carries a session cookie looks it up: built once.
_BY_ID = sa.select(t.sessions).where(t.sessions.c.id == sa.bindparam("session_id"))


class SQLSessionStorage(SQLArea, SessionStorage):
    def insert(self, session: SessionRecord) -> None:
        self.conn.execute(t.sessions.insert().values(**values_of(session, _NO_JSON)))

    def by_id(self, session_id: str) -> SessionRecord | None:
        row = self._one(_BY_ID, {"session_id": session_id})
        return _session(row) if row else None

    def revoke(self, session_id: str, at: dt.datetime) -> bool:
        result = self.conn.execute(
            t.sessions.update()
            .where(t.sessions.c.id == session_id, t.sessions.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        return result.rowcount == 1

    def purge_ended(self, key_id: str, now: dt.datetime) -> int:
        ended = sa.or_(t.sessions.c.revoked_at.is_not(None), t.sessions.c.expires_at <= now)
        result = self.conn.execute(t.sessions.delete().where(t.sessions.c.key_id == key_id, ended))
        return int(result.rowcount)
