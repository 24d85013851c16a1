"""Event streams against two real server processes: an event committed through one process reaches a stream held
by the other; a reconnect with Last-Event-ID resumes with no gap and no duplicate; the task stream starts with the
task's current state; the outbox holds exactly the committed changes' events."""

from __future__ import annotations

import asyncio
import json
import statistics
import time

import httpx
import psycopg
import pytest

from app.repo.connections import PoolSource, open_pool
from app.services.event_stream import EventHub, Subscription
from tests.live_marketplace import DESCRIPTION, Flow, adjust, new_party, unique
from tests.sse_client import open_stream
from tests.support import start_servers

pytestmark = [pytest.mark.live, pytest.mark.timeout(300)]

TIMEOUT = httpx.Timeout(30.0)


@pytest.fixture(scope="module")
def servers(database_url: str):
    started = start_servers(
        database_url,
        count=2,
        rate_limit_per_minute="1000000",
        sse_heartbeat_seconds="0.5",
        sse_max_streams_per_agent="2",
        webhook_worker="false",
    )
    yield started
    started.stop()


async def agent_event_ids(database_url: str, agent_id: int) -> list[int]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        cursor = await connection.execute("SELECT id FROM event WHERE agent_id = %s ORDER BY tx, id", (agent_id,))
        return [row[0] for row in await cursor.fetchall()]


async def test_an_event_committed_through_one_process_reaches_a_stream_on_the_other(database_url, servers):
    a, b = servers.urls
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        poster = await new_party(database_url, http, a, "poster")
        worker = await new_party(database_url, http, a, "worker")
        await adjust(database_url, poster.operator_id, 1000)
        flow = Flow(http, a)
        async with open_stream(http, f"{b}/api/v1/events", worker.key) as stream:
            assert stream.response.status_code == 200
            assert stream.response.headers["content-type"].startswith("text/event-stream")
            connected = await stream.next()
            assert connected.event == "connected"
            assert connected.data == {"agent_id": worker.agent_ids[0], "message": "Subscribed to task updates"}
            task_id = await flow.post_task(poster, 100)
            claim_id = await flow.assign(task_id, poster, worker, 80)
            frames = await stream.events(2)
            by_type = {f.event: f for f in frames}
            assert set(by_type) == {"task.status", "claim.accepted"}
            accepted = by_type["claim.accepted"].data
            assert accepted["type"] == "claim.accepted"
            assert accepted["data"] == {
                "task_id": task_id,
                "claim_id": claim_id,
                "agent_id": worker.agent_ids[0],
                "price_credits": 80,
            }
            status = by_type["task.status"].data["data"]
            assert status["status"] == "claimed" and status["previous_status"] == "open"
            assert all(f.event_id for f in frames)
            # Heartbeats keep flowing while nothing happens.
            heartbeat = await stream.next(5, heartbeats=True)
            assert heartbeat.comment


async def test_resume_with_last_event_id_has_no_gap_and_no_duplicate(database_url, servers):
    a, b = servers.urls
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        poster = await new_party(database_url, http, a, "poster")
        worker = await new_party(database_url, http, a, "worker")
        await adjust(database_url, poster.operator_id, 100_000)
        flow = Flow(http, a)
        seen: list[int] = []
        async with open_stream(http, f"{b}/api/v1/events", poster.key) as stream:
            await stream.next()  # connected
            for _ in range(5):
                await flow.post_task(poster, 100)  # task.created + credit.posted for the poster
            seen += [f.event_id for f in await stream.events(10)]
        # While disconnected: more events, posted through both processes at once.
        tasks = await asyncio.gather(*(Flow(http, url).post_task(poster, 100) for url in (a, b) * 5))
        for task_id in tasks[:3]:
            await flow.bid(task_id, worker.key, 50)  # claim.created to the poster
        async with open_stream(http, f"{a}/api/v1/events", poster.key, last_event_id=str(seen[-1])) as stream:
            await stream.next()  # connected
            seen += [f.event_id for f in await stream.events(23)]
            with pytest.raises(TimeoutError):
                await stream.next(1.0)  # nothing more: no duplicate
        committed = await agent_event_ids(database_url, poster.agent_ids[0])
        # The stream started from "now": the setup's credit events came before it.
        assert seen == committed[committed.index(seen[0]) :]
        assert len(seen) == len(set(seen)) == 33
        print(f"\nresume: {len(seen)} events over two connections on two processes, 0 missing, 0 duplicated")


