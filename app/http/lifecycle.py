"""Around every HTTP request: request id, the connection lease, response headers, the idempotent commit, and
one log line.

It wraps the whole Litestar application (not a route), so 404s and 405s get the same treatment.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import structlog
from litestar.types import HTTPResponseStartEvent, HTTPScope, Message, Receive, Send

from app.http import context
from app.http.errors import encode_error
from app.repo.connections import ConnectionLease, ConnectionSource
from domain.error_codes import NOT_FOUND

log = structlog.get_logger("agora.request")

#: The application as this wrapper calls it: with HTTP scopes only.
HTTPApp = Callable[[HTTPScope, Receive, Send], Awaitable[None]]


def new_request_id() -> str:
    return "req_" + uuid.uuid4().hex[:20]


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


def _start(status: int, headers: dict[str, str], body: bytes) -> HTTPResponseStartEvent:
    raw = [(name.encode(), value.encode()) for name, value in headers.items()]
    return {
        "type": "http.response.start",
        "status": status,
        "headers": [*raw, (b"content-length", str(len(body)).encode())],
    }


def _crash_at(point: str, fault_point: str) -> None:
    if fault_point == point:
        log.warning("fault_injected", point=point)
        os._exit(137)


async def handle_http(
    app: HTTPApp, source: ConnectionSource, scope: HTTPScope, receive: Receive, send: Send, fault_point: str = ""
) -> None:
    started = time.perf_counter()
    ctx = context.RequestContext(request_id=new_request_id(), lease=ConnectionLease(source))
    token = context.enter(ctx)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=ctx.request_id)
    outcome: dict[str, Any] = {"status": 500}
    held_start: HTTPResponseStartEvent | None = None
    held_body: list[bytes] = []
    replaced = False

    async def send_wrapper(message: Message) -> None:
        nonlocal held_start, replaced
        if replaced:
            return  # the rest of a page that an envelope replaced
        if message["type"] == "http.response.start" and _is_html_404(message):
            # Litestar's /schema/{path} route answers an unknown page with HTML: every 404 is the envelope.
            error = NOT_FOUND.error(
                f"No route matches {scope.get('method')} {scope.get('path')}",
                "Check the path; the API's pages are /schema, /schema/redoc, /schema/swagger, /schema/openapi.json.",
            )
            status, headers, body = encode_error(error)
            await send_wrapper(_start(status, headers, body))
            await send({"type": "http.response.body", "body": body, "more_body": False})
            replaced = True
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
            call = ctx.idempotent_call
            if call is not None and call.awaiting_response:
                held_start = start  # sent once the response is stored with the effect
                return
            await send(start)
            return
        if message["type"] == "http.response.body" and held_start is not None:
            held_body.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            _crash_at("before_commit", fault_point)
            await _finish_idempotent(ctx, held_start, b"".join(held_body), send, outcome, fault_point)
            return
        await send(message)

    try:
        await app(scope, receive, send_wrapper)
    finally:
        try:
            if ctx.idempotent_call is not None:
                await ctx.idempotent_call.abandon()
        finally:
            await ctx.lease.release()
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


async def _finish_idempotent(
    ctx: context.RequestContext,
    start: HTTPResponseStartEvent,
    body: bytes,
    send: Send,
    outcome: dict[str, Any],
    fault_point: str,
) -> None:
    call = ctx.idempotent_call
    assert call is not None
    headers = dict(start.get("headers", []))
    content_type = headers.get(b"content-type", b"application/json").decode()
    try:
        replacement = await call.finish(start["status"], content_type, body)
    except Exception as exc:
        # The commit failed: rolled back, or, when the connection was lost during COMMIT, with an unknown outcome
        # (a 503, so the client retries with its key and gets the one true answer).
        log.error("idempotent_commit_failed", exc_info=exc)
        with contextlib.suppress(psycopg.Error):  # a lost connection cannot roll back; the server already did
            await call.abandon()
        replacement = exc
    if replacement is None:
        _crash_at("after_commit_before_response", fault_point)
        await send(start)
        await send({"type": "http.response.body", "body": body, "more_body": False})
        return
    status, new_headers, new_body = encode_error(replacement)
    outcome["status"] = status
    raw_headers = [(k.encode(), v.encode()) for k, v in new_headers.items()]
    raw_headers += [
        (b"content-length", str(len(new_body)).encode()),
        (b"x-request-id", ctx.request_id.encode()),
        *_rate_headers(ctx),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": new_body, "more_body": False})
