"""Browser sessions: a short-lived, revocable stand-in for an API key, for the web console.

A person logs in once with an API key (``POST /v1/sessions``) and the browser then holds
a random token in an HttpOnly cookie instead of the key. The session acts as its key,
with the key's scopes and rule, and ends at whichever comes first: its expiry
(``STRONGROOM_SESSION_SECONDS``), logout, or the revocation or expiry of its key. Every
use checks all of them, so revoking a key ends its sessions at once.

The token is 256 random bits. What is stored, and what names the session, is its keyed
hash (``Barrier.fingerprint``): without the unsealed barrier a row cannot be turned back
into a token, nor a token guessed against the rows, and a row written without the
barrier's key matches no token. A session cannot start another: starting one needs the
key itself, so a stolen cookie dies with its session.

What the HTTP layer does (the cookie, CSRF, audit of refusals) is ``api/session_auth.py``'s.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, field

from . import trail
from .auth import Caller
from .crypto import Barrier
from .errors import NotFound, Unauthorized
from .storage import ApiKeyRecord, SessionRecord, Store
from .trail import Action

TOKEN_BYTES = 32  # secrets.token_urlsafe(32): 43 characters of base64url


@dataclass(frozen=True, slots=True)
class NewSession:
    """A session just started, and its token: handed to the browser once, stored nowhere."""

    token: str = field(repr=False)
    record: SessionRecord


@dataclass(frozen=True, slots=True)
class ActiveSession:
    """A session that may be used now, and the key it acts as."""

    record: SessionRecord
    key: ApiKeyRecord


class SessionRefused(Exception):
    """A token that opens no session now; ``reason`` is said to the caller and audited.
    ``tenant_id`` and ``key_id`` name the key when the session was found."""

    def __init__(
        self, reason: str, *, tenant_id: str | None = None, key_id: str | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.tenant_id = tenant_id
        self.key_id = key_id


def _stamp(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SessionService:
    def __init__(self, store: Store, barrier: Barrier, *, lifetime: dt.timedelta) -> None:
        self.store = store
        self.barrier = barrier
        self.lifetime = lifetime

    def session_id(self, token: str) -> str:
        """What a token is stored and found as (and the session's public id)."""
        return self.barrier.fingerprint("session|" + token)

    def start(self, caller: Caller) -> NewSession:
        """A new session acting as the caller's key, ending after the configured lifetime
        or when the key expires, whichever is first. Audited as ``session.create``."""
        now = dt.datetime.now(dt.UTC)
        token = secrets.token_urlsafe(TOKEN_BYTES)
        with self.store.write() as tx:
            key = tx.apikeys.by_id(caller.key_id, caller.tenant_id)
            # The key was just authenticated; this closes the gap to a revocation meanwhile.
            if key is None or key.ended(now):
                raise Unauthorized("API key has been revoked or has expired")
            expires_at = now + self.lifetime
            if key.expires_at is not None:
                expires_at = min(expires_at, key.expires_at)
            # Each login sweeps its key's ended sessions: the table holds the live ones.
            tx.sessions.purge_ended(key.id, now)
            record = SessionRecord(
                id=self.session_id(token),
                tenant_id=caller.tenant_id,
                key_id=caller.key_id,
                created_at=now,
                expires_at=expires_at,
                revoked_at=None,
            )
            tx.sessions.insert(record)
            detail = f"session {record.id} until {_stamp(expires_at)}"
            trail.record(
                tx, trail.event(caller.actor, Action.SESSION_CREATE, "success", detail=detail)
            )
        return NewSession(token, record)

    def check(self, token: str) -> ActiveSession:
        """The session ``token`` opens and its key, or :class:`SessionRefused` saying why
        not: unknown, logged out, expired, or its key revoked or expired."""
        now = dt.datetime.now(dt.UTC)
        with self.store.read() as tx:
            record = tx.sessions.by_id(self.session_id(token))
            key = tx.apikeys.by_id(record.key_id, record.tenant_id) if record else None
        if record is None or key is None:
            raise SessionRefused("session is not recognised: log in again")
        names = {"tenant_id": record.tenant_id, "key_id": record.key_id}
        if record.revoked_at is not None:
            raise SessionRefused("session has ended (logged out): log in again", **names)
        if record.expires_at <= now:
            raise SessionRefused(
                f"session expired at {_stamp(record.expires_at)}: log in again", **names
            )
        if key.revoked_at is not None:
            raise SessionRefused("the session's API key has been revoked", **names)
        if key.expired(now):
            raise SessionRefused("the session's API key has expired", **names)
        return ActiveSession(record, key)

    def end(self, caller: Caller, session_id: str) -> None:
        """Log out: the session ends now. Audited as ``session.end``."""
        now = dt.datetime.now(dt.UTC)
        with self.store.write() as tx:
            record = tx.sessions.by_id(session_id)
            if (
                record is None
                or record.key_id != caller.key_id
                or not tx.sessions.revoke(session_id, now)
            ):
                raise NotFound("no such session, or it has already ended")
            trail.record(
                tx,
                trail.event(
                    caller.actor, Action.SESSION_END, "success", detail=f"session {session_id}"
                ),
            )
