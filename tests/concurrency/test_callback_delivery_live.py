"""Per-task callbacks end to end (issue 13): a real API process writes the task's events, a delivery worker sends
the poster-side ones to the task's callback_url on a local receiver, signed with the secret POST /tasks answered,
and the callback's log, retries, disable rule and redelivery are the webhooks'.

The test database is shared by the session: each test makes its own parties and tasks, looks only at those, and
deletes its callbacks' rows at the end (their deliveries with them), so that no later worker sends to a receiver
that has stopped.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.concurrency.test_webhook_delivery_live import (
    LOOPBACK,
    TIMEOUT,
    eventually,
    refuses,
    rows,
    running_worker,
    settled,
    verify,
)
from tests.conftest import bearer
from tests.live_marketplace import DESCRIPTION, Flow, Party, adjust, new_party, unique
from tests.support import start_servers
from tests.webhook_receiver import Received, Receiver, Reply

pytestmark = [pytest.mark.live, pytest.mark.timeout(300)]

METADATA = {"order": "PO-77", "source": "erp", "lines": [1, 2]}


@pytest.fixture(scope="module")
def api_url(database_url: str) -> Iterator[str]:
    """One API process that writes events but sends nothing: the tests run the worker themselves."""
    started = start_servers(
        database_url, count=1, webhook_worker="false", webhook_allow_cidrs=LOOPBACK, rate_limit_per_minute="1000000"
    )
    yield started.urls[0]
    started.stop()


@dataclass
class Posted:
    id: int
    secret: str
    poster: Party


@dataclass
class Agora:
    database_url: str
    http: httpx.AsyncClient
    url: str
    tasks: list[int] = field(default_factory=list)

    @property
    def flow(self) -> Flow:
        return Flow(self.http, self.url)

    async def party(self, prefix: str, credits: int = 0) -> Party:
        party = await new_party(self.database_url, self.http, self.url, prefix)
        if credits:
            await adjust(self.database_url, party.operator_id, credits)
        return party

    async def call(self, method: str, path: str, key: str, body: Any = None, expect: int = 200) -> Any:
        response = await self.http.request(method, f"{self.url}/api/v1{path}", json=body, headers=bearer(key))
        assert response.status_code == expect, response.text
        return response.json()

    async def post(self, poster: Party, callback_url: str | None, **fields: Any) -> Posted:
        body = {"title": unique("callback"), "description": DESCRIPTION, "budget_credits": 200, **fields}
        if callback_url is not None:
            body["callback_url"] = callback_url
        data = (await self.call("POST", "/tasks", poster.key, body, 201))["data"]
        self.tasks.append(data["id"])
        return Posted(data["id"], data["callback_secret"], poster)

    async def log(self, task: Posted) -> list[dict]:
        """The callback's delivery log, oldest first."""
        data = (await self.call("GET", f"/tasks/{task.id}/callback-deliveries?limit=100", task.poster.key))["data"]
        return data[::-1]

    async def poster_events(self, task: Posted) -> list[tuple[int, str]]:
        """(id, type) of the task's events addressed to its poster agent: what its callback is owed."""
        found = await rows(
            self.database_url,
            "SELECT id, type FROM event WHERE task_id = %s AND agent_id = %s ORDER BY id",
            task.id,
            task.poster.agent_ids[0],
        )
        return [(event_id, kind) for event_id, kind in found]

    async def forget_callbacks(self) -> None:
        await rows(self.database_url, "DELETE FROM webhook WHERE task_id = ANY (%s) RETURNING id", self.tasks)


@pytest.fixture
async def agora(database_url: str, api_url: str) -> AsyncIterator[Agora]:
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        client = Agora(database_url, http, api_url)
        try:
            yield client
        finally:
            await client.forget_callbacks()


async def test_a_callback_gets_its_tasks_poster_side_events_signed_with_the_secret_of_the_201(agora, database_url):
    mine, theirs = Receiver(), Receiver()
    async with mine, theirs:
        poster = await agora.party("cb-poster", credits=1000)
        worker = await agora.party("cb-worker")
        task = await agora.post(poster, mine.url("/task-events"), metadata=METADATA)
        other = await agora.post(poster, theirs.url("/other-task"))  # the same poster's other task and callback
        quiet = await agora.post(poster, None)  # and a task without one
        for posted in (other, quiet):
            await agora.flow.bid(posted.id, worker.key, 50)
        await agora.flow.assign(task.id, poster, worker, 150)
        deliverable = await agora.flow.deliver(task.id, worker)
        await agora.call("POST", f"/tasks/{task.id}/deliverables/{deliverable}/accept", poster.key)
        owed = await agora.poster_events(task)
        async with running_worker(database_url):
            await mine.wait_for(len(owed), answered_status=200, within=20)
            await theirs.wait_for(len(await agora.poster_events(other)), answered_status=200, within=20)
            log = await eventually(
                lambda: _all_succeeded(agora, task, len(owed)), within=10
            )  # the last attempts' outcomes are recorded after their answers

    payloads = [verify(request, task.secret) for request in mine.requests]  # standardwebhooks + X-TaskHive-*
    assert sorted((p["event_id"], p["event"]) for p in payloads) == owed  # each once, nothing else
    assert {kind for _, kind in owed} == {
        "task.created",
        "credit.posted",
        "claim.created",
        "task.status",
        "deliverable.submitted",
    }
    assert all(p["data"]["task_id"] == task.id and p["data"]["metadata"] == METADATA for p in payloads)
    assert all(request.target == "/task-events" for request in mine.requests)
    # The other task's callback is signed with its own secret: neither receiver can take the other's deliveries.
    assert all(refuses(task.secret, request) for request in theirs.requests)
    assert all(refuses(other.secret, request) for request in mine.requests)
    assert {verify(request, other.secret)["data"]["task_id"] for request in theirs.requests} == {other.id}
    # The log: one succeeded delivery per event, each with its one attempt.
    assert sorted((d["event_id"], d["event"]) for d in log) == owed
    assert all(
        [a["outcome"] for a in d["attempts"]] == ["succeeded"] and d["attempts"][0]["response_status"] == 200
        for d in log
    )
    # No one else may read it.
    refused = await agora.http.get(
        f"{agora.url}/api/v1/tasks/{task.id}/callback-deliveries", headers=bearer(worker.key)
    )
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "FORBIDDEN"


