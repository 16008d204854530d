"""Every error leaves the server as the contract's envelope, framework errors included."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError, ResponseValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError as PydanticValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from ..errors import (
    Detail,
    InsufficientStorage,
    InternalError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServiceError,
    Unavailable,
    ValidationFailed,
)
from ..logs import request_id_var
from ..storage import StorageFull, StorageIOError, StorageReadOnly, StorageUnavailable

log = logging.getLogger("strongroom.api")


def error_response(error: ServiceError) -> JSONResponse:
    body = {
        "error": {
            "code": error.code,
            "message": error.message,
            "request_id": request_id_var.get(),
            "details": [{"location": d.location, "message": d.message} for d in error.details],
        }
    }
    return JSONResponse(body, status_code=error.status, headers=error.headers or None)


def location(loc: Sequence[int | str]) -> str:
    """``("body", "steps", 0, "kind")`` -> ``body.steps[0].kind``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "body"


_NOT_AN_OBJECT = {"model_attributes_type", "dict_type", "model_type"}


def _message(error: dict[str, Any]) -> str:
    if error.get("type") == "json_invalid":
        return "request body is not valid JSON"
    if tuple(error.get("loc", ())) == ("body",) and error.get("type") in _NOT_AN_OBJECT:
        return "request body must be a JSON object (sent as Content-Type: application/json)"
    message = str(error.get("msg", "invalid value"))
    return message.removeprefix("Value error, ")


def validation_failed(errors: Sequence[Any]) -> ValidationFailed:
    """Pydantic's errors as details. Only locations and messages: never the input."""
    details = []
    for error in errors:
        loc = tuple(error.get("loc", ()))
        if error.get("type") == "json_invalid":
            loc = ("body",)
        details.append(Detail(location(loc), _message(error)))
    return ValidationFailed.of(details)


async def _service_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return error_response(exc)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(validation_failed(exc.errors()))


_METHODS = ("DELETE", "GET", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> str:
    """Every method some route serves on this path (Starlette names only the first route's)."""
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in _METHODS
        if any(r.matches({**request.scope, "method": method})[0] is Match.FULL for r in routes)
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, ServiceError):
        # FastAPI wraps whatever fails while it reads the body in a 400; the streamed
        # body limit (BodyLimit) fails that way and is owed its own answer, a 413.
        return error_response(exc.__cause__)
    headers = {k: v for k, v in (exc.headers or {}).items() if k.lower() != "allow"}
    error: ServiceError
    if exc.status_code == 404:
        # The path is not repeated: it may hold anything a client pasted (even a secret),
        # and the request log already records it with the request id.
        error = NotFound(f"no route for {request.method} at this path (see /openapi.json)")
    elif exc.status_code == 405:
        allowed = _allowed_methods(request)
        error = MethodNotAllowed(
            f"{request.method} is not allowed at this path (allowed: {allowed})",
            headers={**headers, "Allow": allowed},
        )
    elif exc.status_code == 413:
        error = PayloadTooLarge("request body is too large")
    elif exc.status_code == 400:
        # FastAPI's "error parsing the body": text that is not UTF-8, or JSON nested deeper
        # than the parser recurses, or an integer of more digits than Python converts.
        cause = exc.__cause__
        if isinstance(cause, RecursionError):
            message = "request body is JSON nested too deeply to read"
        elif isinstance(cause, ValueError) and not isinstance(cause, UnicodeDecodeError):
            message = "request body holds a number with more digits than can be read"
        else:
            message = "request body could not be read as JSON (it must be UTF-8)"
        error = ValidationFailed.at("body", message)
    else:
        error = ServiceError(str(exc.detail), headers=headers)
        error.status = exc.status_code
    return error_response(error)


def storage_error(exc: StorageUnavailable) -> ServiceError:
    """The answer to a database fault: what is wrong, never the driver's text."""
    retry = {"Retry-After": "1"}
    if isinstance(exc, StorageFull):
        return InsufficientStorage(
            "the database is full: there is no space left to store the change; "
            "it succeeds once disk space is freed"
        )
    if isinstance(exc, StorageReadOnly):
        return Unavailable(
            "the database is read-only and refuses changes; try again once it is writable",
            headers=retry,
        )
    if isinstance(exc, StorageIOError):
        return Unavailable(
            "the database's storage failed (disk I/O error); try again", headers=retry
        )
    return Unavailable("the database is unavailable; try again", headers=retry)


async def _storage_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StorageUnavailable)
    error = storage_error(exc)
    log.error("database fault: %s", exc, extra={"fault": type(exc).__name__})
    return error_response(error)


def unexpected_error(exc: BaseException) -> JSONResponse:
    if isinstance(exc, ResponseValidationError | PydanticValidationError):
        # Their text quotes the offending input, which may be an answer holding a value:
        # log where validation failed, never what was there.
        errors = exc.errors()
        where = sorted({location(tuple(e.get("loc", ()))) for e in errors})
        log.error("an answer failed validation", extra={"error": type(exc).__name__, "at": where})
    else:
        log.error("unhandled error", exc_info=exc)
    return error_response(InternalError("internal error; the request id identifies it in the logs"))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(StorageUnavailable, _storage_unavailable)
