"""strongroom: a self-hosted secrets service for automation, and its Python client.

::

    from strongroom import Strongroom

    client = Strongroom()  # STRONGROOM_API_KEY, STRONGROOM_BASE_URL
    client.secrets.create(name="stripe_api_key", value="sk_test_...")
    client.secrets.get(name="stripe_api_key").value

The client needs only httpx and pydantic; the server is the ``strongroom[server]`` extra.
``Julep`` and ``AsyncJulep`` are aliases, so code written for the product guide runs with
only its import line changed.
"""

from ._async_client import AsyncStrongroom
from ._client import Strongroom
from ._types import NOT_GIVEN, NotGiven
from ._version import __version__
from .exceptions import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    ConflictError,
    InternalServerError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    PreconditionFailedError,
    RateLimitError,
    RotationCheckFailed,
    SecretAlreadyExistsError,
    SecretExpiredError,
    SecretNotFoundError,
    StrongroomError,
    ValidationError,
    WaitTimeoutError,
)
from .models import (
    ApiKey,
    ApiKeyList,
    AuditRecord,
    BatchGetResponse,
    BatchPutResponse,
    CreatedApiKey,
    DeletedSecret,
    Execution,
    ExecutionStep,
    KeyRule,
    KeyScope,
    RotatedApiKey,
    Rotation,
    Secret,
    SecretList,
    SecretPolicy,
    SecretVersion,
    Task,
)

Julep = Strongroom
AsyncJulep = AsyncStrongroom

__all__ = [
    "NOT_GIVEN",
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "ApiKey",
    "ApiKeyList",
    "AsyncJulep",
    "AsyncStrongroom",
    "AuditRecord",
    "AuthenticationError",
    "BatchGetResponse",
    "BatchPutResponse",
    "ConflictError",
    "CreatedApiKey",
    "DeletedSecret",
    "Execution",
    "ExecutionStep",
    "InternalServerError",
    "Julep",
    "KeyRule",
    "KeyScope",
    "MethodNotAllowedError",
    "NotFoundError",
    "NotGiven",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "PreconditionFailedError",
    "RateLimitError",
    "RotatedApiKey",
    "Rotation",
    "RotationCheckFailed",
    "Secret",
    "SecretAlreadyExistsError",
    "SecretExpiredError",
    "SecretList",
    "SecretNotFoundError",
    "SecretPolicy",
    "SecretVersion",
    "Strongroom",
    "StrongroomError",
    "Task",
    "ValidationError",
    "WaitTimeoutError",
    "__version__",
]
