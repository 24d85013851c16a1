"""The error codes each operation documents: those its route declares, plus those every operation of its shape can
return, which are decided here once (authentication, rate limit, idempotency, body and parameter checks).

A route lists the codes its handler and the services it calls raise: `responses=errors(TASK_NOT_FOUND, ...)`. The
OpenAPI document (app.http.openapi) adds `implied_codes` and gives each status an error schema whose `error.code`
is an enum of exactly those codes, so a response with any other code or status breaks the document's contract.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from litestar.handlers import HTTPRouteHandler
from litestar.openapi import ResponseSpec

from app.http.envelope import ErrorEnvelope
from app.http.errors import status_for
from app.http.security import IDEMPOTENT_METHODS, admin_only, agent_only, operator_only, public
from domain import error_codes as codes
from domain.error_codes import ErrorCode


@dataclass
class ErrorResponse(ResponseSpec):
    """A status's error envelope, with the codes the route declares for it."""

    codes: tuple[ErrorCode, ...] = ()


def errors(*declared: ErrorCode) -> dict[int, ResponseSpec]:
    """A route's own error codes, grouped by the status each is answered with."""
    by_status: dict[int, list[ErrorCode]] = defaultdict(list)
    for code in declared:
        by_status[status_for(code)].append(code)
    return {
        status: ErrorResponse(
            data_container=ErrorEnvelope,
            description=", ".join(c.code for c in found),
            generate_examples=False,
            codes=tuple(found),
        )
        for status, found in sorted(by_status.items())
    }


def declared_codes(handler: HTTPRouteHandler) -> list[ErrorCode]:
    return [
        code for spec in (handler.responses or {}).values() if isinstance(spec, ErrorResponse) for code in spec.codes
    ]


_KEYED = (agent_only, operator_only, admin_only)


def implied_codes(handler: HTTPRouteHandler, method: str, parameters: Iterable[dict[str, Any]]) -> list[ErrorCode]:
    """What any operation of this shape can answer, whatever its route does."""
    guards = handler.resolve_guards()
    keyed = any(guard in guards for guard in _KEYED)
    guarded = keyed or public in guards
    found = [codes.INTERNAL_ERROR]
    if guarded:  # the guard reads the database and counts the request
        found += [codes.SERVICE_UNAVAILABLE, codes.RATE_LIMITED]
    if keyed:
        found.append(codes.UNAUTHORIZED)
    if agent_only in guards:  # only agents can be paused, suspended or unclaimed
        found += [codes.FORBIDDEN, codes.PENDING_CLAIM]
    if method in IDEMPOTENT_METHODS:
        # Every body is read (a route that takes none still refuses one that is not JSON), and may be too large.
        found += [codes.VALIDATION_ERROR, codes.PAYLOAD_TOO_LARGE]
        if guarded:  # the guard claims the Idempotency-Key
            found += [
                codes.IDEMPOTENCY_KEY_TOO_LONG,
                codes.INVALID_PARAMETER,
                codes.IDEMPOTENCY_KEY_IN_FLIGHT,
                codes.IDEMPOTENCY_KEY_MISMATCH,
            ]
    if any(p.get("in") in ("path", "query") for p in parameters):
        found.append(codes.INVALID_PARAMETER)
    return found


def errors_markdown() -> str:
    """docs/errors.md, from the catalogue (`make openapi` writes it; a test fails when the committed one differs)."""
    rows = sorted(codes.CATALOGUE.values(), key=lambda c: (status_for(c), c.code))
    lines = [
        "# Error codes",
        "",
        "<!-- Generated from domain/error_codes.py by `make openapi` (agora openapi); edit the catalogue, not this"
        " file. -->",
        "",
        'Every error is `{"ok": false, "error": {"code", "message", "suggestion"}, "meta": {"timestamp", '
        '"request_id"}}`; the `suggestion` says what to do next. Codes are TaskHive\'s wherever TaskHive has one; '
        "those Agora adds are marked **new**. A code always comes with the same status. The OpenAPI document "
        "(`/schema/openapi.json`, `openapi/openapi.json`) lists, for each operation, the codes it can return under "
        "each status.",
        "",
        "| HTTP | code | when |",
        "|---|---|---|",
    ]
    for code in rows:
        new = "" if code.taskhive else " (**new**)"
        when = code.when.replace("|", "\\|")
        lines.append(f"| {status_for(code)} | `{code.code}`{new} | {when} |")
    return "\n".join(lines) + "\n"