async def test_a_stream_resumes_with_the_last_event_id_query_parameter(database_url, servers):
    a, _ = servers.urls
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        poster = await new_party(database_url, http, a, "poster")
        await adjust(database_url, poster.operator_id, 1000)
        await Flow(http, a).post_task(poster, 100)
        await Flow(http, a).post_task(poster, 100)
        ids = await agent_event_ids(database_url, poster.agent_ids[0])
        async with open_stream(http, f"{a}/api/v1/events?last_event_id={ids[0]}", poster.key) as stream:
            await stream.next()
            assert [f.event_id for f in await stream.events(len(ids) - 1)] == ids[1:]


async def test_an_unknown_last_event_id_is_a_clear_error(database_url, servers):
    a, _ = servers.urls
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        poster = await new_party(database_url, http, a, "poster")
        for value in ("999999999999", "abc", "-1"):
            response = await http.get(
                f"{a}/api/v1/events", headers={"Authorization": f"Bearer {poster.key}", "Last-Event-ID": value}
            )
            assert response.status_code == 400
            assert response.json()["error"]["code"] == "INVALID_PARAMETER"


async def test_the_task_stream_starts_with_the_current_state_then_follows_changes(database_url, servers):
    a, b = servers.urls
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        poster = await new_party(database_url, http, a, "poster")
        worker = await new_party(database_url, http, a, "worker")
        await adjust(database_url, poster.operator_id, 1000)
        flow = Flow(http, a)
        task_id = await flow.post_task(poster, 100)
        # Any agent may follow a task's public status.
        async with open_stream(http, f"{b}/api/v1/tasks/{task_id}/events", worker.key) as stream:
            first = await stream.next()
            assert first.event == "task.status"
            assert first.data["data"]["status"] == "open" and first.data["data"]["task_id"] == task_id
            assert first.event_id is not None
            await flow.assign(task_id, poster, worker, 80)
            change = await stream.next()
            assert change.data["data"]["status"] == "claimed"
            assert change.data["data"]["previous_status"] == "open"
            assert change.data["data"]["claimed_by_agent_id"] == worker.agent_ids[0]
            assert "updated_at" in change.data["data"]
        missing = await http.get(
            f"{a}/api/v1/tasks/999999999/events", headers={"Authorization": f"Bearer {worker.key}"}
        )
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "TASK_NOT_FOUND"


async def test_latency_from_commit_to_frame_on_the_other_process(database_url, servers):
    """Not a timed assertion: prints the figure for the issue's note (every frame must arrive, that is all)."""
    a, b = servers.urls
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        poster = await new_party(database_url, http, a, "poster")
        await adjust(database_url, poster.operator_id, 100_000)
        flow = Flow(http, a)
        latencies = []
        async with open_stream(http, f"{b}/api/v1/events", poster.key) as stream:
            await stream.next()
            for _ in range(30):
                await flow.post_task(poster, 100)
                committed = time.perf_counter()  # the response follows the commit
                await stream.events(2)
                latencies.append((time.perf_counter() - committed) * 1000)
        print(
            f"\ncommit -> SSE frame on the other process: p50 {statistics.median(latencies):.1f} ms,"
            f" max {max(latencies):.1f} ms over {len(latencies)} events"
        )


async def test_an_agent_holds_a_bounded_number_of_streams_per_process(database_url, servers):
    a, b = servers.urls
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        agent = await new_party(database_url, http, a, "streamer")
        async with open_stream(http, f"{a}/api/v1/events", agent.key) as first:
            await first.next()
            async with open_stream(http, f"{a}/api/v1/events", agent.key) as second:
                await second.next()
                refused = await http.get(f"{a}/api/v1/events", headers={"Authorization": f"Bearer {agent.key}"})
                assert refused.status_code == 409
                assert refused.json()["error"]["code"] == "TOO_MANY_STREAMS"
                # The limit is per process: the other one still accepts.
                async with open_stream(http, f"{b}/api/v1/events", agent.key) as elsewhere:
                    assert (await elsewhere.next()).event == "connected"
        # Closed streams give their places back.
        async with open_stream(http, f"{a}/api/v1/events", agent.key) as again:
            assert (await again.next(5)).event == "connected"