async def _all_succeeded(agora: Agora, task: Posted, count: int) -> list[dict] | None:
    log = await agora.log(task)
    return log if len(log) == count and all(d["status"] == "succeeded" for d in log) else None


async def test_a_failing_callback_is_retried_then_redelivered_with_the_same_message(agora, database_url):
    """Each message fails twice, then is accepted; a redelivery sends it once more, with the same webhook-id."""
    seen: Counter[str | None] = Counter()

    def respond(request: Received) -> Reply:
        seen[request.webhook_id] += 1
        return Reply(500) if seen[request.webhook_id] <= 2 else Reply(200)

    receiver = Receiver(respond=respond)
    async with receiver:
        poster = await agora.party("cb-retry", credits=1000)
        task = await agora.post(poster, receiver.url("/retry"), metadata=METADATA)
        (created,) = [d for d in await agora.log(task) if d["event"] == "task.created"]
        async with running_worker(database_url, webhook_retry_scale=0.001):
            assert await settled(database_url, created["id"]) == 3
            again = await agora.call(
                "POST", f"/tasks/{task.id}/callback-deliveries/{created['id']}/redeliver", poster.key, expect=202
            )
            assert again["data"]["status"] == "pending" and again["data"]["event_id"] == created["event_id"]
            await eventually(lambda: _attempts(agora, task, created["id"], 4))
            assert await settled(database_url, created["id"]) == 4

    delivered = [r for r in receiver.requests if r.webhook_id == f"evt_{created['event_id']}"]
    assert [r.reply.status for r in delivered] == [500, 500, 200, 200]
    assert len({r.body for r in delivered}) == 1  # the same bytes each time, freshly signed
    for request in receiver.requests:
        assert verify(request, task.secret)["data"]["metadata"] == METADATA
    final = next(d for d in await agora.log(task) if d["id"] == created["id"])
    assert [(a["attempt_number"], a["outcome"], a["response_status"]) for a in final["attempts"]] == [
        (1, "failed", 500),
        (2, "failed", 500),
        (3, "succeeded", 200),
        (4, "succeeded", 200),
    ]


async def _attempts(agora: Agora, task: Posted, delivery_id: int, at_least: int) -> bool:
    found = next(d for d in await agora.log(task) if d["id"] == delivery_id)
    return found["attempt_count"] >= at_least


async def test_a_gone_callback_is_disabled_its_poster_told_and_a_redelivery_revives_it(agora, database_url):
    callback, watcher = Receiver(then=Reply(410)), Receiver()
    async with callback, watcher:
        poster = await agora.party("cb-gone", credits=1000)
        worker = await agora.party("cb-gone-worker")
        hook = (
            await agora.call(
                "POST",
                "/webhooks",
                poster.key,
                {"url": watcher.url("/poster-hears"), "events": ["webhook.disabled"]},
                201,
            )
        )["data"]
        try:
            task = await agora.post(poster, callback.url("/gone"), metadata=METADATA)
            async with running_worker(database_url, webhook_per_endpoint_concurrency=1):
                await watcher.wait_for(1, answered_status=200, within=15)
                (told,) = watcher.requests
                payload = verify(told, hook["secret"])
                assert payload["event"] == "webhook.disabled"
                assert payload["data"]["task_id"] == task.id and payload["data"]["metadata"] == METADATA
                assert payload["data"]["url"] == callback.url("/gone") and "410" in payload["data"]["reason"]
                assert callback.hits == 1  # one 410, then nothing
                log = await agora.log(task)
                assert {d["status"] for d in log} == {"failed"}

                # Events written while it is off are not queued for it.
                await agora.flow.bid(task.id, worker.key, 100)
                assert len(await agora.log(task)) == len(log)

                # The poster asks for one again: the callback is back on, and that delivery goes.
                callback.then = Reply(200)
                attempted = next(d for d in log if d["attempts"])
                await agora.call(
                    "POST", f"/tasks/{task.id}/callback-deliveries/{attempted['id']}/redeliver", poster.key, expect=202
                )
                await callback.wait_for(1, answered_status=200, within=15)
                await settled(database_url, attempted["id"])
                # And the task's next events reach it again.
                await agora.flow.bid(task.id, (await agora.party("cb-gone-late")).key, 90)
                await callback.wait_for(2, answered_status=200, within=15)
        finally:
            with contextlib.suppress(httpx.HTTPError):
                await agora.http.delete(f"{agora.url}/api/v1/webhooks/{hook['id']}", headers=bearer(poster.key))

    events = await rows(
        database_url,
        "SELECT agent_id, task_id, data FROM event WHERE type = 'webhook.disabled' AND agent_id = %s",
        poster.agent_ids[0],
    )
    assert [(agent, task_id) for agent, task_id, _ in events] == [(poster.agent_ids[0], task.id)]
    answered = [verify(r, task.secret) for r in callback.answered(200)]
    assert [p["event"] for p in answered] == [attempted["event"], "claim.created"]
