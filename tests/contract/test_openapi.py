"""The committed OpenAPI document is what the service serves, and it says exactly what the service accepts and
returns: integer ids and bounded parameters, closed request bodies, an example for every body and success, and
for every error status the codes the operation can return, each with the status the catalogue gives it."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from app.config import Settings
from app.http.errors import status_for
from app.http.openapi import document
from app.http.params import MAX_ID
from app.http.routes.docs import errors_markdown
from app.main import create_app
from domain.error_codes import CATALOGUE

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "openapi" / "openapi.json"
ERRORS_DOC = ROOT / "docs" / "errors.md"
METHODS = ("get", "post", "patch", "put", "delete")


@cache
def _generated() -> str:
    return json.dumps(document(create_app(Settings())))


def generated() -> dict:
    return json.loads(_generated())


def operations(doc: dict) -> list[tuple[str, str, dict]]:
    return [(path, method, op) for path, ops in doc["paths"].items() for method, op in ops.items() if method in METHODS]


def resolve(doc: dict, node: dict) -> dict:
    while "$ref" in node:
        section, name = node["$ref"].removeprefix("#/components/").split("/", 1)
        node = doc["components"][section][name]
    return node


def validator(doc: dict, schema: dict) -> Any:
    return jsonschema_rs.validator_for({**schema, "components": doc["components"]}, validate_formats=True)


def test_committed_openapi_matches_the_application():
    assert json.loads(COMMITTED.read_text()) == generated(), "openapi/openapi.json is stale: run `make openapi`"


async def test_served_schema_is_the_committed_one(client):
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    assert response.json() == json.loads(COMMITTED.read_text())


def test_committed_error_catalogue_is_generated():
    assert ERRORS_DOC.read_text() == errors_markdown(), "docs/errors.md is stale: run `make openapi`"


def test_every_catalogue_code_is_in_the_error_docs():
    text = ERRORS_DOC.read_text()
    for code in CATALOGUE:
        assert f"`{code}`" in text


def test_every_operation_has_an_id_and_documents_500():
    for path, method, op in operations(generated()):
        assert op.get("operationId"), f"{method.upper()} {path} has no operationId"
        assert "500" in op["responses"], f"{method.upper()} {path} does not document 500"


def _error_codes(doc: dict, response: dict) -> list[str] | None:
    """The codes an error response allows, or None when it is not the error envelope."""
    schema = resolve(doc, response)["content"]["application/json"]["schema"]
    if schema.get("allOf") != [{"$ref": "#/components/schemas/ErrorEnvelope"}]:
        return None
    return schema["properties"]["error"]["properties"]["code"]["enum"]


def test_every_error_status_lists_its_codes_with_their_catalogue_status():
    doc = generated()
    for path, method, op in operations(doc):
        for status, response in op["responses"].items():
            if not status.startswith(("4", "5")):
                continue
            found = _error_codes(doc, response)
            if found is None:  # readyz's 503 is its own readiness body
                assert (path, status) == ("/readyz", "503"), f"{method} {path} {status} is not the error envelope"
                continue
            assert found, f"{method} {path} {status} lists no code"
            for code in found:
                assert code in CATALOGUE, f"{method} {path}: {code} is not in domain/error_codes.py"
                assert status_for(CATALOGUE[code]) == int(status), f"{method} {path}: {code} under {status}"


def test_cross_cutting_codes_are_documented_by_shape():
    doc = generated()
    for path, method, op in operations(doc):
        codes = {c for r in op["responses"].values() for c in (_error_codes(doc, r) if "$ref" in r else None) or ()}
        if op.get("security"):
            assert {"UNAUTHORIZED", "RATE_LIMITED", "SERVICE_UNAVAILABLE"} <= codes, f"{method} {path}"
        if method in ("post", "patch", "delete"):
            assert {"VALIDATION_ERROR", "PAYLOAD_TOO_LARGE", "IDEMPOTENCY_KEY_MISMATCH"} <= codes, f"{method} {path}"
        if any(p["in"] in ("path", "query") for p in op.get("parameters", [])):
            assert "INVALID_PARAMETER" in codes, f"{method} {path}"


def test_error_code_schema_is_the_catalogue():
    doc = generated()
    listed = [entry["const"] for entry in doc["components"]["schemas"]["ErrorCode"]["oneOf"]]
    assert sorted(listed) == sorted(CATALOGUE)


def test_path_ids_are_bounded_integers_and_other_path_parameters_enumerated():
    names = set()
    for path, _, op in operations(generated()):
        for parameter in op.get("parameters", []):
            if parameter["in"] != "path":
                continue
            schema, name = parameter["schema"], parameter["name"]
            names.add(name)
            if name.endswith("_id"):
                assert (schema["type"], schema["minimum"], schema["maximum"]) == ("integer", 1, MAX_ID), path
            else:  # a segment naming one of a closed set of words (a board's column)
                assert schema["type"] == "string" and schema["enum"], f"{path} {name}"
    assert names - {n for n in names if n.endswith("_id")} == {"column"}


def test_query_parameters_are_bounded_or_enumerated():
    doc = generated()
    for path, _, op in operations(doc):
        for parameter in op.get("parameters", []):
            schema, name = parameter["schema"], parameter["name"]
            if name == "limit":
                assert schema["minimum"] == 1 and schema["maximum"] == 100, path
            if name in ("sort", "status", "kind"):
                branches = [resolve(doc, b) for b in schema.get("oneOf", [schema])]
                assert any("enum" in b for b in branches), f"{path} {name}"
            if name == "q":
                assert parameter["required"] and schema["minLength"] == 1 and schema["maxLength"] == 200
            if name in ("category", "min_budget", "max_budget", "account", "task"):
                assert "minimum" in schema and schema["maximum"] == MAX_ID, f"{path} {name}"


def _objects(doc: dict, schema: dict, seen: set[str]) -> list[dict]:
    """Every object schema reachable from `schema`."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        if name in seen:
            return []
        seen.add(name)
        return _objects(doc, resolve(doc, schema), seen)
    found = [schema] if schema.get("type") == "object" else []
    for key in ("properties", "$defs"):
        for child in schema.get(key, {}).values():
            found += _objects(doc, child, seen)
    for key in ("anyOf", "oneOf", "allOf"):
        for child in schema.get(key, []):
            found += _objects(doc, child, seen)
    if isinstance(schema.get("items"), dict):
        found += _objects(doc, schema["items"], seen)
    return found


