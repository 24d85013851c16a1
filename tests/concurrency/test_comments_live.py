"""A comment racing the bids that make new participants, against two real server processes.

The post's participant check, the bidders it reads and its insert happen under the task's row lock, which every
bid takes too, so each bid is entirely before or entirely after the comment. The outbox shows the order: every
event is numbered, under the lock, as it goes out with its COMMIT, so a bid that came first has its
`claim.created` numbered below the comment's `comment.created`. A bidder hears of the comment exactly when its
bid came first; one whose own comment raced its bid was admitted exactly when its bid came first.
"""

from __future__ import annotations

import asyncio
import os

import httpx
import psycopg
import pytest

from tests.conftest import bearer
from tests.live_marketplace import Flow, adjust, new_party
from tests.support import start_servers

pytestmark = [pytest.mark.live, pytest.mark.timeout(300)]

TRIALS = int(os.environ.get("AGORA_RACE_TRIALS", "30"))
BIDDERS = 8
TIMEOUT = httpx.Timeout(30.0)
LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=100)


@pytest.fixture(scope="module")
def servers(database_url: str):
    started = start_servers(database_url, count=2, rate_limit_per_minute="1000000")
    yield started
    started.stop()


async def task_events(database_url: str, task_id: int) -> list[tuple[int, str, int | None, dict]]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        cursor = await connection.execute(
            "SELECT id, type, agent_id, data FROM event WHERE task_id = %s ORDER BY id", (task_id,)
        )
        return await cursor.fetchall()


async def test_a_comment_reaches_exactly_the_bidders_whose_bids_came_first(database_url, servers):
    async with httpx.AsyncClient(timeout=TIMEOUT, limits=LIMITS) as http:
        flow = Flow(http, servers.urls[0])
        poster = await new_party(database_url, http, servers.urls[0], "talk-poster")
        await adjust(database_url, poster.operator_id, 100 * TRIALS)
        # The author bid before the race, so the poster's agent always hears of the comment: its event is the
        # comment's place in the order, whoever else comes first.
        author = await new_party(database_url, http, servers.urls[0], "talk-author")
        bidders = await new_party(database_url, http, servers.urls[1], "talk-bidders", agents=BIDDERS)
        came_first = 0
        for trial in range(TRIALS):
            task_id = await flow.post_task(poster, 100)
            await flow.bid(task_id, author.key, 60)

            def bid(i: int, task_id: int = task_id) -> object:
                return http.post(
                    f"{servers.urls[i % 2]}/api/v1/tasks/{task_id}/claims",
                    json={"proposed_credits": 50},
                    headers=bearer(bidders.agent_keys[i]),
                )

            comment = http.post(
                f"{servers.urls[trial % 2]}/api/v1/tasks/{task_id}/comments",
                json={"content": "Questions welcome"},
                headers=bearer(author.key),
            )
            responses = await asyncio.gather(comment, *(bid(i) for i in range(BIDDERS)))
            assert [r.status_code for r in responses] == [201] * (1 + BIDDERS), [r.text for r in responses]

            rows = await task_events(database_url, task_id)
            told = {row[2]: row[0] for row in rows if row[1] == "comment.created"}
            assert poster.agent_ids[0] in told and author.agent_ids[0] not in told
            start, end = min(told.values()), max(told.values())
            # claim.created goes to the poster's agent; its data names the bidder.
            bid_at = {row[3]["agent_id"]: row[0] for row in rows if row[1] == "claim.created"}
            racing = {agent: at for agent, at in bid_at.items() if agent in bidders.agent_ids}
            assert len(racing) == BIDDERS and all(at < start or at > end for at in racing.values()), (racing, told)
            first = {agent for agent, at in racing.items() if at < start}
            assert set(told) - {poster.agent_ids[0]} == first, (racing, told)
            came_first += len(first)
    print(
        f"\ncomment vs {BIDDERS} bids, {TRIALS} trials: {came_first} bids came first, {TRIALS * BIDDERS - came_first} after"
    )


async def test_a_bidders_own_comment_racing_its_bid_is_admitted_exactly_when_the_bid_came_first(database_url, servers):
    async with httpx.AsyncClient(timeout=TIMEOUT, limits=LIMITS) as http:
        flow = Flow(http, servers.urls[0])
        poster = await new_party(database_url, http, servers.urls[0], "talk-poster2")
        await adjust(database_url, poster.operator_id, 100 * TRIALS)
        bidder = await new_party(database_url, http, servers.urls[1], "talk-bidder")
        outcomes = {201: 0, 403: 0}
        for trial in range(TRIALS):
            task_id = await flow.post_task(poster, 100)
            comment = http.post(
                f"{servers.urls[trial % 2]}/api/v1/tasks/{task_id}/comments",
                json={"content": "Bidding now"},
                headers=bearer(bidder.key),
            )
            placed = http.post(
                f"{servers.urls[(trial + 1) % 2]}/api/v1/tasks/{task_id}/claims",
                json={"proposed_credits": 50},
                headers=bearer(bidder.key),
            )
            commented, bid = await asyncio.gather(comment, placed)
            assert bid.status_code == 201, bid.text
            assert commented.status_code in (201, 403), commented.text
            outcomes[commented.status_code] += 1
            rows = await task_events(database_url, task_id)
            # Admitted: the comment told the poster, after the bid's claim.created; refused: nothing was written.
            told = [row[0] for row in rows if row[1] == "comment.created"]
            (bid_at,) = [row[0] for row in rows if row[1] == "claim.created"]
            if commented.status_code == 201:
                assert len(told) == 1 and bid_at < told[0]
            else:
                assert told == []
    print(f"\nown comment vs own bid, {TRIALS} trials: {outcomes}")
