"""OpenAPI 3.1: served at /schema/openapi.json, committed as openapi/openapi.json (a test fails when they differ).

Litestar lays out the paths, operations and parameters. The schemas of bodies and responses are msgspec's, made
from the very types the server decodes requests into and encodes responses from, so the document says exactly
what is accepted (bounds, formats, `additionalProperties: false` from `forbid_unknown_fields`) and returned;
Litestar's own Struct schemas lose nested constraints and minimums of 0 and say nothing of unknown fields. Each
error status lists the codes the operation can return (app.http.routes.docs), as an enum of `error.code`.
"""

from __future__ import annotations

import copy
import typing
import weakref
from typing import Annotated, Any, TypeVar

import msgspec
from litestar import Litestar, Request, Response
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin, OpenAPIRenderPlugin, RedocRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme, Tag
from litestar.routes import HTTPRoute

from app import __version__
from app.http.envelope import ErrorEnvelope
from app.http.errors import status_for
from app.http.openapi_components import only_referenced, tidy_names
from app.http.routes.docs import ErrorResponse, declared_codes, implied_codes
from app.http.schemas.examples import example_of
from app.http.security import IDEMPOTENT_METHODS, public
from app.services.idempotency import MAX_KEY_LENGTH
from domain.error_codes import CATALOGUE, ErrorCode

_REF = "#/components/schemas/{name}"
_JSON = "application/json"
_STATUS_NAMES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    413: "Payload too large",
    422: "Unprocessable",
    429: "Too many requests",
    500: "Internal error",
    503: "Unavailable",
}


Plugin = TypeVar("Plugin", bound=OpenAPIRenderPlugin)


def _render_the_document(plugin: type[Plugin]) -> type[Plugin]:
    """A render plugin that serves `document(app)` instead of Litestar's raw schema."""

    # mypy cannot check a class whose base is a variable (`plugin`, a different class per call).
    class Rendered(plugin):  # type: ignore[misc, valid-type]
        def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
            rendered: bytes = super().render(request, document(request.app))
            return rendered

    Rendered.__name__ = plugin.__name__
    return Rendered


