"""Webhook deliveries end to end (reliability.md WH-1, WH-4..WH-15, SSRF-2): a real API process writes the events, a
delivery worker (in this process, or `agora worker` processes) sends them to local receivers that misbehave on cue.

The retry schedule (5 s, 5 min, 30 min, ...) is compressed with `webhook_retry_scale`, so hours take milliseconds.
The test database is shared by the whole session: every test makes its own parties and webhooks, looks only at
those, and deletes its webhooks at the end (their queued deliveries with them), so no later worker sends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.config import load_settings
from app.crypto import new_key_entry
from app.outbound.webhook_client import SendResult, WebhookClient
from app.repo.connections import Connection, PoolSource, open_pool
from app.workers.webhook_dispatcher import DeliveryWorker
from domain.webhooks import parse_allow_cidrs
from tests.conftest import bearer
from tests.live_marketplace import DESCRIPTION, Flow, Party, adjust, new_party, unique
from tests.support import ROOT, TEST_SECRET_KEY, start_servers
from tests.webhook_receiver import Received, Receiver, Reply

pytestmark = [pytest.mark.live, pytest.mark.timeout(300)]

T = TypeVar("T")
TIMEOUT = httpx.Timeout(30.0)
LOOPBACK = "127.0.0.0/8"
#: Slack for the worker's wake-up, claim and commit on top of a scheduled delay (2 CPUs shared with PostgreSQL,
#: the API process and the receivers).
LATENCY = 0.3


@pytest.fixture(scope="module")
def api_url(database_url: str) -> Iterator[str]:
    """One API process that writes events but sends nothing: the tests run the workers themselves."""
    started = start_servers(
        database_url,
        count=1,
        webhook_worker="false",
        webhook_allow_cidrs=LOOPBACK,
        rate_limit_per_minute="1000000",
    )
    yield started.urls[0]
    started.stop()


# --- the API, as a webhook owner sees it ----------------------------------------------------------------------------


@dataclass
class Hook:
    id: int
    secret: str
    url: str
    party: Party


@dataclass
class Agora:
    database_url: str
    http: httpx.AsyncClient
    url: str
    hooks: list[Hook] = field(default_factory=list)

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

    async def webhook(self, party: Party, url: str, events: Iterable[str] = ("task.created",)) -> Hook:
        data = (await self.call("POST", "/webhooks", party.key, {"url": url, "events": list(events)}, 201))["data"]
        hook = Hook(data["id"], data["secret"], url, party)
        self.hooks.append(hook)
        return hook

    async def ping(self, hook: Hook) -> dict:
        """POST /webhooks/{id}/test: a queued `webhook.ping` delivery (its id and event_id)."""
        return (await self.call("POST", f"/webhooks/{hook.id}/test", hook.party.key, expect=202))["data"]

    async def get(self, hook: Hook) -> dict:
        return (await self.call("GET", f"/webhooks/{hook.id}", hook.party.key))["data"]

    async def deliveries(self, hook: Hook) -> list[dict]:
        """The delivery log, oldest first, each with its attempts."""
        data = (await self.call("GET", f"/webhooks/{hook.id}/deliveries?limit=100", hook.party.key))["data"]
        return sorted(data, key=lambda d: d["id"])

    async def delivery(self, hook: Hook, delivery_id: int) -> dict:
        return next(d for d in await self.deliveries(hook) if d["id"] == delivery_id)

    async def delete_all(self) -> None:
        for hook in self.hooks:
            await self.http.delete(f"{self.url}/api/v1/webhooks/{hook.id}", headers=bearer(hook.party.key))


@pytest.fixture
async def agora(database_url: str, api_url: str) -> AsyncIterator[Agora]:
    async with httpx.AsyncClient(timeout=TIMEOUT, limits=httpx.Limits(max_connections=32)) as http:
        client = Agora(database_url, http, api_url)
        try:
            yield client
        finally:
            await client.delete_all()


# --- workers ------------------------------------------------------------------------------------------------------


class CountingSource(PoolSource):
    """The pool, counting how often the worker takes a connection (one per query batch it runs)."""

    acquired = 0

    async def acquire(self) -> Connection:
        self.acquired += 1
        return await super().acquire()


class CountingClient(WebhookClient):
    """The webhook client, counting the attempts this worker sent."""

    sent = 0

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> SendResult:
        self.sent += 1
        return await super().post(url, body, headers)


@contextlib.asynccontextmanager
async def running_worker(
    database_url: str, *, listen: bool = True, start: bool = True, **overrides: Any
) -> AsyncIterator[DeliveryWorker]:
    """A DeliveryWorker in this process on a pool of its own, started (unless `start` is false) and stopped."""
    settings = load_settings({}).with_overrides(
        **{
            "secret_key": TEST_SECRET_KEY,  # the servers' key: it opens the secrets the worker signs with
            "webhook_allow_cidrs": LOOPBACK,
            "webhook_retry_scale": 0.001,
            "webhook_timeout_seconds": 1.0,
            "events_poll_seconds": 0.2,
            **overrides,
        }
    )
    pool = open_pool(database_url, min_size=1, max_size=8, statement_timeout_ms=5000, name="test-worker")
    await pool.open(wait=True, timeout=30)
    client = CountingClient(
        allow=parse_allow_cidrs(settings.webhook_allow_cidrs), timeout=settings.webhook_timeout_seconds
    )
    worker = DeliveryWorker(CountingSource(pool), client, settings, listen_url=database_url if listen else None)
    try:
        if start:
            await worker.start()
        yield worker
    finally:
        try:
            await worker.stop()
        finally:
            await client.aclose()
            await pool.close()


@dataclass
class WorkerProcess:
    """`agora worker` in a process of its own, its JSON log lines collected."""

    process: asyncio.subprocess.Process
    lines: list[dict] = field(default_factory=list)  # the JSON ones
    raw: list[str] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task | None = None

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            self.raw.append(raw.decode(errors="replace"))
            with contextlib.suppress(ValueError):
                line = json.loads(raw)
                self.lines.append(line)
                if line.get("event") == "webhook_worker_started":
                    self.started.set()

    def logged(self, event: str) -> list[dict]:
        return [line for line in self.lines if line.get("event") == event]


@contextlib.asynccontextmanager
async def worker_process(database_url: str, **settings: str) -> AsyncIterator[WorkerProcess]:
    env = {
        **os.environ,
        "AGORA_DATABASE_URL": database_url,
        "AGORA_LOG_FORMAT": "json",
        "AGORA_LOG_LEVEL": "info",
        "AGORA_WEBHOOK_ALLOW_CIDRS": LOOPBACK,
        **{f"AGORA_{name.upper()}": value for name, value in settings.items()},
    }
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("agora")),
        "worker",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    worker = WorkerProcess(process)
    worker.reader = asyncio.create_task(worker._read())
    try:
        async with asyncio.timeout(30):
            await worker.started.wait()
        yield worker
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(worker.reader, 5)


# --- checks -------------------------------------------------------------------------------------------------------


async def eventually(check: Callable[[], Awaitable[T]], within: float = 10.0, interval: float = 0.05) -> T:
    """The first truthy result of `check`, polled for at most `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s (last: {result!r})")
        await asyncio.sleep(interval)


async def rows(database_url: str, sql: str, *params: object) -> list[tuple]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        cursor = await connection.execute(sql, params)
        return await cursor.fetchall()


async def delivery_state(database_url: str, delivery_id: int) -> tuple[str, int]:
    ((status, attempts),) = await rows(
        database_url, "SELECT status, attempt_count FROM webhook_delivery WHERE id = %s", delivery_id
    )
    return status, attempts


async def settled(database_url: str, delivery_id: int, status: str = "succeeded", within: float = 15.0) -> int:
    """Wait until the delivery reaches `status`; its attempt count."""

    async def check() -> int | None:
        now, attempts = await delivery_state(database_url, delivery_id)
        return attempts if now == status else None

    return await eventually(check, within)


def verify(request: Received, secret: str) -> dict:
    """Everything a receiver checks on a delivery; the parsed body."""
    body = request.body
    payload = Webhook(secret).verify(body, request.headers)  # the official Standard Webhooks verifier
    assert set(payload) == {"event", "event_id", "timestamp", "data"}, payload
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert request.header("X-TaskHive-Signature") == expected
    assert request.header("X-TaskHive-Event") == payload["event"]
    assert re.fullmatch(r"whd_\d+", request.header("X-TaskHive-Delivery") or "")
    assert request.header("webhook-id") == f"evt_{payload['event_id']}"
    timestamp = request.header("webhook-timestamp") or ""
    assert timestamp.isdigit() and abs(int(timestamp) - request.at) <= 5
    assert request.header("X-TaskHive-Timestamp") == timestamp
    assert request.header("content-type") == "application/json"
    assert request.method == "POST"
    return payload


def refuses(secret: str, request: Received) -> bool:
    try:
        Webhook(secret).verify(request.body, request.headers)
    except WebhookVerificationError:
        return True
    return False


def moment(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def gaps(requests: list[Received]) -> list[float]:
    return [b.monotonic - a.monotonic for a, b in itertools.pairwise(requests)]


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- signatures and retries ---------------------------------------------------------------------------------------


async def test_wh5_every_attempt_is_signed_afresh_for_the_same_message(agora, database_url):
    """WH-1/WH-5: four 500s then a 200: five attempts of one message, each verifying, the body byte-identical."""
    receiver = Receiver(*[Reply(500)] * 4, then=Reply(200))
    async with receiver:
        poster = await agora.party("wh5", credits=1000)
        hook = await agora.webhook(poster, receiver.url("/wh5"), ["task.created"])
        task_id = await agora.flow.post_task(poster, 100)
        (queued,) = await agora.deliveries(hook)
        async with running_worker(database_url, webhook_retry_scale=0.0001):
            await receiver.wait_for(1, answered_status=200, within=15)
            await settled(database_url, queued["id"])

    attempts = receiver.requests
    assert [r.reply.status for r in attempts] == [500, 500, 500, 500, 200]
    payloads = [verify(r, hook.secret) for r in attempts]
    assert payloads[0]["event"] == "task.created" and payloads[0]["data"]["task_id"] == task_id
    assert len({r.webhook_id for r in attempts}) == 1
    assert len({r.body for r in attempts}) == 1, "every attempt must send the same bytes"
    assert len({r.header("X-TaskHive-Delivery") for r in attempts}) == 1
    for before, after in itertools.pairwise(attempts):
        if before.header("webhook-timestamp") != after.header("webhook-timestamp"):
            assert before.header("webhook-signature") != after.header("webhook-signature")
        else:  # the same second: the same inputs, the same signature
            assert before.header("webhook-signature") == after.header("webhook-signature")

    (delivery,) = await agora.deliveries(hook)
    assert delivery["status"] == "succeeded" and delivery["attempt_count"] == 5
    assert f"evt_{delivery['event_id']}" == attempts[0].webhook_id
    assert [a["response_status"] for a in delivery["attempts"]] == [500, 500, 500, 500, 200]
    assert [a["outcome"] for a in delivery["attempts"]] == ["failed"] * 4 + ["succeeded"]
    assert [a["attempt_number"] for a in delivery["attempts"]] == [1, 2, 3, 4, 5]


async def test_wh6_retries_follow_the_scaled_schedule(agora, database_url):
    """WH-6: k = 1, 2, 3 failures: delivered on attempt k+1, the gaps 5 s, 300 s, 1800 s scaled (±10% jitter)."""
    scale = 0.002
    schedule = [5 * scale, 300 * scale, 1800 * scale]  # 10 ms, 600 ms, 3.6 s
    receivers = {k: Receiver(*[Reply(500)] * k, then=Reply(200)) for k in (1, 2, 3)}
    async with contextlib.AsyncExitStack() as stack:
        for receiver in receivers.values():
            await stack.enter_async_context(receiver)
        party = await agora.party("wh6")
        hooks = {k: await agora.webhook(party, r.url(f"/wh6-{k}")) for k, r in receivers.items()}
        pings = {k: await agora.ping(hook) for k, hook in hooks.items()}
        async with running_worker(database_url, webhook_retry_scale=scale):
            for ping in pings.values():
                await settled(database_url, ping["id"])

    report = []
    for k, receiver in receivers.items():
        assert [r.reply.status for r in receiver.requests] == [500] * k + [200]
        for request in receiver.requests:
            verify(request, hooks[k].secret)
        measured = gaps(receiver.requests)
        for gap, expected in zip(measured, schedule, strict=False):
            assert 0.9 * expected <= gap <= 1.1 * expected + LATENCY, (k, measured)
        report.append(f"k={k}: " + ", ".join(f"{g * 1000:.0f} ms" for g in measured))

        delivery = await agora.delivery(hooks[k], pings[k]["id"])
        assert delivery["status"] == "succeeded" and delivery["attempt_count"] == k + 1
        attempts = delivery["attempts"]
        assert [a["response_status"] for a in attempts] == [500] * k + [200]
        assert all(a["error"] == "HTTP 500" and a["outcome"] == "failed" for a in attempts[:k])
        assert attempts[-1]["error"] is None and attempts[-1]["next_attempt_at"] is None
        assert all(0 <= a["duration_ms"] < 1000 for a in attempts)
        for index, attempt in enumerate(attempts[:k]):
            ended = moment(attempt["started_at"]) + attempt["duration_ms"] / 1000
            scheduled = moment(attempt["next_attempt_at"]) - ended
            assert 0.9 * schedule[index] - 0.005 <= scheduled <= 1.1 * schedule[index] + 0.1, (k, index, scheduled)
            # The next attempt starts when it is due: not before, and promptly after.
            late = moment(attempts[index + 1]["started_at"]) - moment(attempt["next_attempt_at"])
            assert -0.01 <= late <= LATENCY, (k, index, late)
    print(f"\nWH-6 gaps between attempts (schedule {[f'{s * 1000:.0f} ms' for s in schedule]}): {'; '.join(report)}")


async def test_wh7_a_receiver_slower_than_the_timeout(agora, database_url):
    """WH-7: attempts that outlast webhook_timeout_seconds are cut at the timeout and recorded as such."""
    receiver = Receiver(Reply(delay=5), Reply(delay=5), then=Reply(200))
    async with receiver:
        party = await agora.party("wh7")
        hook = await agora.webhook(party, receiver.url("/wh7"))
        ping = await agora.ping(hook)
        async with running_worker(database_url, webhook_timeout_seconds=1.0, webhook_retry_scale=0.001):
            await settled(database_url, ping["id"])

    slow = receiver.requests[:2]
    assert all(not r.answered and r.gone_at is not None for r in slow)
    assert all(r.gone_at - r.monotonic <= 1.0 + 1.0 for r in slow), [r.gone_at - r.monotonic for r in slow]
    delivery = await agora.delivery(hook, ping["id"])
    assert delivery["status"] == "succeeded" and delivery["attempt_count"] == 3
    first, second, third = delivery["attempts"]
    for attempt in (first, second):
        assert attempt["outcome"] == "timeout" and attempt["response_status"] is None
        assert 900 <= attempt["duration_ms"] <= 2000, attempt
        assert "timed out" in attempt["error"]
    assert third["outcome"] == "succeeded" and third["response_status"] == 200


async def test_wh8_a_redirect_is_never_followed(agora, database_url):
    """WH-8 / SSRF-2: a 302 to an internal address is a failed attempt; the target never hears of it."""
    sentinel = Receiver()
    async with sentinel:
        redirecting = Receiver(then=Reply(302, headers={"Location": sentinel.url("/admin")}))
        async with redirecting:
            party = await agora.party("wh8")
            hook = await agora.webhook(party, redirecting.url("/wh8"))
            ping = await agora.ping(hook)
            async with running_worker(database_url, webhook_retry_scale=0.001):
                await redirecting.wait_for(2, within=10)
                await asyncio.sleep(0.3)
        assert sentinel.hits == 0
    delivery = await agora.delivery(hook, ping["id"])
    assert delivery["status"] == "pending"
    assert len(delivery["attempts"]) >= 2
    for attempt in delivery["attempts"]:
        assert attempt["outcome"] == "failed" and attempt["response_status"] == 302
        assert attempt["error"] == "redirect not followed (302)"


async def test_wh9_410_gone_switches_the_endpoint_off_and_tells_its_owner(agora, database_url):
    """WH-9: one 410 disables the endpoint, fails its queued deliveries, and the owner gets webhook.disabled."""
    gone, watcher = Receiver(then=Reply(410)), Receiver()
    async with gone, watcher:
        owner = await agora.party("wh9")
        hook = await agora.webhook(owner, gone.url("/wh9"))
        other = await agora.webhook(owner, watcher.url("/wh9-watch"), ["webhook.disabled"])
        pings = [await agora.ping(hook) for _ in range(3)]
        async with running_worker(database_url, webhook_per_endpoint_concurrency=1):
            await watcher.wait_for(1, answered_status=200, within=10)
            await asyncio.sleep(0.5)  # room for any further attempt (there must be none)

    assert gone.hits == 1, "the endpoint got more than one attempt after answering 410"
    state = await agora.get(hook)
    assert state["is_active"] is False
    assert "410" in state["disabled_reason"]
    deliveries = await agora.deliveries(hook)
    assert [d["id"] for d in deliveries] == [p["id"] for p in pings]
    assert all(d["status"] == "failed" and d["next_attempt_at"] is None for d in deliveries)
    assert sorted(len(d["attempts"]) for d in deliveries) == [0, 0, 1]
    (attempted,) = [d for d in deliveries if d["attempts"]]
    assert attempted["attempts"][0]["response_status"] == 410

    events = await rows(
        database_url,
        "SELECT id, data FROM event WHERE agent_id = %s AND type = 'webhook.disabled'",
        owner.agent_ids[0],
    )
    assert len(events) == 1
    event_id, data = events[0]
    assert data["webhook_id"] == hook.id and data["url"] == hook.url and "410" in data["reason"]
    (told,) = watcher.requests
    payload = verify(told, other.secret)
    assert payload["event"] == "webhook.disabled" and payload["event_id"] == event_id
    assert payload["data"] == data
    # A disabled endpoint takes no test pings (re-enable it first).
    refused = await agora.http.post(f"{agora.url}/api/v1/webhooks/{hook.id}/test", headers=bearer(owner.key))
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "WEBHOOK_DISABLED"


async def test_wh10_429_waits_for_retry_after_and_never_less_than_the_schedule(agora, database_url):
    """WH-10: Retry-After 7 (scaled 0.01: 70 ms) beats the 50 ms schedule; Retry-After 0 cannot shorten it."""
    scale = 0.01
    slow_down = Receiver(Reply(429, headers={"Retry-After": "7"}), then=Reply(200))
    no_wait = Receiver(Reply(429, headers={"Retry-After": "0"}), then=Reply(200))
    async with slow_down, no_wait:
        party = await agora.party("wh10")
        hooks = [await agora.webhook(party, r.url("/wh10")) for r in (slow_down, no_wait)]
        pings = [await agora.ping(hook) for hook in hooks]
        async with running_worker(database_url, webhook_retry_scale=scale):
            for ping in pings:
                await settled(database_url, ping["id"])

    (waited,) = gaps(slow_down.requests)
    assert 7 * scale <= waited <= 7 * scale + LATENCY, waited
    (scheduled,) = gaps(no_wait.requests)
    assert 0.9 * 5 * scale <= scheduled <= 1.1 * 5 * scale + LATENCY, scheduled
    for hook, ping, floor in zip(hooks, pings, (7 * scale, 0.9 * 5 * scale), strict=True):
        first = (await agora.delivery(hook, ping["id"]))["attempts"][0]
        assert first["response_status"] == 429 and first["outcome"] == "failed"
        assert moment(first["next_attempt_at"]) - moment(first["started_at"]) >= floor
    print(
        f"\nWH-10: Retry-After 7 -> next attempt {waited * 1000:.0f} ms later; Retry-After 0 -> {scheduled * 1000:.0f} ms"
    )


async def test_wh11_an_exhausted_schedule_fails_and_redelivery_sends_the_same_message(agora, database_url):
    """WH-11: eight failed attempts end the delivery; a redelivery sends it again with the same webhook-id."""
    receiver = Receiver(then=Reply(500))
    async with receiver:
        party = await agora.party("wh11")
        hook = await agora.webhook(party, receiver.url("/wh11"))
        ping = await agora.ping(hook)
        async with running_worker(database_url, webhook_retry_scale=0.00001):
            assert await settled(database_url, ping["id"], "failed", within=20) == 8
            assert receiver.hits == 8
            failed = await agora.delivery(hook, ping["id"])
            assert failed["status"] == "failed" and failed["next_attempt_at"] is None
            assert failed["completed_at"] is not None
            assert [a["response_status"] for a in failed["attempts"]] == [500] * 8
            assert failed["attempts"][-1]["next_attempt_at"] is None

            receiver.then = Reply(200)  # the receiver recovers
            again = await agora.call(
                "POST", f"/webhooks/{hook.id}/deliveries/{ping['id']}/redeliver", party.key, expect=202
            )
            assert again["data"]["status"] == "pending"
            await receiver.wait_for(1, answered_status=200, within=10)
            assert await settled(database_url, ping["id"]) == 9
            # A delivered message may be redelivered too: the same message again.
            await agora.call("POST", f"/webhooks/{hook.id}/deliveries/{ping['id']}/redeliver", party.key, expect=202)
            await receiver.wait_for(2, answered_status=200, within=10)
            assert await settled(database_url, ping["id"]) == 10

    assert len(receiver.by_webhook_id()) == 1, "a redelivery must keep the webhook-id"
    assert len({r.body for r in receiver.requests}) == 1
    for request in receiver.requests:
        verify(request, hook.secret)
    delivered = await agora.delivery(hook, ping["id"])
    assert [a["outcome"] for a in delivered["attempts"]] == ["failed"] * 8 + ["succeeded"] * 2
    assert [a["attempt_number"] for a in delivered["attempts"]] == list(range(1, 11))


async def test_a_failure_streak_disables_the_endpoint_but_429s_do_not_count(agora, database_url):
    """Three counted failures disable the endpoint (policy 3 failures, 0 s); the two 429 before them do not count."""
    receiver = Receiver(
        Reply(429), Reply(429), Reply(500), Reply(500), Reply(500), then=Reply(500, body=b"still broken")
    )
    async with receiver:
        owner = await agora.party("streak")
        hook = await agora.webhook(owner, receiver.url("/streak"))
        ping = await agora.ping(hook)
        async with running_worker(
            database_url,
            webhook_retry_scale=0.0001,
            webhook_disable_after_failures=3,
            webhook_disable_after_seconds=0,
        ):
            await settled(database_url, ping["id"], "failed", within=15)
            await asyncio.sleep(0.3)

    assert [r.reply.status for r in receiver.requests] == [429, 429, 500, 500, 500]
    state = await agora.get(hook)
    assert state["is_active"] is False
    assert state["disabled_reason"].startswith("3 consecutive failed attempts"), state
    assert state["failure_count"] == 3
    delivery = await agora.delivery(hook, ping["id"])
    assert [a["response_status"] for a in delivery["attempts"]] == [429, 429, 500, 500, 500]
    (event,) = await rows(
        database_url,
        "SELECT data FROM event WHERE agent_id = %s AND type = 'webhook.disabled'",
        owner.agent_ids[0],
    )
    assert event[0]["webhook_id"] == hook.id and event[0]["reason"] == state["disabled_reason"]


async def test_a_secret_this_worker_cannot_open_is_logged_and_retried_without_blaming_the_endpoint(agora, database_url):
    """A worker whose data keys do not open the webhook's secret sends nothing (nothing could be signed); each
    attempt is logged as failed, saying why, and retried on the schedule; the endpoint's failure streak stays at 0,
    so it is not switched off for our own misconfiguration; a worker with the right key then delivers it."""
    receiver = Receiver()
    async with receiver:
        owner = await agora.party("unreadable")
        hook = await agora.webhook(owner, receiver.url("/unreadable"))
        ping = await agora.ping(hook)
        async with running_worker(
            database_url,
            secret_key=new_key_entry(),  # a ring without the key that sealed the secret
            # Attempts at 0, 5 ms and 300 ms, the next 1.8 s later: the schedule is far from its end when this
            # worker stops, so the delivery is still pending for the next one.
            webhook_retry_scale=0.001,
            webhook_disable_after_failures=2,
            webhook_disable_after_seconds=0,
        ):

            async def failed_attempts() -> list[dict]:
                attempts = (await agora.delivery(hook, ping["id"]))["attempts"]
                return [a for a in attempts if a["outcome"] == "failed"][1:]  # two or more

            await eventually(failed_attempts, within=15)
        assert receiver.requests == []
        state = await agora.get(hook)
        assert state["is_active"] is True and state["failure_count"] == 0, state
        delivery = await agora.delivery(hook, ping["id"])
        assert delivery["attempt_count"] == len(delivery["attempts"])
        failed = [a for a in delivery["attempts"] if a["outcome"] == "failed"]
        assert all("signing secret cannot be opened" in a["error"] for a in failed), failed
        assert all(a["response_status"] is None for a in failed)
        async with running_worker(database_url, webhook_retry_scale=0.0001):
            await settled(database_url, ping["id"])
    assert len(receiver.requests) == 1
    verify(receiver.requests[0], hook.secret)


async def test_wh4_rotation_signs_with_both_secrets_during_the_overlap(agora, database_url):
    """WH-4: during the overlap a delivery carries two v1 signatures (old and new secret); with overlap 0, one."""
    receiver = Receiver()
    async with receiver:
        party = await agora.party("wh4")
        hook = await agora.webhook(party, receiver.url("/wh4"))
        old = hook.secret
        async with running_worker(database_url):
            await agora.ping(hook)
            await receiver.wait_for(1, within=10)
            rotated = await agora.call(
                "POST", f"/webhooks/{hook.id}/rotate-secret", party.key, {"overlap_seconds": 3600}
            )
            new = rotated["data"]["secret"]
            assert new != old and rotated["data"]["previous_secret_expires_at"] is not None
            await agora.ping(hook)
            await receiver.wait_for(2, within=10)
            final = (await agora.call("POST", f"/webhooks/{hook.id}/rotate-secret", party.key, {"overlap_seconds": 0}))[
                "data"
            ]
            assert final["previous_secret_expires_at"] is None
            await agora.ping(hook)
            await receiver.wait_for(3, within=10)

    before, during, after = receiver.requests
    verify(before, old)
    assert len(before.header("webhook-signature").split()) == 1

    assert len(during.header("webhook-signature").split()) == 2
    verify(during, new)  # TaskHive's header is the current secret's
    assert not refuses(old, during), "the old secret must still verify during the overlap"
    assert not refuses(new, during)

    assert len(after.header("webhook-signature").split()) == 1
    verify(after, final["secret"])
    assert refuses(new, after) and refuses(old, after)


# --- crashes, lost notifications, rollbacks -----------------------------------------------------------------------


async def test_wh14_a_worker_killed_mid_attempt_loses_nothing(agora, database_url):
    """WH-14: `agora worker` SIGKILLed while the receiver is still answering; the next worker sends the delivery
    again once the lease (timeout 2 s + 5 s) runs out. A duplicate is allowed, a loss is not."""
    receiver = Receiver(Reply(delay=1.5), then=Reply(200))
    async with receiver:
        party = await agora.party("wh14")
        hook = await agora.webhook(party, receiver.url("/wh14"))
        async with worker_process(database_url, webhook_timeout_seconds="2", webhook_retry_scale="0.001") as worker:
            ping = await agora.ping(hook)
            await receiver.wait_for(1, within=15)
            await asyncio.sleep(0.3)
            worker.process.kill()
            assert await worker.process.wait() == -signal.SIGKILL
        await receiver.wait_until(lambda r: r.requests[0].gone_at is not None, within=5)
        status, attempts = await delivery_state(database_url, ping["id"])
        assert (status, attempts) == ("pending", 1), "the claim stays until its lease runs out"
        # While claimed, next_attempt_at is the lease's end (set at the claim, before the request went out).
        ((lease_end,),) = await rows(
            database_url, "SELECT next_attempt_at FROM webhook_delivery WHERE id = %s", ping["id"]
        )

        async with running_worker(database_url, webhook_timeout_seconds=2.0):
            assert await settled(database_url, ping["id"], within=20) == 2

    first = receiver.requests[0]
    complete = receiver.answered(200)
    assert not first.answered
    assert len(complete) >= 1 and {r.webhook_id for r in receiver.requests} == {f"evt_{ping['event_id']}"}
    waited = complete[0].monotonic - first.monotonic
    verify(complete[0], hook.secret)
    delivery = await agora.delivery(hook, ping["id"])
    # The killed attempt stays listed, interrupted (issue 19): attempt_count and the attempts listed agree.
    assert [(a["attempt_number"], a["outcome"]) for a in delivery["attempts"]] == [(1, "interrupted"), (2, "succeeded")]
    # Not before the lease ran out. (Measured from the claim: the receiver's clock starts later, when the first
    # request arrives, so a gap between claim and request under load made "7 s after the first request" wrong.)
    second_started = datetime.fromisoformat(delivery["attempts"][1]["started_at"].replace("Z", "+00:00"))
    assert second_started >= lease_end - timedelta(milliseconds=100), (second_started, lease_end)
    print(
        f"\nWH-14: killed mid-attempt; the next worker delivered {waited:.1f} s after the first try"
        f" (lease 7 s); requests {receiver.hits}, complete {len(complete)}, duplicates delivered {len(complete) - 1}"
    )


async def test_a_stopping_worker_records_its_attempts_in_flight(agora, database_url):
    """A graceful stop (SIGTERM) waits for the attempt in flight: it is recorded as it ended, not left to be
    interrupted and sent again once its lease runs out."""
    receiver = Receiver(Reply(delay=0.5))
    async with receiver:
        party = await agora.party("stop")
        hook = await agora.webhook(party, receiver.url("/stop"))
        async with running_worker(database_url):
            ping = await agora.ping(hook)
            await receiver.wait_for(1, within=10)  # the request is out; the receiver answers 0.5 s later
    delivery = await agora.delivery(hook, ping["id"])
    assert delivery["status"] == "succeeded"
    assert [(a["attempt_number"], a["outcome"]) for a in delivery["attempts"]] == [(1, "succeeded")]
    assert receiver.hits == 1


async def test_wh15_without_notifications_the_poll_alone_delivers(agora, database_url):
    """WH-15: a worker that never LISTENs still delivers a new event within its poll interval (0.5 s) + 1 s."""
    receiver = Receiver()
    async with receiver:
        party = await agora.party("wh15")
        hook = await agora.webhook(party, receiver.url("/wh15"))
        latencies = []
        async with running_worker(database_url, listen=False, events_poll_seconds=0.5):
            await asyncio.sleep(0.6)  # idle, waiting out its poll
            for index in range(3):
                sent = time.monotonic()
                ping = await agora.ping(hook)
                await receiver.wait_for(index + 1, within=5)
                assert receiver.requests[index].webhook_id == f"evt_{ping['event_id']}"
                latencies.append(receiver.requests[index].monotonic - sent)
                await asyncio.sleep(0.2)
    assert max(latencies) <= 0.5 + 1.0, latencies
    print(f"\nWH-15: delivered by polling alone after {', '.join(f'{s * 1000:.0f} ms' for s in latencies)}")


async def test_wh13_one_delivery_per_event_and_subscribed_webhook_and_none_for_a_rollback(agora, database_url, api_url):
    """WH-13: an anti-join over this test's webhooks finds every committed event of their agents with exactly one
    delivery per active subscribed webhook, and no delivery that should not exist; a request whose process dies
    before its commit leaves no event and no delivery."""
    receiver = Receiver()
    async with receiver:
        poster = await agora.party("wh13-poster", credits=100_000)
        workers = [await agora.party("wh13-worker"), await agora.party("wh13-rival")]
        hooks = [
            await agora.webhook(poster, receiver.url("/p1"), ["task.created", "credit.posted"]),
            await agora.webhook(poster, receiver.url("/p2"), ["claim.created", "task.status", "task.cancelled"]),
            await agora.webhook(poster, receiver.url("/p3"), ["deliverable.submitted", "credit.posted"]),
            await agora.webhook(workers[0], receiver.url("/w1"), ["claim.accepted", "task.status", "credit.posted"]),
            await agora.webhook(workers[0], receiver.url("/w2"), ["deliverable.accepted"]),
            await agora.webhook(workers[1], receiver.url("/r1"), ["claim.rejected", "claim.created"]),
        ]
        ((since,),) = await rows(database_url, "SELECT coalesce(max(id), 0) FROM event")
        flow = agora.flow

        async def complete_one() -> None:
            task_id = await flow.post_task(poster, 200)
            await flow.bid(task_id, workers[1].key, 150)
            await flow.assign(task_id, poster, workers[0], 120)
            deliverable_id = await flow.deliver(task_id, workers[0])
            await flow.call(f"/tasks/{task_id}/deliverables/{deliverable_id}/accept", poster.key)

        async def cancel_one() -> None:
            task_id = await flow.post_task(poster, 100)
            await flow.bid(task_id, workers[1].key, 90)
            await flow.call(f"/tasks/{task_id}/cancel", poster.key)

        await asyncio.gather(*(complete_one() for _ in range(4)), *(cancel_one() for _ in range(2)))

    hook_ids = [h.id for h in hooks]
    agents = [poster.agent_ids[0], workers[0].agent_ids[0], workers[1].agent_ids[0]]
    missing = await rows(
        database_url,
        """SELECT e.id, e.type, w.id FROM event e
             JOIN webhook w ON w.agent_id = e.agent_id AND e.type = ANY (w.events) AND w.is_active
            WHERE w.id = ANY (%s) AND e.id > %s
              AND NOT EXISTS (SELECT 1 FROM webhook_delivery d WHERE d.webhook_id = w.id AND d.event_id = e.id)""",
        hook_ids,
        since,
    )
    assert missing == [], f"events without their delivery: {missing}"
    unexpected = await rows(
        database_url,
        """SELECT d.id, e.type, w.id FROM webhook_delivery d
             JOIN event e ON e.id = d.event_id JOIN webhook w ON w.id = d.webhook_id
            WHERE w.id = ANY (%s) AND (e.agent_id IS DISTINCT FROM w.agent_id OR NOT e.type = ANY (w.events))""",
        hook_ids,
    )
    assert unexpected == [], f"deliveries nobody subscribed to: {unexpected}"
    repeated = await rows(
        database_url,
        """SELECT webhook_id, event_id, count(*) FROM webhook_delivery WHERE webhook_id = ANY (%s)
            GROUP BY 1, 2 HAVING count(*) <> 1""",
        hook_ids,
    )
    assert repeated == []
    covered = await rows(
        database_url,
        """SELECT e.type, count(*) FROM webhook_delivery d JOIN event e ON e.id = d.event_id
            WHERE d.webhook_id = ANY (%s) GROUP BY 1 ORDER BY 1""",
        hook_ids,
    )
    types = dict(covered)
    assert {
        "task.created",
        "credit.posted",
        "claim.created",
        "claim.accepted",
        "claim.rejected",
        "task.status",
        "task.cancelled",
        "deliverable.submitted",
        "deliverable.accepted",
    } <= set(types), types
    print(f"\nWH-13: {sum(types.values())} deliveries over {len(hooks)} webhooks, none missing, none extra: {types}")

    # A rolled-back change writes no event, so no delivery: the process dies right before its commit.
    ((before_events, before_deliveries),) = await rows(
        database_url,
        """SELECT (SELECT count(*) FROM event WHERE agent_id = ANY (%s)),
                  (SELECT count(*) FROM webhook_delivery WHERE webhook_id = ANY (%s))""",
        agents,
        hook_ids,
    )
    title = unique("rolled-back")
    fault = start_servers(
        database_url,
        count=1,
        fault_point="before_commit",
        webhook_worker="false",
        webhook_allow_cidrs=LOOPBACK,
        rate_limit_per_minute="1000000",
    )
    try:
        with pytest.raises(httpx.TransportError):
            await agora.http.post(
                f"{fault.urls[0]}/api/v1/tasks",
                json={"title": title, "description": DESCRIPTION, "budget_credits": 100},
                headers={**bearer(poster.key), "Idempotency-Key": str(uuid.uuid4())},
            )
        assert await asyncio.to_thread(fault.processes[0].wait, 15) == 137, "the fault point did not fire"
    finally:
        fault.stop()
    ((after_events, after_deliveries, tasks),) = await rows(
        database_url,
        """SELECT (SELECT count(*) FROM event WHERE agent_id = ANY (%s)),
                  (SELECT count(*) FROM webhook_delivery WHERE webhook_id = ANY (%s)),
                  (SELECT count(*) FROM task WHERE title = %s)""",
        agents,
        hook_ids,
        title,
    )
    assert (after_events, after_deliveries, tasks) == (before_events, before_deliveries, 0)


# --- isolation and concurrency ------------------------------------------------------------------------------------


async def latencies_to(agora: Agora, hook: Hook, receiver: Receiver, count: int) -> list[float]:
    """Seconds from just before each test ping's request (its commit follows) to its arrival, one at a time."""
    samples = []
    for _ in range(count):
        sent = time.monotonic()
        ping = await agora.ping(hook)
        wanted = f"evt_{ping['event_id']}"
        await receiver.wait_until(lambda r, wanted=wanted: any(q.webhook_id == wanted for q in r.requests), 10)
        arrived = next(q for q in receiver.requests if q.webhook_id == wanted)
        samples.append(arrived.monotonic - sent)
    return samples


async def test_wh12_a_hanging_endpoint_does_not_hold_up_a_healthy_one(agora, database_url):
    """WH-12: endpoint A hangs past the timeout with 20 deliveries queued; endpoint B's deliveries still arrive as
    fast as when B is alone."""
    hanging, healthy = Receiver(then=Reply(hang=True)), Receiver()
    async with hanging, healthy:
        party = await agora.party("wh12")
        a = await agora.webhook(party, hanging.url("/a"))
        b = await agora.webhook(party, healthy.url("/b"))
        async with running_worker(database_url, webhook_timeout_seconds=1.0, webhook_retry_scale=0.01):
            await latencies_to(agora, b, healthy, 3)  # warm the connections
            baseline = await latencies_to(agora, b, healthy, 20)
            for _ in range(20):
                await agora.ping(a)
            await hanging.wait_for(4, within=5)  # A holds its slots now
            loaded = await latencies_to(agora, b, healthy, 20)

            async def recorded() -> list[tuple] | None:
                # Ended attempts (each is written in_progress when claimed, its outcome when it ends).
                found = await rows(
                    database_url,
                    """SELECT a.outcome, a.duration_ms FROM webhook_attempt a
                         JOIN webhook_delivery d ON d.id = a.delivery_id
                        WHERE d.webhook_id = %s AND a.outcome <> 'in_progress'""",
                    a.id,
                )
                return found if len(found) >= 4 else None

            timeouts = await eventually(recorded, within=5)
            in_flight_a = hanging.max_in_flight

    base_p99, loaded_p99 = percentile(baseline, 0.99), percentile(loaded, 0.99)
    print(
        f"\nWH-12: B alone p50 {percentile(baseline, 0.5) * 1000:.0f} ms p99 {base_p99 * 1000:.0f} ms;"
        f" B beside hanging A p50 {percentile(loaded, 0.5) * 1000:.0f} ms p99 {loaded_p99 * 1000:.0f} ms;"
        f" A in flight at most {in_flight_a}, A attempts so far {len(timeouts)}"
    )
    assert loaded_p99 < 2 * base_p99 + 0.1, (baseline, loaded)
    assert loaded_p99 < 0.5  # well under A's 1 s timeout
    assert all(outcome == "timeout" and 900 <= ms <= 2000 for outcome, ms in timeouts), timeouts
    assert all(r.reply.status == 200 for r in healthy.requests)
    for request in healthy.requests:
        verify(request, b.secret)


async def test_two_workers_deliver_each_of_200_deliveries_exactly_once(agora, database_url):
    """`agora worker` and an in-process worker share one queue of 200: each delivery succeeds once as recorded,
    every webhook-id reaches the receiver, and SKIP LOCKED leaves no duplicate."""
    receiver = Receiver()
    async with receiver:
        party = await agora.party("pair")
        hooks = [await agora.webhook(party, receiver.url(f"/pair-{n}")) for n in range(5)]
        async with worker_process(database_url), running_worker(database_url) as in_process:
            gate = asyncio.Semaphore(16)

            async def ping(hook: Hook) -> dict:
                async with gate:
                    return await agora.ping(hook)

            started = time.monotonic()
            pings = await asyncio.gather(*(ping(hooks[n % 5]) for n in range(200)))
            ids = [p["id"] for p in pings]

            async def done() -> bool:
                ((count,),) = await rows(
                    database_url,
                    "SELECT count(*) FROM webhook_delivery WHERE id = ANY (%s) AND status = 'succeeded'",
                    ids,
                )
                return count == len(ids)

            await eventually(done, within=30)
            elapsed = time.monotonic() - started
            here = in_process.client.sent

    attempts = await rows(
        database_url,
        """SELECT d.id, count(a.id), count(a.id) FILTER (WHERE a.outcome = 'succeeded'), d.attempt_count
             FROM webhook_delivery d LEFT JOIN webhook_attempt a ON a.delivery_id = d.id
            WHERE d.id = ANY (%s) GROUP BY d.id""",
        ids,
    )
    assert len(attempts) == 200
    assert all(row[1:] == (1, 1, 1) for row in attempts), [row for row in attempts if row[1:] != (1, 1, 1)]
    seen = receiver.by_webhook_id()
    assert set(seen) == {f"evt_{p['event_id']}" for p in pings}
    duplicates = sum(count - 1 for count in seen.values())
    print(
        f"\ntwo workers: 200 deliveries in {elapsed:.2f} s (from the first ping); the in-process worker sent {here},"
        f" `agora worker` {receiver.hits - here}; duplicates at the receiver: {duplicates}"
    )
    assert duplicates == 0
    assert receiver.hits == 200


# --- paused endpoints and the per-endpoint cap ------------------------------------------------------------------


async def test_a_paused_endpoint_keeps_its_deliveries_until_switched_on_again(agora, database_url):
    """PATCH is_active false holds the endpoint's queued deliveries; true sends them."""
    receiver = Receiver()
    async with receiver:
        party = await agora.party("paused")
        hook = await agora.webhook(party, receiver.url("/paused"))
        ping = await agora.ping(hook)
        await agora.call("PATCH", f"/webhooks/{hook.id}", party.key, {"is_active": False})
        async with running_worker(database_url, events_poll_seconds=0.2):
            await asyncio.sleep(0.5)
            assert receiver.hits == 0
            assert await delivery_state(database_url, ping["id"]) == ("pending", 0)
            await agora.call("PATCH", f"/webhooks/{hook.id}", party.key, {"is_active": True})
            await receiver.wait_for(1, within=5)
    verify(receiver.requests[0], hook.secret)


async def checkouts_while_idle(database_url: str, seconds: float = 1.0) -> int:
    """Connection checkouts of a worker (polling every 0.5 s, no NOTIFY) over `seconds` of having nothing to do."""
    async with running_worker(database_url, listen=False, events_poll_seconds=0.5) as worker:
        await asyncio.sleep(0.3)
        source = worker.source
        assert isinstance(source, CountingSource)
        before = source.acquired
        await asyncio.sleep(seconds)
        return source.acquired - before


async def test_an_idle_worker_waits_for_its_poll_interval(database_url):
    soon = await rows(
        database_url,
        "SELECT count(*) FROM webhook_delivery WHERE status = 'pending' AND next_attempt_at < now() + interval '5 s'",
    )
    assert soon == [(0,)], "precondition: nothing falls due during the measurement"
    used = await checkouts_while_idle(database_url)
    print(f"\nidle worker, nothing pending: {used} connection checkouts in 1 s (poll interval 0.5 s)")
    # Idle, it should look twice per poll (claim, next due): about 4 checkouts a second, not about a hundred.
    assert used <= 10, used


async def test_a_paused_endpoints_due_deliveries_do_not_make_the_worker_spin(agora, database_url):
    receiver = Receiver()
    async with receiver:
        party = await agora.party("spin")
        hook = await agora.webhook(party, receiver.url("/spin"))
        await agora.ping(hook)
        await agora.call("PATCH", f"/webhooks/{hook.id}", party.key, {"is_active": False})
        used = await checkouts_while_idle(database_url)
    print(f"\nidle worker beside a paused endpoint's due delivery: {used} connection checkouts in 1 s")
    assert used <= 10, used


async def test_a_paused_endpoints_backlog_does_not_starve_other_endpoints(agora, database_url):
    paused_receiver, healthy = Receiver(), Receiver()
    async with paused_receiver, healthy:
        party = await agora.party("starve")
        paused = await agora.webhook(party, paused_receiver.url("/paused"))
        other = await agora.webhook(party, healthy.url("/other"))
        gate = asyncio.Semaphore(16)

        async def ping() -> dict:
            async with gate:
                return await agora.ping(paused)

        await asyncio.gather(*(ping() for _ in range(210)))
        await agora.call("PATCH", f"/webhooks/{paused.id}", party.key, {"is_active": False})
        await agora.ping(other)
        async with running_worker(database_url, webhook_concurrency=4, events_poll_seconds=0.2):
            await healthy.wait_for(1, within=3)
    assert paused_receiver.hits == 0


async def test_the_per_endpoint_cap_bounds_attempts_in_flight(agora, database_url):
    receiver = Receiver(then=Reply(delay=1.5))
    async with receiver:
        party = await agora.party("cap")
        hook = await agora.webhook(party, receiver.url("/cap"))
        # Polling only, so the next claim finds all six new deliveries due at once while the first still runs.
        async with running_worker(
            database_url,
            listen=False,
            events_poll_seconds=0.5,
            webhook_per_endpoint_concurrency=2,
            webhook_timeout_seconds=5.0,
        ):
            await agora.ping(hook)
            await receiver.wait_for(1, within=5)  # one attempt runs
            for _ in range(6):
                await agora.ping(hook)
            await receiver.wait_for(7, answered_status=200, within=15)
    print(f"\nper-endpoint cap 2: at most {receiver.max_in_flight} attempts in flight at the endpoint")
    assert receiver.max_in_flight <= 2


async def test_agora_worker_logs_every_attempt(agora, database_url):
    receiver = Receiver()
    async with receiver:
        party = await agora.party("logged")
        hook = await agora.webhook(party, receiver.url("/logged"))
        async with worker_process(database_url) as worker:
            ping = await agora.ping(hook)
            await settled(database_url, ping["id"])
            await asyncio.sleep(0.5)
    assert not [line for line in worker.raw if "Task exception was never retrieved" in line]
    (logged,) = [line for line in worker.logged("webhook_attempt") if line.get("delivery_id") == ping["id"]]
    assert logged["outcome"] == "succeeded" and logged["status"] == 200


# --- task.new_match: one shared event, fanned out by the workers ---------------------------------------------------


async def test_a_match_reaches_each_matching_agents_webhook_exactly_once_across_worker_restarts(agora, database_url):
    """A post writes one shared match; the workers fan it out after the commit. Posts made while no worker runs
    are fanned out when one starts; a worker stopped and another started, or two at once, queue each delivery once;
    the body is what a per-agent event's was, and every matching agent's webhook gets the same webhook-id."""
    receiver = Receiver()
    word = unique("skill")
    async with receiver:
        poster = await agora.party("match-poster", credits=100_000)
        matching = [await agora.party("match-a"), await agora.party("match-b")]
        unrelated = await agora.party("match-none")
        for party, capabilities in ((matching[0], [word]), (matching[1], [word.upper()]), (unrelated, ["cooking"])):
            await agora.call("PATCH", "/agents/me", party.key, {"capabilities": capabilities})
        hooks = [await agora.webhook(party, receiver.url(f"/m{n}"), ["task.new_match"]) for n, party in
                 enumerate(matching)]  # fmt: skip
        silent = [
            await agora.webhook(unrelated, receiver.url("/none"), ["task.new_match"]),
            await agora.webhook(poster, receiver.url("/own"), ["task.new_match"]),  # the poster's own operator
        ]
        title = f"Needs {word} soon"

        async def post(count: int) -> list[int]:
            body = {"title": title, "description": DESCRIPTION, "budget_credits": 100}
            return [(await agora.call("POST", "/tasks", poster.key, body, 201))["data"]["id"] for _ in range(count)]

        async def shared_events(task_ids: list[int]) -> dict[int, int]:
            found = await rows(
                database_url,
                "SELECT task_id, id FROM event WHERE type = 'task.new_match' AND task_id = ANY (%s)",
                task_ids,
            )
            return dict(found)

        # No worker running: acknowledged posts wait, nothing queued yet.
        tasks = await post(3)
        assert await rows(
            database_url, "SELECT count(*) FROM webhook_delivery WHERE webhook_id = ANY (%s)", [h.id for h in hooks]
        ) == [(0,)]
        async with worker_process(database_url, webhook_retry_scale="0.001"):
            await receiver.wait_for(2 * 3, within=20)
            tasks += await post(2)
            await receiver.wait_for(2 * 5, within=20)
        # Stopped (SIGTERM); posts while no worker runs; then two workers at once.
        tasks += await post(3)
        async with running_worker(database_url), running_worker(database_url):
            tasks += await post(4)
            await receiver.wait_for(2 * 12, within=30)
            await asyncio.sleep(1.0)  # anything extra would arrive now

    events = await shared_events(tasks)
    assert len(events) == len(tasks) == 12  # one shared event per post
    expected_ids = {f"evt_{events[t]}" for t in tasks}
    for hook in hooks:
        got = [r for r in receiver.requests if r.target == f"/m{hooks.index(hook)}"]
        assert sorted(r.webhook_id for r in got) == sorted(expected_ids), "each match exactly once"
        for request in got:
            payload = verify(request, hook.secret)
            assert payload["event"] == "task.new_match"
            task_id = payload["data"]["task_id"]
            assert payload["data"] == {"task_id": task_id, "title": title, "budget_credits": 100, "category_id": None}
            assert payload["event_id"] == events[task_id]
    assert not [r for r in receiver.requests if r.target in ("/none", "/own")]
    counts = await rows(
        database_url,
        """SELECT webhook_id, count(*), count(DISTINCT event_id), bool_and(status = 'succeeded' AND attempt_count = 1)
             FROM webhook_delivery WHERE webhook_id = ANY (%s) GROUP BY 1 ORDER BY 1""",
        [h.id for h in [*hooks, *silent]],
    )
    assert counts == [(hook.id, 12, 12, True) for hook in hooks]
    print(f"\nmatches: {len(tasks)} posts, {len(tasks)} shared events, {2 * len(tasks)} deliveries, none twice")
