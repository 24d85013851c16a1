"""Liveness and readiness probes."""

from __future__ import annotations

import msgspec
from litestar import Controller, Request, Response, get

from app.http import context
from app.http.envelope import Envelope, ok
from app.http.routes.docs import errors
from app.services import health


class HealthOut(msgspec.Struct, kw_only=True):
    status: str


class ReadinessOut(msgspec.Struct, kw_only=True):
    status: str
    database: bool
    schema_revision: str | None
    expected_revision: str | None


class HealthController(Controller):
    tags = ["health"]

    @get("/healthz", operation_id="healthz", responses=errors())
    async def healthz(self) -> Envelope[HealthOut]:
        """The process is up."""
        return ok(HealthOut(status="ok"))

    @get("/readyz", operation_id="readyz", responses=errors())
    async def readyz(self, request: Request) -> Response[Envelope[ReadinessOut]]:
        """The database answers and its schema is at the latest migration (503 otherwise)."""
        expected = request.app.state.expected_revision
        state = await health.readiness(context.current().lease, expected)
        body = ok(
            ReadinessOut(
                status="ready" if state.ready else "not_ready",
                database=state.database,
                schema_revision=state.schema_revision,
                expected_revision=expected,
            )
        )
        return Response(body, status_code=200 if state.ready else 503)
