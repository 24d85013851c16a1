"""The one place that maps errors to HTTP: domain errors by class, framework errors by kind, the rest to 500.

Every code comes from the catalogue (domain/error_codes.py, which docs/errors.md is generated from); its status is
its kind's, from `_DOMAIN_STATUS` below, so a code always answers with the same status wherever it is raised.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import psycopg
import psycopg_pool
import structlog
from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    InternalServerException,
    MethodNotAllowedException,
    NotFoundException,
    ValidationException,
)
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.types import ExceptionHandlersMap

from app.http.envelope import ErrorEnvelope, error
from app.services.auth import RateLimitExceeded
from app.services.idempotency import IdempotencyKeyInFlight, IdempotentReplay, RenderedError
from domain import error_codes as codes
from domain.error_codes import ErrorCode
from domain.errors import (
    Conflict,
    DomainError,
    Forbidden,
    Internal,
    InvalidParameter,
    MethodNotAllowed,
    NotFound,
    RateLimited,
    TooLarge,
    Unauthenticated,
    Unavailable,
    Unprocessable,
)

log = structlog.get_logger("agora.http")

_DOMAIN_STATUS: tuple[tuple[type[DomainError], int], ...] = (
    (Unauthenticated, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (Unprocessable, 422),
    (InvalidParameter, 400),
    (RateLimited, 429),
    (MethodNotAllowed, 405),
    (TooLarge, 413),
    (Internal, 500),
    (Unavailable, 503),
)

_UNKNOWN_FIELD = re.compile(r"unknown field `([^`]+)`")

# Litestar raises a bare InternalServerException with this detail when the client disconnects while its body is
# being read (litestar/connection/request.py); nothing has been done yet and nobody will read the answer.
_CLIENT_DISCONNECTED = "client disconnected prematurely"
#: nginx's "client closed request": what the request log line shows for such a request.
CLIENT_CLOSED_REQUEST = 499


def status_of_kind(kind: type[DomainError]) -> int:
    for base, status in _DOMAIN_STATUS:
        if issubclass(kind, base):
            return status
    return 400


def status_of(exc: DomainError) -> int:
    return status_of_kind(type(exc))


def status_for(code: ErrorCode) -> int:
    """The HTTP status a catalogue code is always answered with."""
    return status_of_kind(code.kind)


def _json(
    code: ErrorCode, message: str, suggestion: str, headers: dict[str, str] | None = None
) -> Response[ErrorEnvelope]:
    return Response(
        content=error(code.code, message, suggestion),
        status_code=status_for(code),
        headers=headers or {},
        media_type="application/json",
    )


def _headers_of(exc: DomainError) -> dict[str, str]:
    if isinstance(exc, RateLimited):
        return {"Retry-After": str(exc.retry_after)}
    if isinstance(exc, IdempotencyKeyInFlight):
        return {"Retry-After": "1"}
    return {}


def error_headers(exc: DomainError) -> list[tuple[bytes, bytes]]:
    """The headers a business error's response carries beyond the lifecycle's own, as ASGI sends them."""
    return [(name.lower().encode(), value.encode()) for name, value in _headers_of(exc).items()]


def domain_error(request: Request[Any, Any, Any], exc: DomainError) -> Response[ErrorEnvelope]:
    return Response(
        content=error(exc.code, exc.message, exc.suggestion),
        status_code=status_of(exc),
        headers=_headers_of(exc),
        media_type="application/json",
    )


def replay(request: Request[Any, Any, Any], exc: IdempotentReplay) -> Response[bytes]:
    stored = exc.stored
    return Response(
        content=stored.body,
        status_code=stored.status,
        media_type=stored.content_type,
        headers={"Idempotency-Replayed": "true"} if exc.replayed else {},
    )


def render_error(exc: DomainError) -> RenderedError:
    """A business error's response as an idempotent commit stores it, and as it is then sent (by `replay`)."""
    return RenderedError(
        status_of(exc), "application/json", msgspec.json.encode(error(exc.code, exc.message, exc.suggestion))
    )


_SCHEMAS = "the OpenAPI document at /schema/openapi.json"


def _body_suggestion(message: str, field: str | None) -> str:
    """What to do about a body that failed: fix the field if one is named, else the JSON itself."""
    if field:
        return f"Fix '{field}' as the message says and send the request again; every body's schema is in {_SCHEMAS}."
    if message.startswith("Request body"):  # not acceptable JSON: app.http.json_input or the strict decoder
        return (
            "Send the whole body as one JSON value (UTF-8, each key once per object, at most 32 levels deep), as a "
            "JSON encoder writes it; check that it was not cut short."
        )
    return f"Send a JSON object with the fields this endpoint takes; its schema is in {_SCHEMAS}."


