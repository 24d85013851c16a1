"""The route decorators (`get`, `post`, `patch`, `delete`): Litestar's, except that guards are handed the route itself.

Litestar gives each guard a copy of the route handler (`copy(self)`, so that a guard cannot change the route for
the requests after it), and that copy costs more than the rest of authenticating a read. Agora's guards
(app.http.security) only read the handler (its `opt`, its status code), so they are given the handler. Every route
module takes its decorators from here. They are functions over a subclass of `HTTPRouteHandler`, as Litestar 3's
are (subclassing its semantic `get`, `post`... classes is deprecated); `options` are `HTTPRouteHandler`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from litestar.connection import ASGIConnection
from litestar.enums import HttpMethod
from litestar.handlers import HTTPRouteHandler


class Route(HTTPRouteHandler):
    async def authorize_connection(self, connection: ASGIConnection[Any, Any, Any, Any]) -> None:
        for guard in self.resolve_guards():  # each made async by Litestar when the route was registered
            outcome = guard(connection, self)
            if outcome is not None:
                await outcome


def get(path: str | Sequence[str] | None = None, **options: Any) -> Route:
    return Route(path, http_method=HttpMethod.GET, **options)


def post(path: str | Sequence[str] | None = None, **options: Any) -> Route:
    return Route(path, http_method=HttpMethod.POST, **options)


def patch(path: str | Sequence[str] | None = None, **options: Any) -> Route:
    return Route(path, http_method=HttpMethod.PATCH, **options)


def delete(path: str | Sequence[str] | None = None, **options: Any) -> Route:
    return Route(path, http_method=HttpMethod.DELETE, **options)
