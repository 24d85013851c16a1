"""The one place that maps errors to HTTP: domain errors by class, framework errors by kind, the rest to 500.

Codes are TaskHive's where it has one. Agora adds: NOT_FOUND, METHOD_NOT_ALLOWED, PAYLOAD_TOO_LARGE,
UNSUPPORTED_MEDIA_TYPE, SERVICE_UNAVAILABLE, OPERATOR_NOT_FOUND and the IDEMPOTENCY_KEY_* family
(docs/errors.md lists them all).
"""

from __future__ import annotations

import re

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

from app.http.envelope import ErrorEnvelope, error
from app.services.auth import RateLimitExceeded
from app.services.idempotency import IdempotencyKeyInFlight, IdempotentReplay
from domain.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidParameter,
    NotFound,
    RateLimited,
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
    (Unavailable, 503),
)

_UNKNOWN_FIELD = re.compile(r"unknown field `([^`]+)`")

# Litestar raises a bare InternalServerException with this detail when the client disconnects while its body is
# being read (litestar/connection/request.py); nothing has been done yet and nobody will read the answer.
_CLIENT_DISCONNECTED = "client disconnected prematurely"
#: nginx's "client closed request": what the request log line shows for such a request.
CLIENT_CLOSED_REQUEST = 499


def status_of(exc: DomainError) -> int:
    for kind, status in _DOMAIN_STATUS:
        if isinstance(exc, kind):
            return status
    return 400


def _json(envelope: ErrorEnvelope, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(content=envelope, status_code=status, headers=headers or {}, media_type="application/json")


def domain_error(request: Request, exc: DomainError) -> Response:
    headers = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    elif isinstance(exc, IdempotencyKeyInFlight):
        headers["Retry-After"] = "1"
    return _json(error(exc.code, exc.message, exc.suggestion), status_of(exc), headers)


def replay(request: Request, exc: IdempotentReplay) -> Response:
    stored = exc.stored
    return Response(
        content=stored.body,
        status_code=stored.status,
        media_type=stored.content_type,
        headers={"Idempotency-Replayed": "true"},
    )


def validation_error(request: Request, exc: ValidationException) -> Response:
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
        return _json(
            error("VALIDATION_ERROR", text, "Fix the named field and send the request again; see the API docs."),
            422,
        )
    first = problems[0]
    name = first.get("key", "parameter")
    source = getattr(first.get("source"), "value", first.get("source")) or "query"
    return _json(
        error(
            "INVALID_PARAMETER",
            f"Invalid {source} parameter '{name}': {first.get('message')}",
            f"Check the type and allowed values of '{name}'.",
        ),
        400,
    )


def http_error(request: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    detail = str(exc.detail)
    if isinstance(exc, NotFoundException):
        return _json(
            error(
                "NOT_FOUND",
                f"No route matches {request.method} {request.url.path}",
                "Check the path; every endpoint is listed in the OpenAPI document at /schema.",
            ),
            404,
        )
    if isinstance(exc, MethodNotAllowedException):
        headers = dict(exc.headers or {})
        return _json(
            error(
                "METHOD_NOT_ALLOWED",
                f"{request.method} is not allowed on {request.url.path}",
                f"Use one of: {headers.get('allow', 'the documented methods')}.",
            ),
            405,
            headers,
        )
    if isinstance(exc, RequestEntityTooLarge):
        return _json(
            error(
                "PAYLOAD_TOO_LARGE",
                "Request body is too large",
                "Send a smaller body; the limit is in the API docs.",
            ),
            413,
        )
    if status == 415:
        return _json(error("UNSUPPORTED_MEDIA_TYPE", detail, "Send JSON with Content-Type: application/json."), 415)
    if status == 401:
        return _json(error("UNAUTHORIZED", detail, "Send Authorization: Bearer <key>."), 401)
    if status == 403:
        return _json(error("FORBIDDEN", detail, "This key may not call this endpoint."), 403)
    if isinstance(exc, InternalServerException) and detail == _CLIENT_DISCONNECTED:
        log.info("client_disconnected")
        return Response(content=b"", status_code=CLIENT_CLOSED_REQUEST)
    if status >= 500:
        return internal_error(request, exc)
    return _json(error("INVALID_PARAMETER", detail, "Check the request against the API docs."), status)


def unavailable(request: Request, exc: Exception) -> Response:
    log.warning("database_unavailable", error=type(exc).__name__, detail=str(exc)[:200])
    return _json(
        error(
            "SERVICE_UNAVAILABLE",
            "The database is unavailable or busy",
            "Retry in a few seconds with the same Idempotency-Key.",
        ),
        503,
        {"Retry-After": "2"},
    )


def internal_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled_exception", exc_info=exc)
    return _json(
        error(
            "INTERNAL_ERROR",
            "An unexpected error occurred",
            "Retry later with the same Idempotency-Key; if it persists, report the request_id.",
        ),
        500,
    )


def retryable_database_error(request: Request, exc: psycopg.Error) -> Response:
    # Serialization failures, deadlocks, lost connections and statement timeouts roll back whole: safe to retry.
    if isinstance(
        exc,
        psycopg.errors.SerializationFailure
        | psycopg.errors.DeadlockDetected
        | psycopg.OperationalError
        | psycopg.errors.QueryCanceled
        | psycopg.errors.LockNotAvailable,
    ):
        return unavailable(request, exc)
    if isinstance(exc, psycopg.DataError):
        # Input the wire schema let through but PostgreSQL cannot store (a NUL character, an out-of-range number).
        return _json(
            error(
                "VALIDATION_ERROR",
                f"Invalid input: {str(exc).splitlines()[0]}",
                "Remove NUL characters and keep numbers within range.",
            ),
            422,
        )
    return internal_error(request, exc)


EXCEPTION_HANDLERS = {
    DomainError: domain_error,
    IdempotentReplay: replay,
    ValidationException: validation_error,
    HTTPException: http_error,
    psycopg.Error: retryable_database_error,
    psycopg_pool.PoolTimeout: unavailable,
    Exception: internal_error,
}


def encode_error(exc: Exception) -> tuple[int, dict[str, str], bytes]:
    """Render an error outside a route (the request lifecycle), as status, headers and body."""
    if isinstance(exc, IdempotentReplay):
        stored = exc.stored
        return (
            stored.status,
            {"content-type": stored.content_type, "idempotency-replayed": "true"},
            stored.body,
        )
    if isinstance(exc, DomainError):
        body = msgspec.json.encode(error(exc.code, exc.message, exc.suggestion))
        headers = {"content-type": "application/json"}
        if isinstance(exc, IdempotencyKeyInFlight):
            headers["retry-after"] = "1"
        return status_of(exc), headers, body
    body = msgspec.json.encode(error("INTERNAL_ERROR", "An unexpected error occurred", "Retry later."))
    return 500, {"content-type": "application/json"}, body


__all__ = ["EXCEPTION_HANDLERS", "RateLimitExceeded", "encode_error", "status_of"]
