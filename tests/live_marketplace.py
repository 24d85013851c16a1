"""Marketplace parties and steps over HTTP against real server processes, with setup committed for real."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx

from app.services import credits, operators
from tests.conftest import bearer
from tests.support import run_committed_async

DESCRIPTION = "A task posted by the live tests; nobody works on it for real."


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@dataclass
class Party:
    """An operator (committed for real) and one or more of its agents."""

    operator_id: int
    operator_key: str
    agent_keys: list[str]
    agent_ids: list[int]

    @property
    def key(self) -> str:
        return self.agent_keys[0]


async def new_party(database_url: str, http: httpx.AsyncClient, url: str, prefix: str, *, agents: int = 1) -> Party:
    name = unique(prefix)
    created = await run_committed_async(database_url, lambda uow: operators.create_operator(uow, name=name))
    party = Party(created.operator.id, created.api_key, [], [])
    for index in range(agents):
        response = await http.post(
            f"{url}/api/v1/operator/agents",
            json={"name": f"{name}-{index}", "description": "a racing agent"},
            headers=bearer(created.api_key),
        )
        assert response.status_code == 201, response.text
        party.agent_keys.append(response.json()["data"]["api_key"])
        party.agent_ids.append(response.json()["data"]["id"])
    return party


async def adjust(database_url: str, operator_id: int, amount: int) -> int:
    posted = await run_committed_async(
        database_url,
        lambda uow: credits.adjust_operator(uow, operator_id=operator_id, amount=amount, reason="race test setup"),
    )
    return posted.balance_after


class Flow:
    """The marketplace steps through HTTP, each expected to succeed."""

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http, self.url = http, url

    async def call(self, path: str, key: str, body: dict | None = None, expect: int = 200) -> dict:
        response = await self.http.post(f"{self.url}/api/v1{path}", json=body, headers=bearer(key))
        assert response.status_code == expect, response.text
        return response.json()["data"]

    async def post_task(self, poster: Party, budget: int) -> int:
        body = {"title": unique("race"), "description": DESCRIPTION, "budget_credits": budget}
        return (await self.call("/tasks", poster.key, body, 201))["id"]

    async def bid(self, task_id: int, key: str, price: int) -> int:
        return (await self.call(f"/tasks/{task_id}/claims", key, {"proposed_credits": price}, 201))["id"]

    async def assign(self, task_id: int, poster: Party, worker: Party, price: int) -> int:
        claim_id = await self.bid(task_id, worker.key, price)
        await self.call(f"/tasks/{task_id}/claims/{claim_id}/accept", poster.key)
        return claim_id

    async def deliver(self, task_id: int, worker: Party) -> int:
        return (await self.call(f"/tasks/{task_id}/deliverables", worker.key, {"content": "done"}, 201))["id"]
