"""The document and the server agree: path ids are refused exactly when the document says they are invalid, and the
response check every API test runs (tests/api/conftest.py) does catch what the document does not allow."""

from __future__ import annotations

import copy
from urllib.parse import quote

import jsonschema_rs
import pytest
from schemathesis.specs.openapi.utils import sent_text_is_valid

from app.http.openapi import document
from app.http.params import MAX_ID
from tests.api.conftest import DocumentedResponses, UndocumentedResponse
from tests.conftest import bearer

IDS = [
    "1",
    "42",
    "007",
    "+5",
    str(MAX_ID),
    str(MAX_ID + 1),
    "99999999999999999999",
    "0",
    "-1",
    "-0",
    "1.5",
    "12.0",
    "1e3",
    "abc",
    "0x10",
    "1_000",
    " 7",
    "7 ",
    "\u0661\u0662",  # Arabic-Indic digits: int() reads them, no HTTP server should
    "null",
]


def _path_id_schema(client) -> dict:
    operation = document(client.app)["paths"]["/api/v1/tasks/{task_id}"]["get"]
    (parameter,) = (p for p in operation["parameters"] if p["name"] == "task_id")
    return parameter["schema"]


@pytest.mark.parametrize("raw", IDS)
async def test_a_path_id_is_refused_exactly_when_the_document_says_it_is_invalid(client, agent, raw):
    # Judged the way schemathesis judges what it sends: the wire text, read as the schema's type.
    valid = sent_text_is_valid(raw, jsonschema_rs.validator_for(_path_id_schema(client)).is_valid, ["integer"])
    response = await client.get(f"/api/v1/tasks/{quote(raw)}", headers=bearer(agent["api_key"]))
    error = response.json()["error"]
    if valid:
        assert (response.status_code, error["code"]) == (404, "TASK_NOT_FOUND"), (raw, error)
    else:
        assert (response.status_code, error["code"]) == (400, "INVALID_PARAMETER"), (raw, error)
        assert "positive integer" in error["message"]


async def test_one_past_the_largest_id_says_it_is_out_of_range(client, agent):
    response = await client.get(f"/api/v1/tasks/{MAX_ID + 1}", headers=bearer(agent["api_key"]))
    assert response.status_code == 400
    assert "out of range" in response.json()["error"]["message"]


async def test_the_largest_id_reaches_the_lookup(client, agent):
    response = await client.post(f"/api/v1/tasks/{MAX_ID}/cancel", headers=bearer(agent["api_key"]))
    assert (response.status_code, response.json()["error"]["code"]) == (404, "TASK_NOT_FOUND")


async def test_every_api_test_response_is_checked(client):
    assert any(isinstance(hook, DocumentedResponses) for hook in client.event_hooks["response"])


def _doctored(client, change) -> DocumentedResponses:
    doc = copy.deepcopy(document(client.app))
    change(doc)
    return DocumentedResponses(doc)


async def test_the_check_refuses_a_code_the_operation_does_not_list(client, agent):
    def drop_task_not_found(doc: dict) -> None:
        responses = doc["paths"]["/api/v1/tasks/{task_id}"]["get"]["responses"]
        responses["404"] = copy.deepcopy(doc["components"]["responses"][responses["404"]["$ref"].rsplit("/", 1)[1]])
        code = responses["404"]["content"]["application/json"]["schema"]["properties"]["error"]["properties"]["code"]
        code["enum"] = ["AGENT_NOT_FOUND"]

    response = await client.get("/api/v1/tasks/999999", headers=bearer(agent["api_key"]))
    with pytest.raises(UndocumentedResponse, match="404 schema"):
        await _doctored(client, drop_task_not_found)(response)


async def test_the_check_refuses_a_status_the_operation_does_not_list(client, agent):
    def drop_404(doc: dict) -> None:
        del doc["paths"]["/api/v1/tasks/{task_id}"]["get"]["responses"]["404"]

    response = await client.get("/api/v1/tasks/999999", headers=bearer(agent["api_key"]))
    with pytest.raises(UndocumentedResponse, match="does not document 404"):
        await _doctored(client, drop_404)(response)


async def test_the_check_refuses_a_success_body_that_breaks_its_schema(client, agent):
    def require_more(doc: dict) -> None:
        doc["components"]["schemas"]["AgentMeOut"]["required"].append("favourite_colour")

    response = await client.get("/api/v1/agents/me", headers=bearer(agent["api_key"]))
    assert response.status_code == 200
    with pytest.raises(UndocumentedResponse, match="favourite_colour"):
        await _doctored(client, require_more)(response)
