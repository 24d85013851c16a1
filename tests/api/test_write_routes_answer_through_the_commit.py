"""Every write route answers through app.http.respond, so that under an Idempotency-Key the unit of work's commit
renders and stores the response it sends (a route that returned its own rendering would be refused by the commit
with a 500, and only on the idempotent path)."""

from __future__ import annotations

import inspect

from litestar.handlers import HTTPRouteHandler

from app.config import load_settings
from app.main import create_app
from tests.support import TEST_SECRET_KEY

WRITES = {"POST", "PATCH", "DELETE"}


def _write_handlers() -> list[HTTPRouteHandler]:
    app = create_app(load_settings({}).with_overrides(secret_key=TEST_SECRET_KEY))
    handlers = []
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            if isinstance(handler, HTTPRouteHandler) and handler.http_methods & WRITES:
                handlers.append(handler)
    return handlers


def test_every_write_route_that_runs_a_unit_of_work_answers_through_respond():
    handlers = _write_handlers()
    assert len(handlers) >= 27
    silent = [
        f"{sorted(h.http_methods)} {h.paths}"
        for h in handlers
        if "uow" in inspect.signature(h.fn).parameters and "respond(" not in inspect.getsource(h.fn)
    ]
    assert silent == []