def validation_error(request: Request[Any, Any, Any], exc: ValidationException) -> Response[ErrorEnvelope]:
    problems = [p for p in exc.extra if isinstance(p, dict)] if isinstance(exc.extra, list) else []
    body_problems = [p for p in problems if p.get("source") == "body"]
    if body_problems or not problems:
        first = body_problems[0] if body_problems else {}
        message = str(first.get("message", exc.detail))
        field = first.get("key")
        unknown = _UNKNOWN_FIELD.search(message)
        if unknown:
            field = unknown.group(1)
        if field in (None, "data"):
            field = None
        if message == "'data'":
            message = "A JSON request body is required"
        text = f"Invalid field '{field}': {message}" if field else message
        return _json(codes.VALIDATION_ERROR, text, _body_suggestion(message, field))
    first = problems[0]
    name = first.get("key", "parameter")
    source = getattr(first.get("source"), "value", first.get("source")) or "query"
    return _json(
        codes.INVALID_PARAMETER,
        f"Invalid {source} parameter '{name}': {first.get('message')}",
        f"Send '{name}' with the type and within the range or values given for it in {_SCHEMAS}.",
    )


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorEnvelope] | Response[bytes]:
    status = exc.status_code
    detail = str(exc.detail)
    if isinstance(exc, NotFoundException):
        return _json(
            codes.NOT_FOUND,
            f"No route matches {request.method} {request.url.path}",
            f"Check the path; every endpoint is listed in {_SCHEMAS}.",
        )
    if isinstance(exc, MethodNotAllowedException):
        headers = dict(exc.headers or {})
        return _json(
            codes.METHOD_NOT_ALLOWED,
            f"{request.method} is not allowed on {request.url.path}",
            f"Use one of: {headers.get('allow', 'the documented methods')}.",
            headers,
        )
    if isinstance(exc, RequestEntityTooLarge):
        limit = request.app.state.settings.max_body_bytes
        return _json(
            codes.PAYLOAD_TOO_LARGE,
            f"Request body is too large: the limit is {limit} bytes",
            f"Send a body of at most {limit} bytes: shorten the longest text fields.",
        )
    # Litestar raises these only for its own guards and auth middleware, which Agora does not use; mapped anyway.
    if status == 401:
        return _json(codes.UNAUTHORIZED, detail, "Send Authorization: Bearer <key>.")
    if status == 403:
        return _json(codes.FORBIDDEN, detail, "Call this endpoint with a key of the kind it names in its docs.")
    if isinstance(exc, InternalServerException) and detail == _CLIENT_DISCONNECTED:
        log.info("client_disconnected")
        return Response(content=b"", status_code=CLIENT_CLOSED_REQUEST)
    if status >= 500:
        return internal_error(request, exc)
    # Any other client error of the framework's (a malformed query string, ...): a 400, like TaskHive's.
    return _json(codes.INVALID_PARAMETER, detail, f"Check the request against {_SCHEMAS}.")


# Serialization failures, deadlocks, lost connections and statement timeouts: the transaction rolled back, or, for
# a connection lost during COMMIT, its outcome is unknown. Either way a retry with the same key is right: it runs
# the write if it did not commit, and replays its response if it did.
_RETRYABLE = (
    psycopg.errors.SerializationFailure,
    psycopg.errors.DeadlockDetected,
    psycopg.OperationalError,
    psycopg.errors.QueryCanceled,
    psycopg.errors.LockNotAvailable,
    psycopg_pool.PoolTimeout,
)
_UNAVAILABLE_MESSAGE = "The database is unavailable or busy"
_UNAVAILABLE_SUGGESTION = (
    "Retry in a few seconds. A write is safe to retry with the same Idempotency-Key: it runs once, and if it "
    "committed before the failure the retry returns its response."
)
_UNAVAILABLE_RETRY_AFTER = "2"


def unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorEnvelope]:
    log.warning("database_unavailable", error=type(exc).__name__, detail=str(exc)[:200])
    return _json(
        codes.SERVICE_UNAVAILABLE,
        _UNAVAILABLE_MESSAGE,
        _UNAVAILABLE_SUGGESTION,
        {"Retry-After": _UNAVAILABLE_RETRY_AFTER},
    )


_INTERNAL_MESSAGE = "An unexpected error occurred"
_INTERNAL_SUGGESTION = (
    "Retry later (a write with the same Idempotency-Key); if it keeps failing, report the request_id in meta."
)


def internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorEnvelope]:
    log.error("unhandled_exception", exc_info=exc)
    return _json(codes.INTERNAL_ERROR, _INTERNAL_MESSAGE, _INTERNAL_SUGGESTION)


def retryable_database_error(request: Request[Any, Any, Any], exc: psycopg.Error) -> Response[ErrorEnvelope]:
    if isinstance(exc, _RETRYABLE):
        return unavailable(request, exc)
    if isinstance(exc, psycopg.DataError):
        # Input the wire schema let through but PostgreSQL cannot store (a NUL character, an out-of-range number).
        return _json(
            codes.VALIDATION_ERROR,
            f"Invalid input: {str(exc).splitlines()[0]}",
            "Remove NUL (\\u0000) characters from text fields and keep numbers within their documented ranges.",
        )
    return internal_error(request, exc)


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    DomainError: domain_error,
    IdempotentReplay: replay,
    ValidationException: validation_error,
    HTTPException: http_error,
    psycopg.Error: retryable_database_error,
    psycopg_pool.PoolTimeout: unavailable,
    Exception: internal_error,
}


__all__ = [
    "EXCEPTION_HANDLERS",
    "RateLimitExceeded",
    "error_headers",
    "render_error",
    "status_for",
    "status_of",
    "status_of_kind",
]
