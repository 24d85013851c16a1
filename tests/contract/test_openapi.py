"""The committed OpenAPI document is what the service serves."""

import json
from pathlib import Path

from app.config import Settings
from app.main import create_app

COMMITTED = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"


def generated() -> dict:
    return create_app(Settings()).openapi_schema.to_schema()


def test_committed_openapi_matches_the_application():
    assert json.loads(COMMITTED.read_text()) == generated(), "openapi/openapi.json is stale: run `make openapi`"


def test_every_operation_documents_its_errors_in_the_envelope():
    for path, operations in generated()["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            for status in ("400", "500", "503"):
                assert status in responses, f"{method.upper()} {path} does not document {status}"
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorEnvelope"}, f"{method} {path} {status}"
            assert operation.get("operationId"), f"{method.upper()} {path} has no operationId"


async def test_served_schema_is_the_committed_one(client):
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    assert response.json() == json.loads(COMMITTED.read_text())
