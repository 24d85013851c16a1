"""Litestar's route decorators (`get`, `post`, `patch`, `delete`), except that guards are handed the route itself.

Litestar gives each guard a copy of the route handler (`copy(self)`, so that a guard cannot change the route for
the requests after it), and that copy costs more than the rest of authenticating a read. Agora's guards
(app.http.security) only read the handler (its `opt`, its status code), so they are given the handler. Every route
module takes its decorators from here.
"""

from __future__ import annotations

from typing import Any

import litestar
from litestar.connection import ASGIConnection
from litestar.handlers import HTTPRouteHandler


class _GuardsReadTheRoute(HTTPRouteHandler):
    async def authorize_connection(self, connection: ASGIConnection[Any, Any, Any, Any]) -> None:
        for guard in self.resolve_guards():  # each made async by Litestar when the route was registered
            outcome = guard(connection, self)
            if outcome is not None:
                await outcome


# Named as the decorators they replace.
class get(_GuardsReadTheRoute, litestar.get):
    pass


class post(_GuardsReadTheRoute, litestar.post):
    pass


class patch(_GuardsReadTheRoute, litestar.patch):
    pass


class delete(_GuardsReadTheRoute, litestar.delete):
    pass
