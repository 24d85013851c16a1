"""The board (GET /agents/me/board and /agents/me/board/{column}): each role's columns across task states, their
counts and first items, and each column paged through exactly with the cursor the board hands out."""

from __future__ import annotations

import pytest

from tests.api.test_outbox_events import call, error_code
from tests.conftest import add_agent, bearer, new_agent

TASKS = "/api/v1/tasks"
BOARD = "/api/v1/agents/me/board"
WORKER_COLUMNS = ["bidding", "doing", "in_review", "done"]
POSTER_COLUMNS = ["open", "in_progress", "in_review", "done", "closed"]
ITEM_FIELDS = {
    "id",
    "title",
    "status",
    "budget_credits",
    "price_credits",
    "priority",
    "tags",
    "deadline",
    "expires_at",
    "created_at",
    "updated_at",
}


async def post_task(client, agent: dict, title: str = "Board task", **fields) -> dict:
    body = {"title": title, "description": "Something to do, described in full.", "budget_credits": 20, **fields}
    response = await client.post(TASKS, json=body, headers=bearer(agent["api_key"]))
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def bid(client, agent: dict, task_id: int, credits: int = 15) -> dict:
    response = await client.post(
        f"{TASKS}/{task_id}/claims", json={"proposed_credits": credits}, headers=bearer(agent["api_key"])
    )
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def assigned(client, poster: dict, worker: dict, title: str, **fields) -> dict:
    task = await post_task(client, poster, title, **fields)
    claim = await bid(client, worker, task["id"])
    await call(client, poster, f"{TASKS}/{task['id']}/claims/{claim['id']}/accept")
    return task


async def delivered(client, poster: dict, worker: dict, title: str) -> tuple[dict, dict]:
    task = await assigned(client, poster, worker, title)
    response = await client.post(
        f"{TASKS}/{task['id']}/deliverables", json={"content": "done"}, headers=bearer(worker["api_key"])
    )
    assert response.status_code == 201, response.text
    return task, response.json()["data"]


async def board(client, agent: dict, role: str, **params) -> dict:
    response = await client.get(BOARD, params={"role": role, **params}, headers=bearer(agent["api_key"]))
    assert response.status_code == 200, response.text
    return response.json()["data"]


def columns(found: dict) -> dict[str, list[int]]:
    return {c["name"]: [item["id"] for item in c["items"]] for c in found["columns"]}


def counts(found: dict) -> dict[str, int]:
    return {c["name"]: c["count"] for c in found["columns"]}


@pytest.fixture
async def rival(client, admin_key) -> dict:
    return await new_agent(client, admin_key, "rival")


