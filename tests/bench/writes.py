"""The write scenarios of `make bench`: the requests, and the rows of the seeded marketplace they act on.

Every write consumes what it acts on (a bid is accepted once, a task delivered once), so each measured run gets
its own requests, chosen from the database's state just before the run: post task (posters of funded operators),
bid (an open task and an agent of another operator that has not bid on it), accept bid (an open task's pending
bid, by its poster), deliver (a claimed or in-progress task, by its worker) and accept deliverable (a delivered
task's submitted deliverable, by its poster). Every request carries an Idempotency-Key, as a careful client's
would. Requests are written into the wrk script, split between wrk's threads; a thread that has sent its share
stops, so a run whose requests run out ends early (and is scored over the time it ran) instead of counting
errors.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

from bench.dataset import agent_key
from tests.bench.load import AGORA_SUCCESS, LUA_COUNTING, lua_success_marker

POSTERS = 500  # poster agents whose operators are topped up for the post-task scenario
TOP_UP = 1_000_000_000
# What a thread sends once its share of requests is sent (see lua_script), and how its answer begins.
FILLER_PATH = "/healthz"
FILLER_PREFIX = '{"ok":true,"data":{"status":"ok"}'


@dataclass(frozen=True)
class WriteRequest:
    path: str
    body: str
    key: str  # the agent's API key


def _posters(connection: psycopg.Connection) -> list[tuple[int, int]]:
    return connection.execute(
        "SELECT DISTINCT ON (operator_id) id, operator_id FROM agent WHERE status = 'active'"
        " ORDER BY operator_id, id LIMIT %s",
        (POSTERS,),
    ).fetchall()


def fund_posters(url: str) -> None:
    """Give the post-task scenario's operators enough credits, through the service (a real ledger transfer)."""
    from app.services import credits
    from tests.support import run_committed_async

    with psycopg.connect(url) as connection:
        operators = [operator for _, operator in _posters(connection)]

    async def top_up() -> None:
        for operator in operators:
            await run_committed_async(
                url, lambda uow, o=operator: credits.adjust_operator(uow, operator_id=o, amount=TOP_UP, reason="bench")
            )

    asyncio.run(top_up())


def post_task(connection: psycopg.Connection, count: int) -> list[WriteRequest]:
    posters = _posters(connection)
    return [
        WriteRequest(
            "/api/v1/tasks",
            json.dumps(
                {
                    "title": f"Benchmark task {n}: summarise a quarterly report",
                    "description": "Read the attached quarterly report and write a one page summary of its findings.",
                    "budget_credits": 50,
                }
            ),
            agent_key(posters[n % len(posters)][0]),
        )
        for n in range(count)
    ]


BIDDERS_PER_TASK = 8  # a task takes bids from many agents: a small dataset still has bids enough for a long run


def bid(connection: psycopg.Connection, count: int) -> list[WriteRequest]:
    # Up to BIDDERS_PER_TASK agents of other operators that have not bid on it, per open task; ordered so that
    # consecutive requests go to different tasks (every task's first bidder, then every task's second, ...).
    rows = connection.execute(
        """
        SELECT t.id, t.budget_credits, a.id
          FROM (SELECT id, budget_credits, poster_operator_id FROM task WHERE status = 'open'
                ORDER BY id DESC LIMIT %(count)s) t
          CROSS JOIN LATERAL (
              SELECT a.id, row_number() OVER (ORDER BY a.id) AS turn FROM agent a
               WHERE a.status = 'active' AND a.operator_id <> t.poster_operator_id
                 AND NOT EXISTS (SELECT 1 FROM claim c WHERE c.task_id = t.id AND c.agent_id = a.id)
                 AND a.id >= (SELECT min(id) FROM agent) + (t.id * 7919) %% 2000
               ORDER BY a.id LIMIT %(bidders)s) a
         ORDER BY a.turn, t.id DESC
         LIMIT %(count)s
        """,
        {"count": count, "bidders": BIDDERS_PER_TASK},
    ).fetchall()
    return [
        WriteRequest(f"/api/v1/tasks/{task}/claims", json.dumps({"proposed_credits": budget}), agent_key(agent))
        for task, budget, agent in rows
    ]


def accept_bid(connection: psycopg.Connection, count: int) -> list[WriteRequest]:
    rows = connection.execute(
        """
        SELECT DISTINCT ON (t.id) t.id, c.id, t.poster_agent_id
          FROM task t JOIN claim c ON c.task_id = t.id AND c.status = 'pending'
         WHERE t.status = 'open'
         ORDER BY t.id, c.id
         LIMIT %s
        """,
        (count,),
    ).fetchall()
    return [
        WriteRequest(f"/api/v1/tasks/{task}/claims/{claim}/accept", "", agent_key(poster))
        for task, claim, poster in rows
    ]


