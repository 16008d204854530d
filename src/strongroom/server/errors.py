"""The errors the service raises on purpose, each with its wire code and status.

Messages name things (a secret's name, a field, a version) and never hold a value.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Detail:
    location: str
    message: str


@dataclass
class ServiceError(Exception):
    message: str
    details: list[Detail] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    code = "internal_error"
    status = 500

    def __str__(self) -> str:
        return self.message

    @property
    def outcome(self) -> str:
        """What the audit trail records of this failure: its code, unless the answer
        hides what happened (see :class:`Unreachable`)."""
        return self.code


class ValidationFailed(ServiceError):
    code = "validation_error"
    status = 422

    @classmethod
    def at(cls, location: str, message: str) -> ValidationFailed:
        """One problem at ``location`` (``body.value``, ``query.metadata``), said as
        ``"<location>: <message>"``."""
        return cls(f"{location}: {message}", [Detail(location, message)])

    @classmethod
    def of(cls, details: list[Detail]) -> ValidationFailed:
        """Every problem found, said by the first: ``"<location>: <message> (and 2 more)"``."""
        first = details[0] if details else Detail("body", "invalid request")
        more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
        return cls(f"{first.location}: {first.message}{more}", details)


class Unreachable(ServiceError):
    """A secret outside the caller key's rule, answered exactly as a missing one (404) so
    that the key does not learn it exists; the trail records what it was: forbidden."""

    code = "not_found"
    status = 404

    @property
    def outcome(self) -> str:
        return "forbidden"


class Unauthorized(ServiceError):
    code = "unauthorized"
    status = 401


class Forbidden(ServiceError):
    code = "forbidden"
    status = 403


class NotFound(ServiceError):
    code = "not_found"
    status = 404


class MethodNotAllowed(ServiceError):
    code = "method_not_allowed"
    status = 405


class Conflict(ServiceError):
    code = "conflict"
    status = 409


class Expired(ServiceError):
    """A secret past its ``expires_at``: it is still there (an admin may read it, or give
    it a new value and expiry), but its value is no longer handed out."""

    code = "expired"
    status = 410


class PreconditionFailed(ServiceError):
    code = "precondition_failed"
    status = 412


class PayloadTooLarge(ServiceError):
    code = "payload_too_large"
    status = 413


class HeadersTooLarge(ServiceError):
    code = "headers_too_large"
    status = 431


class RateLimited(ServiceError):
    code = "rate_limited"
    status = 429


class InternalError(ServiceError):
    code = "internal_error"
    status = 500


class Unavailable(ServiceError):
    code = "unavailable"
    status = 503


class InsufficientStorage(ServiceError):
    """The database is full: HTTP's own status for a server that cannot store what a
    request needs, told apart from an unreachable database (503), which a client may
    simply retry, because it takes someone freeing space."""

    code = "insufficient_storage"
    status = 507