@pytest.fixture
async def marketplace(client, conn, admin_key, poster, worker, rival) -> dict[str, dict]:
    """The poster's tasks in every state, the worker's stake in each named after it."""
    tasks = {}
    tasks["open"] = await post_task(client, poster, "Open, nobody bid")
    tasks["bidding"] = await post_task(client, poster, "Open, the worker bid")
    await bid(client, worker, tasks["bidding"]["id"])
    tasks["withdrawn"] = await post_task(client, poster, "Open, the worker withdrew")
    withdrawn = await bid(client, worker, tasks["withdrawn"]["id"])
    await call(client, worker, f"{TASKS}/{tasks['withdrawn']['id']}/claims/{withdrawn['id']}/withdraw")
    tasks["lost"] = await post_task(client, poster, "Claimed by the rival")
    await bid(client, worker, tasks["lost"]["id"])
    rival_bid = await bid(client, rival, tasks["lost"]["id"])
    await call(client, poster, f"{TASKS}/{tasks['lost']['id']}/claims/{rival_bid['id']}/accept")
    tasks["claimed"] = await assigned(client, poster, worker, "Claimed by the worker")
    revising, first = await delivered(client, poster, worker, "Sent back for a revision")
    await call(
        client,
        poster,
        f"{TASKS}/{revising['id']}/deliverables/{first['id']}/revision",
        {"revision_notes": "More tests, please."},
    )
    tasks["in_progress"] = revising
    tasks["delivered"], _ = await delivered(client, poster, worker, "Delivered, awaiting review")
    tasks["completed"], done = await delivered(client, poster, worker, "Completed and paid")
    await call(client, poster, f"{TASKS}/{tasks['completed']['id']}/deliverables/{done['id']}/accept")
    tasks["cancelled"] = await assigned(client, poster, worker, "Cancelled after the claim")
    await call(client, poster, f"{TASKS}/{tasks['cancelled']['id']}/cancel")
    # Expired: written by a read of it (the task clock), so its refund and events are the real ones.
    tasks["expired"] = await post_task(client, poster, "Expired unclaimed", expires_at="2999-01-01T00:00:00Z")
    await conn.execute(
        "UPDATE task SET expires_at = now() - interval '1 second' WHERE id = %s", (tasks["expired"]["id"],)
    )
    read = await client.get(f"{TASKS}/{tasks['expired']['id']}", headers=bearer(poster["api_key"]))
    assert read.json()["data"]["status"] == "expired", read.text
    # Past its expiry, not yet written: on the board it is where readers are told it is.
    tasks["lapsing"] = await post_task(client, poster, "Past its expiry", expires_at="2999-01-01T00:00:00Z")
    await conn.execute(
        "UPDATE task SET expires_at = now() - interval '1 second' WHERE id = %s", (tasks["lapsing"]["id"],)
    )
    audit = await client.get("/api/v1/admin/ledger/audit", headers=bearer(admin_key))
    assert audit.json()["data"]["ok"] is True, audit.text
    return tasks


def ids(tasks: dict[str, dict], *names: str) -> list[int]:
    """The tasks' ids, newest first."""
    return sorted((tasks[name]["id"] for name in names), reverse=True)


# Columns -----------------------------------------------------------------------------------------------------------


async def test_the_worker_board_has_its_bids_and_assignments_in_fixed_columns(client, worker, marketplace):
    found = await board(client, worker, "worker")
    assert found["role"] == "worker"
    assert [c["name"] for c in found["columns"]] == WORKER_COLUMNS
    assert columns(found) == {
        "bidding": ids(marketplace, "bidding"),  # not the withdrawn bid, not the bid another bid beat
        "doing": ids(marketplace, "claimed", "in_progress"),
        "in_review": ids(marketplace, "delivered"),
        "done": ids(marketplace, "completed"),
    }
    assert counts(found) == {"bidding": 1, "doing": 2, "in_review": 1, "done": 1}
    for column in found["columns"]:
        assert column["has_more"] is False and column["cursor"] is None


async def test_the_poster_board_has_every_task_its_operator_posted(client, poster, marketplace):
    found = await board(client, poster, "poster")
    assert found["role"] == "poster"
    assert [c["name"] for c in found["columns"]] == POSTER_COLUMNS
    assert columns(found) == {
        "open": ids(marketplace, "open", "bidding", "withdrawn"),
        "in_progress": ids(marketplace, "lost", "claimed", "in_progress"),
        "in_review": ids(marketplace, "delivered"),
        "done": ids(marketplace, "completed"),
        "closed": ids(marketplace, "cancelled", "expired", "lapsing"),
    }
    assert sum(counts(found).values()) == len(marketplace)


async def test_an_operators_agents_share_its_poster_board_but_not_their_worker_boards(
    client, poster, worker, marketplace
):
    poster_sibling = await add_agent(client, poster["operator"], "poster-sibling")
    assert await board(client, poster_sibling, "poster") == await board(client, poster, "poster")
    worker_sibling = await add_agent(client, worker["operator"], "worker-sibling")
    assert counts(await board(client, worker_sibling, "worker")) == dict.fromkeys(WORKER_COLUMNS, 0)
    # The worker posted nothing; the poster bid on and works on nothing.
    assert counts(await board(client, worker, "poster")) == dict.fromkeys(POSTER_COLUMNS, 0)
    assert counts(await board(client, poster, "worker")) == dict.fromkeys(WORKER_COLUMNS, 0)


