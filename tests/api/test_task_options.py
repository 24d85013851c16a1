"""Contract tests for the seed systems' task fields (issue 13): priority and tags (filters, the priority sort),
metadata (its 64 KB limit, who reads it, its echo in the poster's events), expiry's validation, leases' field, and
directed tasks (who may be named, and that the task does not exist for anyone else on any read path).

Instant claims, expiry, leases (tests/api/test_task_life.py), callbacks and the conversation have files of their own.
"""

from __future__ import annotations

import json

import pytest

from app.repo import deliveries as delivery_rows
from app.repo.connections import ConnectionLease, SharedConnectionSource
from app.services import event_stream
from app.services.uow import UnitOfWork, Viewer
from domain.errors import DomainError
from tests.api.test_outbox_events import all_readable, mark, pause, recipients, register_webhook, since
from tests.api.test_tasks import TASK, TASKS, error_code, get_list, grant, post_task, walk, wallet
from tests.conftest import add_agent, bearer, new_agent

FUTURE = "2999-01-01T00:00:00Z"


def viewed_by(conn, agent: dict) -> UnitOfWork:
    """A unit of work on the test's connection, reading as `agent`."""
    return UnitOfWork(
        ConnectionLease(SharedConnectionSource(conn)), viewer=Viewer(agent["id"], agent["operator"]["id"])
    )


# A budget band no other test posts in, so browse lists here see these tests' tasks only.
BAND = 613_000


def band(**params) -> dict:
    return {"min_budget": BAND, "max_budget": BAND + 1000, **params}


async def refused(client, agent: dict, status: int, code: str, **fields) -> dict:
    """POST /tasks refused with `status` and `code`, and nothing moved."""
    before = await wallet(client, agent)
    response = await client.post(TASKS, json={**TASK, **fields}, headers=bearer(agent["api_key"]))
    assert response.status_code == status, response.text
    assert error_code(response) == code
    assert await wallet(client, agent) == before
    return response.json()["error"]


# The fields, as posted and read ------------------------------------------------------------------------------------


async def test_every_new_field_is_returned_by_the_post_and_by_get(client, poster):
    task = await post_task(
        client,
        poster,
        claim_mode="instant",
        priority="urgent",
        tags=["Python", "pdf", "python"],
        metadata={"order": 7, "nested": {"a": [1, 2]}},
        expires_at=FUTURE,
        assignment_hours=12,
    )
    read = (await client.get(f"{TASKS}/{task['id']}", headers=bearer(poster["api_key"]))).json()["data"]
    for view in (task, read):
        assert view["claim_mode"] == "instant"
        assert view["priority"] == "urgent"
        assert view["tags"] == ["python", "pdf"]  # lower-cased, each once, in the order given
        assert view["metadata"] == {"order": 7, "nested": {"a": [1, 2]}}
        assert view["expires_at"] == "2999-01-01T00:00:00Z"
        assert view["assignment_hours"] == 12
        assert view["lease_expires_at"] is None
        assert view["eligible_agent_ids"] is None
        assert view["callback_url"] is None


async def test_the_defaults_are_todays_behaviour(client, poster):
    task = await post_task(client, poster)
    assert (task["claim_mode"], task["priority"], task["tags"], task["metadata"], task["expires_at"]) == (
        "bid",
        "normal",
        [],
        None,
        None,
    )
    assert task["assignment_hours"] is None


async def test_medium_is_read_as_normal(client, poster):
    assert (await post_task(client, poster, priority="medium"))["priority"] == "normal"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("claim_mode", "auction"),
        ("priority", "critical"),
        ("tags", ["ok"] * 11),
        ("tags", ["has space"]),
        ("tags", ["x" * 33]),
        ("tags", [""]),
        ("tags", ["ünïcode"]),
        ("tags", "python"),
        ("metadata", ["not", "an", "object"]),
        ("metadata", "text"),
        ("assignment_hours", 0),
        ("assignment_hours", 721),
        ("eligible_agent_ids", []),
        ("eligible_agent_ids", [0]),
        ("eligible_agent_ids", list(range(1, 22))),
        ("expires_at", "2999-01-01T00:00:00"),  # no timezone
        ("callback_url", "short"),
    ],
)
async def test_an_invalid_option_is_422_validation_error_and_moves_nothing(client, poster, field, value):
    error = await refused(client, poster, 422, "VALIDATION_ERROR", **{field: value})
    assert field in error["message"]


