"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import Example

from app.http import context
from app.http.envelope import Envelope, ok
from app.http.handlers import get
from app.http.schemas.examples import envelope_example
from app.http.schemas.health import HealthOut, ReadinessOut
from app.services import health


class HealthController(Controller):
    tags = ["health"]

    @get("/healthz", operation_id="healthz")
    async def healthz(self) -> Envelope[HealthOut]:
        """The process is up."""
        return ok(HealthOut(status="ok"))

    @get(
        "/readyz",
        operation_id="readyz",
        responses={
            503: ResponseSpec(
                data_container=Envelope[ReadinessOut],
                description="Not ready: the database does not answer, or its schema is not at the latest migration",
                generate_examples=False,
                examples=[
                    Example(
                        summary="Migrations not applied yet",
                        value=envelope_example(
                            ReadinessOut(
                                status="not_ready", database=True, schema_revision="0006", expected_revision="0007"
                            )
                        ),
                    )
                ],
            )
        },
    )
    async def readyz(self, request: Request[Any, Any, Any]) -> Response[Envelope[ReadinessOut]]:
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