async def test_a_stream_whose_client_does_not_read_holds_a_bounded_queue_and_loses_nothing(database_url, servers):
    """A stream that nobody reads keeps at most `queue_size` events in memory; when it is read again it catches up
    from the outbox, in order, without a gap."""
    a, _ = servers.urls
    pool = open_pool(database_url, min_size=1, max_size=4, statement_timeout_ms=5000, name="test-hub")
    await pool.open(wait=True)
    hub = EventHub(PoolSource(pool), listen_url=database_url, poll_seconds=0.05, queue_size=3)
    await hub.start()
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:
            poster = await new_party(database_url, http, a, "poster")
            await adjust(database_url, poster.operator_id, 10_000)
            agent_id = poster.agent_ids[0]
            subscription = await hub.subscribe(agent_id, agent_id=agent_id)
            stream = subscription.events(heartbeat_seconds=5)
            flow = Flow(http, a)
            for _ in range(8):
                await flow.post_task(poster, 100)  # 2 events each for the poster
            await asyncio.sleep(0.5)  # the hub hands them out; the stream is not read
            assert len(subscription._queue) <= 3
            received = [(await anext(stream)).id for _ in range(16)]
            committed = await agent_event_ids(database_url, agent_id)
            assert received == committed[-16:]
            await stream.aclose()
            assert hub.open_streams == 0
    finally:
        await hub.stop()
        await pool.close()


async def test_head_on_an_event_stream_answers_the_headers_and_ends(database_url, servers):
    # Issue 11: HEAD works wherever GET does, a stream included: its headers, no body, and the response ends.
    a, _ = servers.urls
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0)) as http:
        worker = await new_party(database_url, http, a, "head")
        started = time.monotonic()
        response = await http.head(f"{a}/api/v1/events", headers={"Authorization": f"Bearer {worker.key}"})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.content == b""
        assert time.monotonic() - started < 5


# --- task.new_match: one shared event, resolved for each stream ------------------------------------------------------


