"""The error responses each route documents, all in the envelope's shape."""

from __future__ import annotations

from litestar.openapi import ResponseSpec

from app.http.envelope import ErrorEnvelope

_DESCRIPTIONS = {
    400: "Invalid parameter (INVALID_PARAMETER, IDEMPOTENCY_KEY_TOO_LONG)",
    401: "Missing, malformed, unknown or revoked key (UNAUTHORIZED)",
    403: "The caller may not do this (FORBIDDEN, PENDING_CLAIM)",
    404: "Not found",
    409: "Conflict with the resource's state, or an Idempotency-Key still in flight",
    413: "Request body too large (PAYLOAD_TOO_LARGE)",
    422: "Body failed validation (VALIDATION_ERROR), a business rule, or IDEMPOTENCY_KEY_MISMATCH",
    429: "Rate limit exceeded (RATE_LIMITED); see Retry-After",
    500: "Unexpected error (INTERNAL_ERROR)",
    503: "Database unavailable or busy (SERVICE_UNAVAILABLE); retry with the same Idempotency-Key",
}

ALWAYS = (400, 500, 503)
AUTHENTICATED = (401, 403, 429)
WITH_BODY = (409, 413, 422)  # 409: an Idempotency-Key in flight, on any mutation


def errors(*statuses: int) -> dict[int, ResponseSpec]:
    return {
        status: ResponseSpec(data_container=ErrorEnvelope, description=_DESCRIPTIONS[status], generate_examples=False)
        for status in sorted({*statuses, *ALWAYS})
    }