async def test_an_item_is_the_compact_task_view(client, poster, worker):
    task = await post_task(
        client, poster, "Tagged and urgent", priority="urgent", tags=["python", "pdf"], deadline="2031-01-01T00:00:00Z"
    )
    claim = await bid(client, worker, task["id"], 12)
    await call(client, poster, f"{TASKS}/{task['id']}/claims/{claim['id']}/accept")
    (item,) = columns_items(await board(client, worker, "worker"), "doing")
    assert set(item) == ITEM_FIELDS
    assert item["id"] == task["id"] and item["title"] == "Tagged and urgent" and item["status"] == "claimed"
    assert (item["budget_credits"], item["price_credits"]) == (20, 12)
    assert (item["priority"], item["tags"]) == ("urgent", ["python", "pdf"])
    assert item["deadline"].startswith("2031-01-01T00:00:00") and item["expires_at"] is None
    assert item["created_at"] == task["created_at"] and item["updated_at"] >= item["created_at"]


def columns_items(found: dict, name: str) -> list[dict]:
    (column,) = (c for c in found["columns"] if c["name"] == name)
    return column["items"]


# Paging ------------------------------------------------------------------------------------------------------------


async def column_pages(client, agent: dict, role: str, name: str, cursor: str | None, limit: int) -> list[list[int]]:
    pages = []
    while cursor is not None:
        response = await client.get(
            f"{BOARD}/{name}",
            params={"role": role, "cursor": cursor, "limit": limit},
            headers=bearer(agent["api_key"]),
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["meta"]["count"] == len(body["data"]) and body["meta"]["has_more"] == (
            body["meta"]["cursor"] is not None
        )
        pages.append([item["id"] for item in body["data"]])
        cursor = body["meta"]["cursor"]
    return pages


async def test_a_column_pages_through_exactly_from_the_boards_cursor(client, poster):
    posted = [(await post_task(client, poster, f"Task number {n}"))["id"] for n in range(7)]
    found = await board(client, poster, "poster", limit=3)
    (open_column,) = (c for c in found["columns"] if c["name"] == "open")
    assert open_column["count"] == 7 and open_column["has_more"] is True
    first = [item["id"] for item in open_column["items"]]
    assert first == sorted(posted, reverse=True)[:3]
    for other in found["columns"]:
        if other["name"] != "open":
            assert (other["count"], other["items"], other["has_more"], other["cursor"]) == (0, [], False, None)
    rest = await column_pages(client, poster, "poster", "open", open_column["cursor"], 3)
    assert rest == [sorted(posted, reverse=True)[3:6], sorted(posted, reverse=True)[6:]]


async def test_a_column_read_on_its_own_starts_with_the_boards_first_items(client, poster, worker):
    for n in range(3):
        await bid(client, worker, (await post_task(client, poster, f"Bid on number {n}"))["id"])
    response = await client.get(
        f"{BOARD}/bidding", params={"role": "worker", "limit": 2}, headers=bearer(worker["api_key"])
    )
    assert response.status_code == 200, response.text
    body = response.json()
    found = await board(client, worker, "worker", limit=2)
    assert [item["id"] for item in body["data"]] == columns(found)["bidding"]
    assert body["data"] == columns_items(found, "bidding")
    assert body["meta"]["has_more"] is True
    rest = await column_pages(client, worker, "worker", "bidding", body["meta"]["cursor"], 2)
    assert len(rest) == 1 and len(rest[0]) == 1


async def test_a_tasks_move_between_columns_leaves_no_hole_in_the_page_after(client, poster, worker):
    posted = [await post_task(client, poster, f"Mover {n}") for n in range(4)]
    found = await board(client, poster, "poster", limit=2)
    cursor = next(c["cursor"] for c in found["columns"] if c["name"] == "open")
    # The newest task leaves the open column; the keyset page after the first two is still the next two.
    newest = posted[-1]
    claim = await bid(client, worker, newest["id"])
    await call(client, poster, f"{TASKS}/{newest['id']}/claims/{claim['id']}/accept")
    assert await column_pages(client, poster, "poster", "open", cursor, 2) == [[posted[1]["id"], posted[0]["id"]]]


async def test_a_column_cursor_belongs_to_its_column_role_and_caller(client, poster, worker):
    for n in range(2):
        await post_task(client, poster, f"Cursor test {n}")
    found = await board(client, poster, "poster", limit=1)
    cursor = next(c["cursor"] for c in found["columns"] if c["name"] == "open")
    sibling = await add_agent(client, poster["operator"], "sibling")
    for agent, name, role in ((poster, "done", "poster"), (poster, "in_review", "worker"), (sibling, "open", "poster")):
        response = await client.get(
            f"{BOARD}/{name}", params={"role": role, "cursor": cursor}, headers=bearer(agent["api_key"])
        )
        assert response.status_code == 400 and error_code(response) == "INVALID_PARAMETER", (name, role)
        assert "another list" in response.json()["error"]["message"]


# Parameters --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("params", [{}, {"role": "boss"}, {"role": "Worker"}, {"role": ""}])
async def test_a_missing_or_unknown_role_is_400_with_the_valid_roles(client, worker, params):
    for path in (BOARD, f"{BOARD}/done"):
        response = await client.get(path, params=params, headers=bearer(worker["api_key"]))
        assert response.status_code == 400 and error_code(response) == "INVALID_PARAMETER", path
        assert "poster, worker" in response.json()["error"]["suggestion"]


@pytest.mark.parametrize(
    ("role", "name", "valid"),
    [
        ("worker", "backlog", "bidding, doing, in_review, done"),
        ("worker", "open", "bidding, doing, in_review, done"),  # the poster board's
        ("poster", "bidding", "open, in_progress, in_review, done, closed"),  # the worker board's
        ("poster", "DONE", "open, in_progress, in_review, done, closed"),
    ],
)
async def test_an_unknown_column_is_400_with_the_roles_columns(client, worker, role, name, valid):
    response = await client.get(f"{BOARD}/{name}", params={"role": role}, headers=bearer(worker["api_key"]))
    assert response.status_code == 400 and error_code(response) == "INVALID_PARAMETER"
    assert name in response.json()["error"]["message"]
    assert valid in response.json()["error"]["suggestion"]


@pytest.mark.parametrize("limit", [0, 101, -1])
async def test_a_limit_outside_1_to_100_is_400(client, worker, limit):
    for path in (BOARD, f"{BOARD}/done"):
        response = await client.get(path, params={"role": "worker", "limit": limit}, headers=bearer(worker["api_key"]))
        assert response.status_code == 400 and error_code(response) == "INVALID_PARAMETER"


async def test_limits_1_and_100_are_accepted_and_20_is_the_default(client, poster):
    for _ in range(21):
        await post_task(client, poster)
    assert len(columns(await board(client, poster, "poster"))["open"]) == 20
    assert len(columns(await board(client, poster, "poster", limit=1))["open"]) == 1
    assert len(columns(await board(client, poster, "poster", limit=100))["open"]) == 21


async def test_the_board_needs_an_agent_key(client, operator):
    for path in (BOARD, f"{BOARD}/done"):
        response = await client.get(path, params={"role": "poster"}, headers=bearer(operator["api_key"]))
        assert response.status_code == 401 and error_code(response) == "UNAUTHORIZED"
        assert (await client.get(path, params={"role": "poster"})).status_code == 401


async def test_the_board_routes_leave_the_agent_routes_as_they_were(client, poster, worker):
    # /agents/me/board is a literal path below /agents/me, never an agent id; /agents/{agent_id} still reads ids.
    response = await client.get(f"/api/v1/agents/{poster['id']}", headers=bearer(worker["api_key"]))
    assert response.status_code == 200 and response.json()["data"]["id"] == poster["id"]
    response = await client.get("/api/v1/agents/me", headers=bearer(worker["api_key"]))
    assert response.status_code == 200 and response.json()["data"]["id"] == worker["id"]
    response = await client.get("/api/v1/agents/board", headers=bearer(worker["api_key"]))
    assert response.status_code == 400 and error_code(response) == "INVALID_PARAMETER"
