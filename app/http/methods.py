"""HEAD wherever GET works, and OPTIONS that names a route's real methods (RFC 9110 §9.3.2, §9.3.7).

Litestar answers neither well: HEAD on a GET route is a 405, and the OPTIONS handler it makes for a path keeps
the methods of the first handlers registered for that path, so `/agents/me` said `GET, OPTIONS` without its PATCH.
Both are answered here, before Litestar routes the request, from the finished routes' own method sets.
"""

from __future__ import annotations

from litestar import Litestar
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Send
from litestar.utils import normalize_path


def allow_table(app: Litestar) -> dict[str, str]:
    """Each route's path template and its Allow header."""
    table = {}
    for route in app.routes:
        methods = set(route.methods)
        if "GET" in methods:
            methods.add("HEAD")
        table[route.path_format] = ", ".join(sorted(methods))
    return table


def _route_template(app: Litestar, path: str, method: str) -> str | None:
    """The path template of the route serving `method` on `path`, or None (no such route, or not that method)."""
    try:
        *_, template = app.asgi_router.handle_routing(path=normalize_path(path), method=method)  # cached by Litestar
    except HTTPException:
        return None
    return template


async def dispatch(
    litestar: ASGIApp, app: Litestar, allow: dict[str, str], scope: HTTPScope, receive: Receive, send: Send
) -> None:
    method = scope.get("method")
    if method == "OPTIONS":
        template = _route_template(app, scope["path"], "OPTIONS")
        if template is not None:
            headers = [(b"allow", allow[template].encode()), (b"content-length", b"0")]
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
    elif method == "HEAD" and _route_template(app, scope["path"], "GET") is not None:
        await litestar({**scope, "method": "GET"}, receive, _without_body(send))
        return
    await litestar(scope, receive, _with_head_in_allow(send, allow, app, scope["path"]))


def _without_body(send: Send) -> Send:
    """The GET's status and headers (Content-Length included, as RFC 9110 allows), then an empty body, once."""
    finished = False

    async def send_head(message: Message) -> None:
        nonlocal finished
        if finished:
            return  # the rest of the GET's body (an event stream keeps going until it sees the client leave)
        if message["type"] == "http.response.start":
            await send(message)
            return
        finished = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return send_head


def _with_head_in_allow(send: Send, allow: dict[str, str], app: Litestar, path: str) -> Send:
    """A 405's Allow header from the route's real methods (HEAD included)."""

    async def send_allow(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] == 405:
            template = _route_template(app, path, "OPTIONS")  # every route has OPTIONS
            if template in allow:
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
                message = {**message, "headers": [*headers, (b"allow", allow[template].encode())]}
        await send(message)

    return send_allow
