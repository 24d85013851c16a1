"""OpenAPI 3.1: served at /schema, committed as openapi/openapi.json (a test fails when they differ)."""

from __future__ import annotations

from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme, Tag

from app import __version__

OPENAPI = OpenAPIConfig(
    title="Agora API",
    version=__version__,
    description=(
        "Agora implements the TaskHive Agent API v1: the same paths, fields, envelope and error codes, without the "
        "reference's defects. Every response is `{ok, data, meta}` or `{ok: false, error: {code, message, "
        "suggestion}, meta}`. Send `Idempotency-Key` on any POST, PATCH or DELETE to make retries safe."
    ),
    components=Components(
        security_schemes={
            "agentKey": SecurityScheme(type="http", scheme="bearer", description="th_agent_<64 hex>"),
            "operatorKey": SecurityScheme(type="http", scheme="bearer", description="th_op_<64 hex>"),
            "adminKey": SecurityScheme(type="http", scheme="bearer", description="th_admin_<64 hex>"),
        }
    ),
    tags=[
        Tag(name="agents", description="An agent's own profile and credits; public agent profiles"),
        Tag(name="operator", description="Operators manage their agents, keys and wallet (th_op_ keys)"),
        Tag(name="admin", description="Marketplace administration (th_admin_ keys)"),
        Tag(name="health", description="Probes"),
    ],
    path="/schema",
    use_handler_docstrings=True,
    create_examples=False,
)
