"""Keyset cursors are exact for every sort and for search: pages concatenate to the ordered list with no skip
and no duplicate, also while tasks are being inserted between pages."""

import random

import pytest

from tests.conftest import bearer

# A budget band of its own, so rows other tests committed to the shared database never enter these lists.
LOW, HIGH = 91_000, 91_040
WORD = "zyqwarble"


@pytest.fixture
async def poster(client, admin_key):
    op = (await client.post("/api/v1/admin/operators", json={"name": "cursor"}, headers=bearer(admin_key))).json()
    await client.post(
        f"/api/v1/admin/operators/{op['data']['id']}/credits",
        json={"amount": 10_000_000, "reason": "cursor tests"},
        headers=bearer(admin_key),
    )
    agent = await client.post(
        "/api/v1/operator/agents",
        json={"name": "cursor-bot", "description": "posts"},
        headers=bearer(op["data"]["api_key"]),
    )
    return agent.json()["data"]


async def post(client, poster, budget, title="Cursor test task"):
    response = await client.post(
        "/api/v1/tasks",
        json={
            "title": f"{title} {WORD}",
            "description": f"A task for the cursor tests about {WORD}.",
            "budget_credits": budget,
        },
        headers=bearer(poster["api_key"]),
    )
    assert response.status_code == 201, response.text
    return response.json()["data"]


def order_key(sort):
    return {
        "newest": lambda t: -t["id"],
        "oldest": lambda t: t["id"],
        "budget_high": lambda t: (-t["budget_credits"], -t["id"]),
        "budget_low": lambda t: (t["budget_credits"], t["id"]),
    }[sort]


@pytest.mark.parametrize("sort", ["newest", "oldest", "budget_high", "budget_low"])
async def test_pages_concatenate_exactly_while_tasks_are_inserted(client, poster, sort):
    chooser = random.Random(sort)
    before = [await post(client, poster, chooser.choice(range(LOW, HIGH, 5))) for _ in range(23)]  # many ties
    seen, cursor, inserted = [], None, []
    while True:
        params = {
            "sort": sort,
            "limit": 4,
            "min_budget": LOW,
            "max_budget": HIGH,
            **({"cursor": cursor} if cursor else {}),
        }
        body = (await client.get("/api/v1/tasks", params=params, headers=bearer(poster["api_key"]))).json()
        seen += body["data"]
        assert body["meta"]["count"] == len(body["data"])
        cursor = body["meta"]["cursor"]
        assert body["meta"]["has_more"] is (cursor is not None)
        if cursor is None:
            break
        inserted.append(await post(client, poster, chooser.choice(range(LOW, HIGH, 5))))
    ids = [t["id"] for t in seen]
    assert len(ids) == len(set(ids)), "a task appeared twice"
    assert {t["id"] for t in before} <= set(ids), "a task that existed from the start was skipped"
    assert seen == sorted(seen, key=order_key(sort)), "pages are not in sort order"
    assert set(ids) <= {t["id"] for t in before + inserted}


async def test_search_pages_concatenate_exactly_in_rank_order(client, poster):
    # Titles rank above descriptions: half the tasks carry the word twice in the title.
    for n in range(14):
        await post(client, poster, LOW + n, title=f"Cursor {WORD} {WORD}" if n % 2 else "Cursor plain title")
    seen, cursor = [], None
    while True:
        params = {
            "q": WORD,
            "limit": 3,
            "min_budget": LOW,
            "max_budget": HIGH,
            **({"cursor": cursor} if cursor else {}),
        }
        body = (await client.get("/api/v1/tasks/search", params=params, headers=bearer(poster["api_key"]))).json()
        seen += body["data"]
        cursor = body["meta"]["cursor"]
        if cursor is None:
            break
        await post(client, poster, HIGH - 1)  # inserted between pages
    ids = [t["id"] for t in seen]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 14
    ranks = [(t["relevance"], t["id"]) for t in seen]
    assert ranks == sorted(ranks, reverse=True)
    strong = [t for t in seen if t["title"].count(WORD) == 3]
    assert min(t["relevance"] for t in strong) > max(t["relevance"] for t in seen if t["title"].count(WORD) == 1)


async def test_a_cursor_from_another_sort_is_refused(client, poster):
    for n in range(3):
        await post(client, poster, LOW + n)
    first = (
        await client.get(
            "/api/v1/tasks", params={"sort": "newest", "limit": 1, "min_budget": LOW}, headers=bearer(poster["api_key"])
        )
    ).json()
    refused = await client.get(
        "/api/v1/tasks",
        params={"sort": "budget_high", "cursor": first["meta"]["cursor"]},
        headers=bearer(poster["api_key"]),
    )
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "INVALID_PARAMETER"


# Issue 11: cursors are signed and bound to their list (path, filters and caller), so they cannot be moved or made.


async def first_cursor(client, poster, path="/api/v1/tasks", **params) -> str:
    for n in range(3):
        await post(client, poster, LOW + n)
    body = (await client.get(path, params={"limit": 1, **params}, headers=bearer(poster["api_key"]))).json()
    assert body["meta"]["cursor"], body
    return body["meta"]["cursor"]


def restart_required(response, why: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "INVALID_PARAMETER"
    assert why in error["message"]
    assert "first page" in error["suggestion"]


async def test_a_cursor_from_another_list_is_refused(client, poster):
    cursor = await first_cursor(client, poster, min_budget=LOW)
    for path in ("/api/v1/agents/me/claims", "/api/v1/agents/me/tasks", "/api/v1/webhooks"):
        response = await client.get(path, params={"cursor": cursor}, headers=bearer(poster["api_key"]))
        restart_required(response, "belongs to another list")


async def test_a_cursor_with_other_filters_is_refused(client, poster):
    cursor = await first_cursor(client, poster, min_budget=LOW)
    response = await client.get(
        "/api/v1/tasks", params={"min_budget": LOW + 1, "cursor": cursor}, headers=bearer(poster["api_key"])
    )
    restart_required(response, "belongs to another list")


async def test_the_same_list_takes_its_cursor_whatever_the_page_size(client, poster):
    cursor = await first_cursor(client, poster, min_budget=LOW, max_budget=HIGH)
    response = await client.get(
        "/api/v1/tasks",
        params={"min_budget": LOW, "max_budget": HIGH, "limit": 2, "cursor": cursor},
        headers=bearer(poster["api_key"]),
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) == 2


async def test_another_callers_cursor_is_refused(client, poster, agent):
    cursor = await first_cursor(client, poster, min_budget=LOW)
    response = await client.get(
        "/api/v1/tasks", params={"min_budget": LOW, "cursor": cursor}, headers=bearer(agent["api_key"])
    )
    restart_required(response, "belongs to another list")


async def test_a_hand_made_or_edited_cursor_is_refused(client, poster):
    import base64
    import json

    cursor = await first_cursor(client, poster, min_budget=LOW)
    payload, _, tag = cursor.partition(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    decoded["id"] += 1000
    edited = base64.urlsafe_b64encode(json.dumps(decoded).encode()).decode().rstrip("=")
    hand_made = base64.urlsafe_b64encode(b'{"s":"newest","id":2,"v":1}').decode().rstrip("=")
    flipped = cursor[:-1] + ("A" if cursor[-1] != "A" else "B")
    for bad in (f"{edited}.{tag}", hand_made, flipped, "not-a-cursor", ".", cursor + "x"):
        response = await client.get(
            "/api/v1/tasks", params={"min_budget": LOW, "cursor": bad}, headers=bearer(poster["api_key"])
        )
        restart_required(response, "not issued by this server, or it was altered")