def test_request_bodies_refuse_unknown_fields():
    doc = generated()
    bodies = [op["requestBody"] for _, _, op in operations(doc) if "requestBody" in op]
    assert len(bodies) >= 14
    for body in bodies:
        for schema in _objects(doc, body["content"]["application/json"]["schema"], set()):
            if "properties" not in schema and schema.get("additionalProperties") is True:
                continue  # a map the caller owns, declared as one (a task's metadata), not a struct
            assert schema.get("additionalProperties") is False, schema.get("title")


def test_body_constraints_the_server_enforces_are_documented():
    schemas = generated()["components"]["schemas"]
    update = schemas["AgentUpdateIn"]["properties"]
    assert update["hourly_rate_credits"]["anyOf"][0]["minimum"] == 0  # Litestar's generator dropped this
    assert update["category_ids"]["items"]["minimum"] == 1
    assert update["capabilities"]["items"] == {"type": "string", "minLength": 1, "maxLength": 100}
    task = schemas["TaskIn"]["properties"]
    assert task["budget_credits"] == {"type": "integer", "minimum": 10, "maximum": 1_000_000_000}
    assert task["deadline"]["anyOf"][0]["format"] == "date-time"


def _examples(doc: dict) -> list[tuple[str, dict, Any]]:
    found = []
    for path, method, op in operations(doc):
        if "requestBody" in op:
            content = op["requestBody"]["content"]["application/json"]
            found.append((f"{method} {path} body", content["schema"], content.get("example")))
        for status, response in op["responses"].items():
            content = resolve(doc, response).get("content", {})
            if status.startswith("2"):
                assert content, f"{method} {path} {status} has no content"
                for media, item in content.items():
                    assert "example" in item or "examples" in item, f"{method} {path} {status} {media}"
            item = content.get("application/json", {})
            values = [item["example"]] if "example" in item else [e["value"] for e in item.get("examples", {}).values()]
            found += [(f"{method} {path} {status}", item["schema"], value) for value in values]
    return found


def test_every_example_is_valid_against_its_own_schema():
    doc = generated()
    examples = _examples(doc)
    assert len(examples) > 50
    for where, schema, example in examples:
        assert example is not None, where
        errors = [str(e) for e in validator(doc, schema).iter_errors(example)]
        assert not errors, f"{where}: {errors[:3]}"


def test_example_validation_can_fail():
    """The check above is not vacuous: a body the server refuses fails its schema."""
    doc = generated()
    (schema,) = (
        c["schema"]
        for p, m, op in operations(doc)
        if op["operationId"] == "createTask"
        for c in [op["requestBody"]["content"]["application/json"]]
    )
    good = next(example for where, _, example in _examples(doc) if where == "post /api/v1/tasks body")
    for broken in ({**good, "budget_credits": 5}, {**good, "surprise": 1}, {**good, "title": "x"}):
        assert not validator(doc, schema).is_valid(broken)
    assert validator(doc, schema).is_valid(copy.deepcopy(good))


@pytest.mark.parametrize("operation_id", ["streamMyEvents", "streamTaskEvents"])
def test_event_streams_document_their_header_and_media_type(operation_id):
    (op,) = (op for _, _, op in operations(generated()) if op["operationId"] == operation_id)
    assert "text/event-stream" in op["responses"]["200"]["content"]
    assert any(p["in"] == "header" and p["name"] == "Last-Event-ID" for p in op["parameters"])
