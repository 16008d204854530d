"""Errors raised by the strongroom client.

::

    StrongroomError                 anything the client raises on purpose
    ├── RotationCheckFailed         secrets.rotate: the new value failed its check
    ├── WaitTimeoutError            executions.wait: still running when the wait ended
    ├── APIConnectionError          no answer: refused, reset, DNS (.code "connection_error")
    │   └── APITimeoutError         no answer in time (.code "timeout")
    └── APIError                    the server answered with an error envelope
        ├── ValidationError             422 validation_error (.details name each problem)
        ├── AuthenticationError         401 unauthorized
        ├── PermissionDeniedError       403 forbidden
        ├── NotFoundError               404 not_found
        │   └── SecretNotFoundError         ... for a secret
        ├── MethodNotAllowedError       405 method_not_allowed
        ├── ConflictError               409 conflict
        │   └── SecretAlreadyExistsError    ... a secret's name is taken
        ├── SecretExpiredError          410 expired: past the secret's expires_at
        ├── PreconditionFailedError     412 precondition_failed
        ├── PayloadTooLargeError        413 payload_too_large
        ├── RateLimitError              429 rate_limited (.retry_after)
        └── InternalServerError         5xx internal_error, unavailable, insufficient_storage

Every API error carries ``.code`` (the wire code), ``.status_code``, ``.request_id`` and
``.details``; ``str(error)`` says all of it in one line. Messages come from the server,
which never puts a secret value in one, and the client never adds request bodies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ErrorDetail:
    location: str
    message: str


class StrongroomError(Exception):
    """Base class of every error the client raises on purpose."""

    code: str = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RotationCheckFailed(StrongroomError):
    """``secrets.rotate``: the check refused the new value; nothing was changed."""

    code = "rotation_check_failed"


class WaitTimeoutError(StrongroomError):
    """``executions.wait``: the execution was still running when the wait ran out."""

    code = "wait_timeout"


class APIConnectionError(StrongroomError):
    """The request got no answer (connection refused or reset, DNS failure, ...)."""

    code = "connection_error"
    status_code: int | None = None
    request_id: str | None = None
    details: list[ErrorDetail] = []  # noqa: RUF012 - never mutated, shared empty list


class APITimeoutError(APIConnectionError):
    """The request got no answer within its timeout."""

    code = "timeout"


class APIError(StrongroomError):
    """The server answered with an error."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        status_code: int,
        request_id: str | None = None,
        details: list[ErrorDetail] | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status_code = status_code
        self.request_id = request_id
        self.details = details or []
        self.body = body

    def __str__(self) -> str:
        text = f"{self.code} ({self.status_code}): {self.message}"
        # The server's message is often its first detail, spelled the same: said once.
        said = [f"{d.location}: {d.message}" for d in self.details]
        if said and said[0] == self.message:
            said = said[1:]
        if said:
            text += "; " + "; ".join(said)
        if self.request_id:
            text += f" [request_id={self.request_id}]"
        return text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, status_code={self.status_code}, "
            f"message={self.message!r}, request_id={self.request_id!r})"
        )


class ValidationError(APIError):
    """422: the request was refused as invalid; ``details`` name each problem."""


class AuthenticationError(APIError):
    """401: no API key, or a malformed, unknown or revoked one."""


class PermissionDeniedError(APIError):
    """403: the API key lacks the scope the call needs."""


class NotFoundError(APIError):
    """404: no such resource in the API key's tenant."""


class SecretNotFoundError(NotFoundError):
    """404 for a secret: no secret of that name (or version) in the tenant."""


class MethodNotAllowedError(APIError):
    """405: the route exists but not for this method."""


class ConflictError(APIError):
    """409: the name is already taken."""


class SecretAlreadyExistsError(ConflictError):
    """409 for a secret: the tenant already has a secret of that name."""


class PreconditionFailedError(APIError):
    """412: the secret is not at the expected version."""


class SecretExpiredError(APIError):
    """410: the secret is past its ``expires_at``; give it a new value and expiry (a key
    with ``secrets:admin`` can still read it)."""


class PayloadTooLargeError(APIError):
    """413: the request body is over the server's limit."""


class RateLimitError(APIError):
    """429: too many requests; ``retry_after`` says how long to wait, in seconds."""

    retry_after: float | None = None


class InternalServerError(APIError):
    """5xx: the server failed; the request id finds it in the server's logs."""


STATUS_ERRORS: dict[int, type[APIError]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    405: MethodNotAllowedError,
    409: ConflictError,
    410: SecretExpiredError,
    412: PreconditionFailedError,
    413: PayloadTooLargeError,
    422: ValidationError,
    429: RateLimitError,
}

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "ConflictError",
    "ErrorDetail",
    "InternalServerError",
    "MethodNotAllowedError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "PreconditionFailedError",
    "RateLimitError",
    "RotationCheckFailed",
    "SecretAlreadyExistsError",
    "SecretExpiredError",
    "SecretNotFoundError",
    "StrongroomError",
    "ValidationError",
    "WaitTimeoutError",
]