async def capable(http: httpx.AsyncClient, url: str, key: str, *capabilities: str) -> None:
    response = await http.patch(
        f"{url}/api/v1/agents/me", json={"capabilities": list(capabilities)}, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200, response.text


async def post_titled(http: httpx.AsyncClient, url: str, poster, title: str) -> int:
    return (await Flow(http, url).call("/tasks", poster.key, {"title": title, "description": DESCRIPTION,
                                                              "budget_credits": 100}, 201))["id"]  # fmt: skip


async def test_a_match_reaches_the_streams_of_the_agents_it_matches_and_no_other(database_url, servers):
    """Live on the other process (the event hub resolves it), and on resume with Last-Event-ID (the agent's own
    read resolves it); the poster's own operator, a paused agent and one without overlap see nothing of it."""
    a, b = servers.urls
    word = unique("skill")
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        poster = await new_party(database_url, http, a, "poster", agents=2)
        matching = await new_party(database_url, http, a, "matching")
        paused = await new_party(database_url, http, a, "paused")
        unrelated = await new_party(database_url, http, a, "unrelated")
        await adjust(database_url, poster.operator_id, 1000)
        await capable(http, a, poster.agent_keys[1], word)  # the poster's sibling
        await capable(http, a, matching.key, word.upper())
        await capable(http, a, paused.key, word)
        await capable(http, a, unrelated.key, "cooking")
        sibling_key = poster.agent_keys[1]
        async with (
            open_stream(http, f"{b}/api/v1/events", matching.key) as matched,
            open_stream(http, f"{b}/api/v1/events", sibling_key) as sibling,
            open_stream(http, f"{b}/api/v1/events", paused.key) as resting,
            open_stream(http, f"{b}/api/v1/events", unrelated.key) as other,
        ):
            for stream in (matched, sibling, resting, other):
                assert (await stream.next()).event == "connected"
            # Paused once its stream is open (a paused agent cannot open one): the match is resolved as read.
            pause = await http.post(
                f"{a}/api/v1/operator/agents/{paused.agent_ids[0]}/pause",
                headers={"Authorization": f"Bearer {paused.operator_key}"},
            )
            assert pause.status_code == 200, pause.text
            title = f"Needs {word} today"
            task_id = await post_titled(http, a, poster, title)
            frame = await matched.next()
            assert frame.event == "task.new_match"
            assert frame.data["type"] == "task.new_match" and frame.data["event_id"] == frame.event_id
            assert frame.data["data"] == {
                "task_id": task_id,
                "title": title,
                "budget_credits": 100,
                "category_id": None,
            }
            # A marker after the post for each of the others: a credit to every agent of their operator. The
            # match, had it reached them, would have come before it.
            for party in (paused, unrelated):
                await adjust(database_url, party.operator_id, 1)
            assert (await resting.next()).event == "credit.posted"
            assert (await other.next()).event == "credit.posted"
            assert [f.event for f in await sibling.events(1)] == ["credit.posted"]  # the escrow hold, no match
            await adjust(database_url, poster.operator_id, 1)
            assert (await sibling.next()).event == "credit.posted"
            last_seen = frame.id
        # Disconnected: another match, then a resume on the first process.
        again = await post_titled(http, a, poster, f"More {word}")
        async with open_stream(http, f"{a}/api/v1/events", matching.key, last_event_id=last_seen) as resumed:
            assert (await resumed.next()).event == "connected"
            frame = await resumed.next()
            assert (frame.event, frame.data["data"]["task_id"]) == ("task.new_match", again)
            with pytest.raises(TimeoutError):
                await resumed.next(1.0)  # nothing more, nothing twice


async def test_a_stream_opened_while_the_hub_reads_a_match_still_gets_it(database_url, servers):
    """The hub resolves a match only for the agents listening when its read began: a stream opened during that
    read is told to catch up from the outbox again, where its own read resolves the match, and gets it once."""
    a, _ = servers.urls
    word = unique("skill")
    pool = open_pool(database_url, min_size=1, max_size=4, statement_timeout_ms=5000, name="test-hub")
    await pool.open(wait=True)
    late: list[Subscription] = []
    opened = asyncio.Event()

    class Hub(EventHub):
        async def read(self, position, *, agent_id, task_id, among=()):
            batch = await super().read(position, agent_id=agent_id, task_id=task_id, among=among)
            if agent_id is None and task_id is None and not late and any(e.recipients is not None for e in batch):
                # The stream opens after the read's answer but before the hub hands the batch out, and has caught
                # up already (as if its own read had run just before the match became readable: a race too narrow
                # to stage for real). Without being told, it would wait for the hub, which never offers it this.
                subscription = await self.subscribe(newcomer.agent_ids[0], agent_id=newcomer.agent_ids[0])
                subscription._overflowed = False
                late.append(subscription)
                opened.set()
            return batch

    hub = Hub(PoolSource(pool), listen_url=database_url, poll_seconds=0.05)
    await hub.start()
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:
            poster = await new_party(database_url, http, a, "poster")
            listener = await new_party(database_url, http, a, "listener")
            newcomer = await new_party(database_url, http, a, "newcomer")
            await adjust(database_url, poster.operator_id, 1000)
            await capable(http, a, newcomer.key, word)
            # Some stream must be open for the hub to read at all.
            listening = await hub.subscribe(listener.agent_ids[0], agent_id=listener.agent_ids[0])
            task_id = await post_titled(http, a, poster, f"Needs {word}")
            await asyncio.wait_for(opened.wait(), 10)
            stream = late[0].events(heartbeat_seconds=5)
            # Subscribed at the hub's position before that batch, so the match comes after it.
            event = await asyncio.wait_for(anext(stream), 10)
            assert event is not None
            assert (event.type, json.loads(event.data)["task_id"]) == ("task.new_match", task_id)
            assert await asyncio.wait_for(anext(stream), 10) is None  # a heartbeat: nothing twice
            await stream.aclose()
            hub.unsubscribe(listening)
    finally:
        await hub.stop()
        await pool.close()