async def test_ten_tags_of_32_characters_are_accepted(client, poster):
    tags = [f"{i}" + "t" * 31 for i in range(10)]
    assert (await post_task(client, poster, tags=tags))["tags"] == tags


async def test_an_expiry_in_the_past_is_422_invalid_expiry(client, poster):
    error = await refused(client, poster, 422, "INVALID_EXPIRY", expires_at="2000-01-01T00:00:00Z")
    assert "expires_at" in error["message"]


# Metadata --------------------------------------------------------------------------------------------------------


def metadata_of_size(size: int) -> dict:
    """An object whose compact JSON is exactly `size` bytes: {"blob":"xxx..."} is 11 bytes plus the text."""
    value = {"blob": "x" * (size - 11)}
    assert len(json.dumps(value, separators=(",", ":")).encode()) == size
    return value


async def test_metadata_of_64_kb_is_accepted_and_one_byte_more_is_413(client, poster):
    exactly = metadata_of_size(65_536)
    task = await post_task(client, poster, metadata=exactly)
    assert task["metadata"] == exactly
    error = await refused(client, poster, 413, "METADATA_TOO_LARGE", metadata=metadata_of_size(65_537))
    assert "65537" in error["message"] and "65536" in error["message"]


async def test_metadata_size_counts_bytes_not_characters(client, poster):
    # 32,763 two-byte characters: 65,537 bytes, fewer than 65,536 characters.
    await refused(client, poster, 413, "METADATA_TOO_LARGE", metadata={"blob": "é" * 32_763})


async def test_metadata_and_the_posters_fields_are_shown_to_the_posters_operator_only(client, admin_key, poster):
    sibling = await add_agent(client, poster["operator"], "sibling")
    stranger = await new_agent(client, admin_key, "stranger")
    task = await post_task(client, poster, metadata={"k": "v"}, tags=["seen"])
    path = f"{TASKS}/{task['id']}"
    mine = (await client.get(path, headers=bearer(sibling["api_key"]))).json()["data"]
    theirs = (await client.get(path, headers=bearer(stranger["api_key"]))).json()["data"]
    assert mine["metadata"] == {"k": "v"}
    assert theirs["metadata"] is None and theirs["tags"] == ["seen"]
    listed = await get_list(client, stranger, TASKS, tags="seen", **band())
    assert all("metadata" not in item for item in listed["data"])  # lists never carry it


async def test_metadata_is_echoed_in_the_posters_events_and_no_one_elses(client, conn, admin_key, poster, worker):
    before = await mark(conn)
    task = await post_task(client, poster, metadata={"ref": "po-17"})
    response = await client.post(
        f"{TASKS}/{task['id']}/claims", json={"proposed_credits": 90}, headers=bearer(worker["api_key"])
    )
    assert response.status_code == 201, response.text
    claim = response.json()["data"]
    accepted = await client.post(f"{TASKS}/{task['id']}/claims/{claim['id']}/accept", headers=bearer(poster["api_key"]))
    assert accepted.status_code == 200, accepted.text
    rows = await since(conn, before, task_id=task["id"])
    to_poster = [r for r in rows if r.agent_id == poster["id"]]
    others = [r for r in rows if r.agent_id != poster["id"]]
    assert {r.type for r in to_poster} >= {"task.created", "claim.created", "task.status"}
    assert [r for r in to_poster if r.data.get("metadata") != {"ref": "po-17"}] == []
    assert others and all("metadata" not in r.data for r in others)


# Priority and tags ------------------------------------------------------------------------------------------------


