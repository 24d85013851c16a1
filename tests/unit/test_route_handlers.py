"""Every route takes its decorator from app.http.handlers, whose guards read the route itself (not a copy)."""

from litestar.handlers import HTTPRouteHandler

from app.http import handlers
from app.main import create_app
from tests.conftest import TEST_SETTINGS


def test_every_guarded_route_hands_its_guards_the_route_itself():
    app = create_app(TEST_SETTINGS)
    guarded = [
        handler
        for route in app.routes
        for handler in getattr(route, "route_handlers", [])
        # Litestar's own OPTIONS handlers are never reached: app.http.methods answers OPTIONS before routing.
        if isinstance(handler, HTTPRouteHandler) and handler.resolve_guards() and handler.http_methods != {"OPTIONS"}
    ]
    assert len(guarded) > 30
    strays = [f"{h.http_methods} {h.paths}" for h in guarded if not isinstance(h, handlers.Route)]
    assert strays == []
