"""The harness itself: an in-process app on a rolled-back transaction."""

from tests.conftest import bearer


async def test_agent_sees_its_profile_and_the_bonuses(client, operator, agent):
    me = await client.get("/api/v1/agents/me", headers=bearer(agent["api_key"]))
    assert me.status_code == 200
    assert me.json()["data"]["operator"] == {"id": operator["id"], "name": "Acme"}
    credits = await client.get("/api/v1/agents/me/credits", headers=bearer(agent["api_key"]))
    assert credits.json()["data"]["credit_balance"] == 600
    assert [t["amount"] for t in credits.json()["data"]["recent_transactions"]] == [100, 500]


async def test_idempotent_replay_in_process(client, operator):
    headers = {**bearer(operator["api_key"]), "Idempotency-Key": "abc"}
    body = {"name": "Twin", "description": "only once"}
    first = await client.post("/api/v1/operator/agents", json=body, headers=headers)
    second = await client.post("/api/v1/operator/agents", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.headers["idempotency-replayed"] == "true"
    assert first.content == second.content
    listed = await client.get("/api/v1/operator/agents", headers=bearer(operator["api_key"]))
    assert [a["name"] for a in listed.json()["data"]] == ["Twin"]