async def test_browse_and_search_filter_on_priority_and_on_all_tags(client, admin_key, poster):
    await grant(client, admin_key, poster, 10 * BAND)
    urgent = await post_task(client, poster, budget_credits=BAND, priority="urgent", tags=["alpha", "beta"])
    low = await post_task(client, poster, budget_credits=BAND, priority="low", tags=["alpha"])
    await post_task(client, poster, budget_credits=BAND, tags=["gamma"])

    def ids(body: dict) -> list[int]:
        return [t["id"] for t in body["data"]]

    assert ids(await get_list(client, poster, TASKS, priority="urgent", **band())) == [urgent["id"]]
    assert ids(await get_list(client, poster, TASKS, tags="alpha", **band())) == [low["id"], urgent["id"]]
    assert ids(await get_list(client, poster, TASKS, tags="ALPHA, beta", **band())) == [urgent["id"]]
    assert ids(await get_list(client, poster, TASKS, tags="alpha,gamma", **band())) == []
    assert ids(await get_list(client, poster, TASKS, priority="medium", tags="gamma", **band()))
    found = await get_list(client, poster, f"{TASKS}/search", q="invoices", tags="alpha", priority="low", **band())
    assert ids(found) == [low["id"]]


@pytest.mark.parametrize(
    ("param", "value"),
    [("priority", "critical"), ("tags", "bad tag"), ("tags", ",".join(f"t{i}" for i in range(11)))],
)
async def test_a_bad_priority_or_tags_filter_is_400_invalid_parameter(client, poster, param, value):
    for path in (TASKS, f"{TASKS}/search"):
        response = await client.get(path, params={"q": "x", param: value}, headers=bearer(poster["api_key"]))
        assert response.status_code == 400, response.text
        assert error_code(response) == "INVALID_PARAMETER"


async def test_the_priority_sort_is_urgent_first_then_newest_and_its_pages_are_exact(client, admin_key, poster):
    await grant(client, admin_key, poster, 20 * BAND)
    priorities = ["low", "urgent", "normal", "high", "urgent", "low", "normal", "high", "urgent", "normal"]
    posted = [await post_task(client, poster, budget_credits=BAND + 1, priority=p) for p in priorities]
    rank = {"low": 0, "normal": 1, "high": 2, "urgent": 3}
    expected = [t["id"] for t in sorted(posted, key=lambda t: (rank[t["priority"]], t["id"]), reverse=True)]
    for limit in (1, 3, 4, 10):
        items = await walk(client, poster, TASKS, sort="priority", limit=limit, **band())
        assert [t["id"] for t in items] == expected, limit


async def test_a_priority_cursor_is_refused_by_another_sort(client, admin_key, poster):
    await grant(client, admin_key, poster, 5 * BAND)
    for _ in range(2):
        await post_task(client, poster, budget_credits=BAND + 2)
    first = await get_list(client, poster, TASKS, sort="priority", limit=1, **band())
    response = await client.get(
        TASKS,
        params={"sort": "newest", "limit": 1, "cursor": first["meta"]["cursor"], **band()},
        headers=bearer(poster["api_key"]),
    )
    assert response.status_code == 400 and error_code(response) == "INVALID_PARAMETER"


async def test_tags_feed_the_capability_match(client, conn, admin_key, poster):
    matching = await new_agent(client, admin_key, "tagged", capabilities=["zeugmatics"])
    before = await mark(conn)
    await post_task(client, poster, tags=["zeugmatics"])
    assert set(recipients(await since(conn, before), "task.new_match")) == {matching["id"]}


# Directed tasks ---------------------------------------------------------------------------------------------------


async def test_a_directed_task_must_name_active_agents_of_other_operators(client, admin_key, poster, worker):
    sibling = await add_agent(client, poster["operator"], "sibling")
    paused = await new_agent(client, admin_key, "paused")
    await pause(client, paused)
    for bad in (sibling["id"], paused["id"], poster["id"], 9_000_000_000):
        error = await refused(client, poster, 422, "VALIDATION_ERROR", eligible_agent_ids=[worker["id"], bad])
        assert str(bad) in error["message"]
    duplicate = await refused(client, poster, 422, "VALIDATION_ERROR", eligible_agent_ids=[worker["id"]] * 2)
    assert "eligible_agent_ids" in duplicate["message"]


async def test_a_directed_task_is_shown_with_its_agents_to_the_poster_only(client, admin_key, poster, worker):
    other = await new_agent(client, admin_key, "other")
    task = await post_task(client, poster, eligible_agent_ids=[worker["id"], other["id"]])
    assert task["eligible_agent_ids"] == [worker["id"], other["id"]]
    seen = (await client.get(f"{TASKS}/{task['id']}", headers=bearer(worker["api_key"]))).json()["data"]
    assert seen["id"] == task["id"] and seen["eligible_agent_ids"] is None


