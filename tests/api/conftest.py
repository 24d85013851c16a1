"""Every response an API test receives through `client` must be one the served OpenAPI document allows: a status
the operation documents, an error code its schema lists for that status, and a body valid against that schema.

So a test that provokes a code or status the document forgot fails, whatever the test itself asserts; schemathesis
(tests/fuzz) checks the same contract with generated requests.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jsonschema_rs
import pytest
from litestar.testing import AsyncTestClient

from app.http.openapi import document

_CHECKERS: dict[int, DocumentedResponses] = {}


class UndocumentedResponse(AssertionError):
    pass


class DocumentedResponses:
    """An httpx response hook that checks each response against the document."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.validators: dict[tuple[str, str, str], Any] = {}
        # Literal paths before templated ones, as the router tries them (`/agents/me` before `/agents/{agent_id}`).
        self.templates = sorted(
            ((re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", path) + "$"), path) for path in doc["paths"]),
            key=lambda item: (item[1].count("{"), item[1]),
        )

    def _resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            section, name = node["$ref"].removeprefix("#/components/").split("/", 1)
            node = self.doc["components"][section][name]
        return node

    def _validator(self, path: str, method: str, status: str) -> Any:
        key = (path, method, status)
        if key not in self.validators:
            response = self._resolve(self.doc["paths"][path][method]["responses"][status])
            schema = {**response["content"]["application/json"]["schema"], "components": self.doc["components"]}
            self.validators[key] = jsonschema_rs.validator_for(schema, validate_formats=True)
        return self.validators[key]

    async def __call__(self, response: httpx.Response) -> None:
        request = response.request
        method, path = request.method.lower(), request.url.path.rstrip("/") or "/"
        if path.startswith("/schema"):
            return
        template = next((t for pattern, t in self.templates if pattern.match(path)), None)
        where = f"{request.method} {request.url.path} -> {response.status_code}"
        if template is None:
            await self._expect(response, where, "NOT_FOUND", 404)
            return
        if method == "options":
            if response.status_code != 204 or "allow" not in response.headers:
                raise UndocumentedResponse(f"{where}: OPTIONS answers 204 with Allow")
            return
        method = "get" if method == "head" else method  # HEAD is the GET without its body
        if method not in self.doc["paths"][template]:
            await self._expect(response, where, "METHOD_NOT_ALLOWED", 405)
            return
        operation = self.doc["paths"][template][method]
        status = str(response.status_code)
        if status not in operation["responses"]:
            raise UndocumentedResponse(f"{where}: {template} does not document {status}")
        if request.method == "HEAD" or "text/event-stream" in response.headers.get("content-type", ""):
            return  # no body, or an endless one
        content = self._resolve(operation["responses"][status]).get("content", {})
        if "application/json" not in content:
            return
        await response.aread()
        body = response.json()
        errors = [str(e) for e in self._validator(template, method, status).iter_errors(body)]
        if errors:
            raise UndocumentedResponse(f"{where}: the body breaks {template}'s {status} schema: {errors[:3]}")

    @staticmethod
    async def _expect(response: httpx.Response, where: str, code: str, status: int) -> None:
        """A response to an operation the document does not list: only the router's own 404 or 405."""
        found = code  # a HEAD answer has no body to read the code from
        if response.request.method != "HEAD":
            await response.aread()
            found = None
            with contextlib.suppress(ValueError, KeyError, TypeError):
                found = response.json()["error"]["code"]
        if (response.status_code, found) != (status, code):
            raise UndocumentedResponse(f"{where} {found}: expected {status} {code} for an undocumented operation")


@pytest.fixture
async def client(client: AsyncTestClient) -> AsyncIterator[AsyncTestClient]:
    """The shared test client, with every response checked against the document its application serves."""
    hooks = client.event_hooks
    doc = document(client.app)
    check = _CHECKERS.setdefault(id(doc), DocumentedResponses(doc))
    client.event_hooks = {**hooks, "response": [*hooks.get("response", []), check]}
    try:
        yield client
    finally:
        client.event_hooks = hooks


@pytest.fixture
async def rival(client, admin_key):
    """A second worker, of a third operator (the task-life tests race it against `worker`)."""
    from tests.conftest import new_agent

    return await new_agent(client, admin_key, "rival")