def deliver(connection: psycopg.Connection, count: int) -> list[WriteRequest]:
    rows = connection.execute(
        "SELECT id, claimed_by_agent_id FROM task WHERE status IN ('claimed', 'in_progress') ORDER BY id LIMIT %s",
        (count,),
    ).fetchall()
    body = json.dumps({"content": "Here is the summary you asked for: revenue grew, costs held, outlook stable."})
    return [WriteRequest(f"/api/v1/tasks/{task}/deliverables", body, agent_key(worker)) for task, worker in rows]


def accept_deliverable(connection: psycopg.Connection, count: int) -> list[WriteRequest]:
    rows = connection.execute(
        """
        SELECT t.id, d.id, t.poster_agent_id
          FROM task t JOIN deliverable d ON d.task_id = t.id AND d.status = 'submitted'
         WHERE t.status = 'delivered'
         ORDER BY t.id
         LIMIT %s
        """,
        (count,),
    ).fetchall()
    return [
        WriteRequest(f"/api/v1/tasks/{task}/deliverables/{deliverable}/accept", "", agent_key(poster))
        for task, deliverable, poster in rows
    ]


@dataclass(frozen=True)
class WriteScenario:
    name: str
    choose: Callable[[psycopg.Connection, int], list[WriteRequest]]


SCENARIOS = [
    WriteScenario("post task", post_task),
    WriteScenario("bid", bid),
    WriteScenario("accept bid", accept_bid),
    WriteScenario("deliver", deliver),
    WriteScenario("accept deliverable", accept_deliverable),
]


def check_filler(base_url: str) -> None:
    """The filler answer must be recognisable, or it would count as an error."""
    answer = httpx.get(base_url + FILLER_PATH, timeout=10).text
    if not answer.startswith(FILLER_PREFIX):
        raise SystemExit(f"bench: GET {FILLER_PATH} answered {answer[:200]!r}, not {FILLER_PREFIX!r}...")


def choose(url: str, scenario: WriteScenario, count: int) -> list[WriteRequest]:
    with psycopg.connect(url, autocommit=True) as connection:
        return scenario.choose(connection, count)


def _lua_string(value: str) -> str:
    return json.dumps(value, ensure_ascii=True)  # JSON's escapes are Lua's, for ASCII text


def lua_script(path: Path, requests: list[WriteRequest], threads: int) -> Path:
    """A wrk script that sends each request once: thread t sends requests t, t + threads, ..."""
    run = uuid.uuid4().hex[:12]
    items = ",\n".join(
        f"{{{_lua_string(r.path)}, {_lua_string(r.body)}, {_lua_string('Bearer ' + r.key)}}}" for r in requests
    )
    path.write_text(
        f"""-- generated by tests/bench/writes.py: {len(requests)} requests, each sent once
local items = {{
{items}
}}
{lua_success_marker(AGORA_SUCCESS, filler_prefix=FILLER_PREFIX)}function init(args)
  next_item = (thread_number or 1) - {threads}
end
function request()
  next_item = next_item + {threads}
  local item = items[next_item]
  if items[next_item + {threads}] == nil then
    wrk.thread:stop()  -- this thread's last request: it is still sent, then the thread ends
  end
  if item == nil then
    -- Its share is sent and it has stopped, but connections served in the same turn of its event loop still ask:
    -- they get a read that changes nothing, which response() recognises by its body and leaves out of the count.
    wrk.thread:stop()
    return wrk.format("GET", "{FILLER_PATH}")
  end
  local headers = {{}}
  headers["Authorization"] = item[3]
  headers["Content-Type"] = "application/json"
  headers["Idempotency-Key"] = "{run}-" .. next_item
  return wrk.format("POST", item[1], headers, item[2])
end
{LUA_COUNTING}"""
    )
    return path


async def _send_all(base_url: str, requests: list[WriteRequest], concurrency: int) -> list[str]:
    problems: list[str] = []
    queue = iter(requests)

    async def sender(client: httpx.AsyncClient) -> None:
        for request in queue:
            response = await client.post(
                request.path,
                content=request.body,
                headers={
                    "Authorization": f"Bearer {request.key}",
                    "Content-Type": "application/json",
                    "Idempotency-Key": uuid.uuid4().hex,
                },
            )
            if response.status_code >= 300:
                problems.append(f"POST {request.path} -> {response.status_code} {response.text[:300]}")

    async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
        await asyncio.gather(*(sender(client) for _ in range(concurrency)))
    return problems


def send_all(base_url: str, requests: list[WriteRequest], concurrency: int = 8) -> list[str]:
    """Send every request once (for the capture); the answers that were not 2xx."""
    return asyncio.run(_send_all(base_url, requests, concurrency))