async def test_a_directed_task_does_not_exist_for_anyone_else_on_any_read_path(client, conn, admin_key, poster, worker):
    await grant(client, admin_key, poster, 10 * BAND)
    word = "quodlibetarian"
    stranger = await new_agent(client, admin_key, "stranger", capabilities=[word])
    eligible = await new_agent(client, admin_key, "eligible", capabilities=["cooking"])
    sibling = await add_agent(client, poster["operator"], "sibling")
    stranger_hook = await register_webhook(client, stranger, ["task.new_match", "task.created"])
    eligible_hook = await register_webhook(client, eligible, ["task.new_match"])
    before = await mark(conn)
    task = await post_task(
        client, poster, title=f"Directed {word} work", budget_credits=BAND + 3, eligible_agent_ids=[eligible["id"]]
    )
    path = f"{TASKS}/{task['id']}"

    async def status(agent: dict, url: str, **params) -> int:
        response = await client.get(url, params=params, headers=bearer(agent["api_key"]))
        if response.status_code == 404:
            assert error_code(response) == "TASK_NOT_FOUND", url
        return response.status_code

    for sub in ("", "/claims", "/deliverables"):
        assert await status(stranger, path + sub) == 404, sub
    # The task's event stream answers from its snapshot, read as the caller (in-process tests run no streams).
    with pytest.raises(DomainError) as invisible:
        await event_stream.task_snapshot(viewed_by(conn, stranger), task["id"])
    assert invisible.value.code == "TASK_NOT_FOUND"
    assert (await event_stream.task_snapshot(viewed_by(conn, eligible), task["id"])).task.id == task["id"]
    assert await status(eligible, path) == 200
    assert await status(eligible, path + "/claims") == 200
    assert await status(sibling, path + "/claims") == 200

    async def listed(agent: dict, url: str, **params) -> list[int]:
        body = await get_list(client, agent, url, **params, **band())
        assert body["meta"]["count"] == len(body["data"])
        return [t["id"] for t in body["data"]]

    for sort in ("newest", "priority", "budget_high"):
        assert await listed(stranger, TASKS, sort=sort) == []
        assert await listed(eligible, TASKS, sort=sort) == [task["id"]]
        assert await listed(sibling, TASKS, sort=sort) == [task["id"]]
    assert await listed(stranger, f"{TASKS}/search", q=word) == []
    assert await listed(eligible, f"{TASKS}/search", q=word) == [task["id"]]

    # Events: the eligible agent is told by name; no shared match is written, so no one else hears of it.
    rows = await since(conn, before)
    matches = [r for r in rows if r.type == "task.new_match"]
    assert [(r.agent_id, r.data["reason"]) for r in matches] == [(eligible["id"], "directed")]
    assert not [r for r in rows if r.agent_id == stranger["id"]]
    await all_readable(conn)
    await delivery_rows.fan_out_matches(conn, limit=1000)
    cursor = await conn.execute(
        "SELECT w.id FROM webhook_delivery d JOIN webhook w ON w.id = d.webhook_id JOIN event e ON e.id = d.event_id"
        " WHERE e.task_id = %s",
        (task["id"],),
    )
    assert [row[0] for row in await cursor.fetchall()] == [eligible_hook["id"]]
    assert stranger_hook["id"] != eligible_hook["id"]


async def test_a_stranger_cannot_bid_on_a_directed_task(client, admin_key, poster, worker):
    stranger = await new_agent(client, admin_key, "stranger")
    task = await post_task(client, poster, eligible_agent_ids=[worker["id"]])
    claims = f"{TASKS}/{task['id']}/claims"
    response = await client.post(claims, json={"proposed_credits": 50}, headers=bearer(stranger["api_key"]))
    assert response.status_code == 404 and error_code(response) == "TASK_NOT_FOUND"
    response = await client.post(claims, json={"proposed_credits": 50}, headers=bearer(worker["api_key"]))
    assert response.status_code == 201, response.text
