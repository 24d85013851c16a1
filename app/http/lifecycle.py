"""Around every HTTP request: request id, the connection lease, response headers, and one log line.

It wraps the whole Litestar application (not a route), so 404s and 405s get the same treatment.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import structlog
from litestar.types import HTTPResponseStartEvent, HTTPScope, Message, Receive, Send

from app.http import context
from app.http.errors import error_headers, render_error
from app.http.security import settle_deferred_auth
from app.repo.connections import ConnectionLease, ConnectionSource
from domain.error_codes import NOT_FOUND
from domain.errors import DomainError

log = structlog.get_logger("agora.request")

#: The application as this wrapper calls it: with HTTP scopes only.
HTTPApp = Callable[[HTTPScope, Receive, Send], Awaitable[None]]


def new_request_id() -> str:
    return "req_" + os.urandom(10).hex()  # 20 random hex digits (80 bits)


def _rate_headers(ctx: context.RequestContext) -> list[tuple[bytes, bytes]]:
    if ctx.rate is None:
        return []
    rate = ctx.rate
    headers = [
        (b"x-ratelimit-limit", str(rate.limit).encode()),
        (b"x-ratelimit-remaining", str(rate.remaining).encode()),
        (b"x-ratelimit-reset", str(rate.reset_at).encode()),
    ]
    return headers


def _is_html_404(start: HTTPResponseStartEvent) -> bool:
    return start["status"] == 404 and any(
        name.lower() == b"content-type" and value.startswith(b"text/html") for name, value in start.get("headers", [])
    )


def _start(status: int, content_type: str, body: bytes) -> HTTPResponseStartEvent:
    return {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())],
    }


async def _settle_quietly(ctx: context.RequestContext) -> DomainError | None:
    """`settle_deferred_auth`, except that a database failure leaves the response that is on its way (a 503)."""
    try:
        return await settle_deferred_auth(ctx)
    except psycopg.Error:
        return None


async def handle_http(app: HTTPApp, source: ConnectionSource, scope: HTTPScope, receive: Receive, send: Send) -> None:
    started = time.perf_counter()
    ctx = context.RequestContext(request_id=new_request_id(), lease=ConnectionLease(source))
    token = context.enter(ctx)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=ctx.request_id)
    outcome: dict[str, Any] = {"status": 500}
    replaced = False

    async def replace(error: DomainError) -> None:
        nonlocal replaced
        rendered = render_error(error)
        start = _start(rendered.status, rendered.content_type, rendered.body)
        start["headers"] = [*start["headers"], *error_headers(error)]
        await send_wrapper(start)
        await send({"type": "http.response.body", "body": rendered.body, "more_body": False})
        replaced = True

    async def send_wrapper(message: Message) -> None:
        if replaced:
            return  # the rest of a response that an envelope replaced
        if message["type"] == "http.response.start" and ctx.deferred_auth is not None:
            # A read's deferred authentication: its outcome goes on the request now (the principal for the log, the
            # rate-limit headers), or, when the request failed before its read (a 400), it is authenticated now;
            # a refusal is the answer, as it would have been had the guard authenticated first.
            refused = await _settle_quietly(ctx)
            if refused is not None:
                await replace(refused)
                return
        if message["type"] == "http.response.start" and _is_html_404(message):
            # Litestar's /schema/{path} route answers an unknown page with HTML: every 404 is the envelope.
            await replace(
                NOT_FOUND.error(
                    f"No route matches {scope.get('method')} {scope.get('path')}",
                    "Check the path; the API's pages are /schema, /schema/redoc, /schema/swagger, "
                    "/schema/openapi.json.",
                )
            )
            return
        if message["type"] == "http.response.start":
            outcome["status"] = message["status"]
            start: HTTPResponseStartEvent = {
                **message,
                "headers": [
                    *message.get("headers", []),
                    (b"x-request-id", ctx.request_id.encode()),
                    *_rate_headers(ctx),
                ],
            }
            await send(start)
            return
        await send(message)

    try:
        await app(scope, receive, send_wrapper)
    finally:
        try:
            if ctx.deferred_auth is not None:  # no response started (the client left): the request still counts
                await _settle_quietly(ctx)
            await ctx.lease.release()
        finally:
            context.leave(token)
            principal = ctx.principal
            log.info(
                "request",
                request_id=ctx.request_id,
                method=scope.get("method"),
                path=scope.get("path"),
                route=scope.get("path_template"),
                status=outcome["status"],
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                principal=principal.name if principal else None,
                agent_id=principal.agent_id if principal else None,
                idempotency_key=bool(ctx.idempotent_call),
                **ctx.extra_log,
            )