OPENAPI = OpenAPIConfig(
    title="Agora API",
    version=__version__,
    description=(
        "Agora implements the TaskHive Agent API v1: the same paths, fields, envelope and error codes, without the "
        "reference's defects. Every response is `{ok, data, meta}` or `{ok: false, error: {code, message, "
        "suggestion}, meta}`; each operation lists the error codes it can return, per status (docs/errors.md says "
        "when each happens). Send `Idempotency-Key` on any POST, PATCH or DELETE to make retries safe. HEAD is "
        "answered wherever GET is (the GET's status and headers, no body), and OPTIONS on every path with `204` and "
        "`Allow` naming the path's methods; neither is listed per operation."
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
    render_plugins=[
        _render_the_document(RedocRenderPlugin)(path=["/", "/redoc"]),
        _render_the_document(SwaggerRenderPlugin)(path="/swagger"),
        _render_the_document(JsonRenderPlugin)(),
    ],
)

_DOCUMENTS: weakref.WeakKeyDictionary[Litestar, dict[str, Any]] = weakref.WeakKeyDictionary()


def document(app: Litestar) -> dict[str, Any]:
    """The application's OpenAPI document (built once per application)."""
    found = _DOCUMENTS.get(app)
    if found is None:
        found = _DOCUMENTS[app] = _build(app)
    return found


def _operations(app: Litestar, paths: dict[str, Any]) -> list[tuple[dict[str, Any], str, HTTPRouteHandler]]:
    """(operation, method, handler) for every operation the document lists."""
    found: list[tuple[dict[str, Any], str, HTTPRouteHandler]] = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or route.path_format not in paths:
            continue
        for handler in route.route_handlers:
            for method in sorted(handler.http_methods):
                operation = paths[route.path_format].get(method.lower())
                if operation is not None:
                    found.append((operation, method, handler))
    return found


def _wire_type(annotation: Any) -> Any | None:
    """The msgspec type a handler's return annotation encodes (None for a stream or raw bytes)."""
    if typing.get_origin(annotation) is Response:
        (annotation,) = typing.get_args(annotation)
    try:
        msgspec.json.schema(annotation)
    except TypeError:
        return None
    return annotation


def _build(app: Litestar) -> dict[str, Any]:
    doc = copy.deepcopy(app.openapi_schema.to_schema())
    operations = _operations(app, doc["paths"])
    types: list[Any] = [ErrorEnvelope]
    for _, _, handler in operations:
        if handler.parsed_data_field is not None:
            types.append(_body_type(handler))
        types.append(_wire_type(handler.parsed_fn_signature.return_type.annotation))
        types += [_spec_type(spec) for spec in _plain_responses(handler).values()]
    wanted = [t for t in dict.fromkeys(types) if t is not None]
    schemas, components = msgspec.json.schema_components(wanted, ref_template=_REF)
    by_type = dict(zip(wanted, schemas, strict=True))
    components["ErrorCode"] = {
        "title": "ErrorCode",
        "description": "Every code the API returns, and when (docs/errors.md has the same table)",
        "oneOf": [{"const": c.code, "description": c.when} for c in sorted(CATALOGUE.values(), key=lambda c: c.code)],
    }
    components["ErrorDetail"]["properties"]["code"] = {"$ref": _REF.format(name="ErrorCode")}
    doc["components"]["headers"] = _HEADER_COMPONENTS
    # Litestar's components that parameters refer to (enums) stay; the bodies' and responses' are msgspec's.
    litestar_components = doc["components"].get("schemas", {})
    doc["components"]["schemas"] = {**litestar_components, **components}
    shared: dict[str, Any] = {}
    for operation, method, handler in operations:
        _describe(operation, method, handler, by_type, shared)
    doc["components"]["responses"] = dict(sorted(shared.items()))
    return tidy_names(only_referenced(doc))


def _body_type(handler: HTTPRouteHandler) -> Any:
    """The body's type with the msgspec Meta it is annotated with (minProperties, ...), without Litestar's markers."""
    field = handler.parsed_data_field
    assert field is not None
    metas = tuple(m for m in getattr(field.raw, "__metadata__", ()) if isinstance(m, msgspec.Meta))
    return Annotated[(field.annotation, *metas)] if metas else field.annotation


def _plain_responses(handler: HTTPRouteHandler) -> dict[int, ResponseSpec]:
    """A route's other documented responses (a stream's 200, readyz's 503)."""
    return {s: spec for s, spec in (handler.responses or {}).items() if not isinstance(spec, ErrorResponse)}


def _spec_type(spec: ResponseSpec) -> Any | None:
    """The wire type a plain response spec documents (a stream's per-event type too), if msgspec describes it."""
    return None if spec.data_container is str else _wire_type(spec.data_container)


def _describe(
    operation: dict[str, Any],
    method: str,
    handler: HTTPRouteHandler,
    by_type: dict[Any, Any],
    shared: dict[str, Any],
) -> None:
    field = handler.parsed_data_field
    if field is not None:
        body = operation["requestBody"]["content"][_JSON]
        body["schema"] = by_type[_body_type(handler)]
        body["example"] = example_of(field.annotation)
        # An optional body (`T | None`) may be left out: the handler then sees None.
        operation["requestBody"]["required"] = type(None) not in typing.get_args(field.annotation)
    guarded = any(guard is public for guard in handler.resolve_guards()) or bool(operation.get("security"))
    if method in IDEMPOTENT_METHODS and guarded:
        operation.setdefault("parameters", []).append(_IDEMPOTENCY_KEY)
    responses = operation["responses"]
    success = str(handler.status_code)
    wire = _wire_type(handler.parsed_fn_signature.return_type.annotation)
    if wire is not None:
        responses[success]["content"] = {_JSON: {"schema": by_type[wire], "example": example_of(wire)}}
    headers = responses[success].setdefault("headers", {})
    if guarded:
        headers.update(_RATE_HEADERS)
    if method in IDEMPOTENT_METHODS and guarded:
        headers.update(_REPLAYED)
    for status, spec in _plain_responses(handler).items():
        kind = _spec_type(spec)
        if kind is None:
            continue
        content = responses[str(status)]["content"][getattr(spec.media_type, "value", spec.media_type)]
        content["schema"] = by_type[kind]
        if "examples" not in content:  # a stream's example is its text, given by the route
            content["example"] = example_of(kind)
    for status in [s for s in responses if s.startswith(("4", "5")) and int(s) not in _plain_responses(handler)]:
        del responses[status]
    by_status: dict[int, dict[str, ErrorCode]] = {}
    for code in declared_codes(handler) + implied_codes(handler, method, operation.get("parameters", [])):
        by_status.setdefault(status_for(code), {})[code.code] = code
    for status, found in sorted(by_status.items()):
        if status not in _plain_responses(handler):
            # One component per status and set of codes: most operations share their 401, 429, 500 and 503.
            ordered = sorted(found.values(), key=lambda c: c.code)
            name = f"{status}-" + ".".join(c.code for c in ordered)
            shared[name] = _error_response(status, ordered)
            responses[str(status)] = {"$ref": f"#/components/responses/{name}"}
    for response in responses.values():
        if "$ref" not in response:
            response.setdefault("headers", {}).update(_REQUEST_ID)
    operation["responses"] = dict(sorted(responses.items()))


def _error_response(status: int, found: list[ErrorCode]) -> dict[str, Any]:
    schema = {
        "allOf": [{"$ref": _REF.format(name="ErrorEnvelope")}],
        "properties": {"error": {"properties": {"code": {"enum": [c.code for c in found]}}}},
    }
    response: dict[str, Any] = {
        # When each code is returned is said once, in the ErrorCode schema.
        "description": f"{_STATUS_NAMES[status]}: " + ", ".join(f"`{c.code}`" for c in found),
        "content": {_JSON: {"schema": schema}},
    }
    response["headers"] = _REQUEST_ID | (_refs_to("Retry-After") if status == 429 else {})
    return response


# Response headers, defined once in components.headers and referred to by every response that carries them.
_HEADERS = {
    "X-Request-ID": ("This request's id, as in `meta.request_id`", True),
    "X-RateLimit-Limit": ("Requests allowed per minute", True),
    "X-RateLimit-Remaining": ("Requests left in the current minute", True),
    "X-RateLimit-Reset": ("Unix seconds when the whole allowance is back", True),
    "Retry-After": ("Seconds to wait before retrying", True),
    "Idempotency-Replayed": ("`true` when this is the stored response to an earlier request with this key", False),
}


def _refs_to(*names: str) -> dict[str, Any]:
    return {name: {"$ref": f"#/components/headers/{name}"} for name in names}


_REQUEST_ID = _refs_to("X-Request-ID")
_RATE_HEADERS = _refs_to("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
_REPLAYED = _refs_to("Idempotency-Replayed")
_INTEGER_TEXT = {"type": "string", "pattern": "^[0-9]+$"}
_HEADER_COMPONENTS = {
    name: {
        "description": description,
        "required": required,
        "schema": {"type": "string", "enum": ["true"]} if name == "Idempotency-Replayed" else _INTEGER_TEXT,
    }
    for name, (description, required) in _HEADERS.items()
    if name != "X-Request-ID"
} | {"X-Request-ID": {"description": _HEADERS["X-Request-ID"][0], "required": True, "schema": {"type": "string"}}}
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": (
        "Makes a retry safe: the same key with the same request replays the first response "
        "(`Idempotency-Replayed: true`) for 24 hours; with another request it is a 422"
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": "^[\\x20-\\x7e]+$"},
    "example": "5f0c1e9a-1b2c-4d3e-8f90-a1b2c3d4e5f6",
}
