"""Contract tests for tasks: post (with escrow), read, browse (keyset pages, four sorts), search (ranked).

Every test runs in-process on a rolled-back transaction. Browse and search tests scope their lists with
budget ranges or made-up words no other test uses, so rows committed elsewhere cannot leak into them.
"""

from __future__ import annotations

import pytest

from tests.conftest import add_agent, bearer, new_agent

TASKS = "/api/v1/tasks"
TASK = {
    "title": "Parse invoices",
    "description": "Extract totals from a batch of PDF invoices.",
    "budget_credits": 100,
}
FUTURE = "2999-01-01T00:00:00Z"
PAST = "2000-01-01T00:00:00Z"


async def grant(client, admin_key: str, agent: dict, amount: int) -> None:
    path = f"/api/v1/admin/operators/{agent['operator']['id']}/credits"
    response = await client.post(path, json={"amount": amount, "reason": "test funds"}, headers=bearer(admin_key))
    assert response.status_code == 201, response.text


async def post_task(client, agent: dict, **fields) -> dict:
    response = await client.post(TASKS, json={**TASK, **fields}, headers=bearer(agent["api_key"]))
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def wallet(client, agent: dict) -> tuple[int, int]:
    """(credit_balance, escrow_held) of the agent's operator."""
    response = await client.get("/api/v1/agents/me/credits", headers=bearer(agent["api_key"]))
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    return data["credit_balance"], data["escrow_held"]


async def bid(client, agent: dict, task_id: int, credits: int) -> dict:
    response = await client.post(
        f"{TASKS}/{task_id}/claims", json={"proposed_credits": credits}, headers=bearer(agent["api_key"])
    )
    assert response.status_code == 201, response.text
    return response.json()["data"]


def error_code(response) -> str:
    body = response.json()
    assert body["ok"] is False, response.text
    return body["error"]["code"]


async def get_list(client, agent: dict, path: str, **params) -> dict:
    response = await client.get(path, params=params, headers=bearer(agent["api_key"]))
    assert response.status_code == 200, response.text
    return response.json()


async def walk(client, agent: dict, path: str, **params) -> list[dict]:
    """Every item of a paginated list, following meta.cursor; checks no page is empty and the last has no cursor."""
    items, cursor = [], None
    while True:
        body = await get_list(client, agent, path, **params, **({"cursor": cursor} if cursor else {}))
        assert body["meta"]["count"] == len(body["data"])
        assert body["meta"]["has_more"] is (body["meta"]["cursor"] is not None)
        items += body["data"]
        cursor = body["meta"]["cursor"]
        if cursor is None:
            return items
        assert body["data"], "a page with a cursor must not be empty"


async def test_posting_returns_201_with_the_task_fields(client, poster):
    fields = {
        **TASK,
        "category_id": 1,
        "requirements": "CSV output",
        "deadline": FUTURE,
        "max_revisions": 3,
    }
    response = await client.post(TASKS, json=fields, headers=bearer(poster["api_key"]))
    assert response.status_code == 201, response.text
    task = response.json()["data"]
    assert isinstance(task["id"], int)
    assert task["title"] == TASK["title"] and task["description"] == TASK["description"]
    assert task["budget_credits"] == 100 and task["requirements"] == "CSV output"
    assert task["category"] == {"id": 1, "name": "Coding", "slug": "coding"}
    assert task["status"] == "open"
    assert task["poster"] == {"id": poster["operator"]["id"], "name": "poster"}
    assert task["deadline"].startswith("2999-01-01T00:00:00")
    assert task["max_revisions"] == 3
    assert task["claims_count"] == 0 and task["deliverables_count"] == 0
    assert task["claimed_by_agent_id"] is None and task["price_credits"] is None
    assert task["auto_review_enabled"] is False
    assert task["created_at"]


async def test_posting_defaults_max_revisions_to_2_and_optional_fields_to_null(client, poster):
    task = await post_task(client, poster)
    assert task["max_revisions"] == 2
    assert task["category"] is None and task["requirements"] is None and task["deadline"] is None


async def test_posting_moves_the_budget_into_escrow(client, poster):
    assert await wallet(client, poster) == (600, 0)
    await post_task(client, poster, budget_credits=150)
    await post_task(client, poster, budget_credits=50)
    assert await wallet(client, poster) == (400, 200)


async def test_escrow_is_shared_by_the_operators_agents(client, poster):
    sibling = await add_agent(client, poster["operator"], "sibling")
    await post_task(client, sibling, budget_credits=120)
    assert await wallet(client, poster) == (580, 120)
    assert await wallet(client, sibling) == (580, 120)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("title", "abcd"),
        ("title", "x" * 201),
        ("description", "d" * 19),
        ("description", "d" * 5001),
        ("budget_credits", 9),
        ("budget_credits", 0),
        ("budget_credits", "100"),
        ("requirements", "r" * 5001),
        ("max_revisions", -1),
        ("max_revisions", 6),
        ("category_id", 0),
        ("deadline", "tomorrow"),
        ("unknown_field", 1),
    ],
)
async def test_posting_an_invalid_field_is_422_validation_error_and_moves_nothing(client, poster, field, value):
    response = await client.post(TASKS, json={**TASK, field: value}, headers=bearer(poster["api_key"]))
    assert response.status_code == 422, response.text
    assert error_code(response) == "VALIDATION_ERROR"
    assert await wallet(client, poster) == (600, 0)


@pytest.mark.parametrize("missing", ["title", "description", "budget_credits"])
async def test_posting_without_a_required_field_is_422(client, poster, missing):
    body = {k: v for k, v in TASK.items() if k != missing}
    response = await client.post(TASKS, json=body, headers=bearer(poster["api_key"]))
    assert response.status_code == 422 and error_code(response) == "VALIDATION_ERROR"


async def test_posting_accepts_the_boundary_lengths_and_values(client, poster):
    task = await post_task(
        client,
        poster,
        title="t" * 5,
        description="d" * 20,
        budget_credits=10,
        requirements="r" * 5000,
        max_revisions=0,
    )
    assert task["max_revisions"] == 0 and task["budget_credits"] == 10
    long = await post_task(client, poster, title="t" * 200, description="d" * 5000, max_revisions=5)
    assert len(long["title"]) == 200 and long["max_revisions"] == 5


async def test_posting_a_deadline_in_the_past_is_422_invalid_deadline(client, poster):
    response = await client.post(TASKS, json={**TASK, "deadline": PAST}, headers=bearer(poster["api_key"]))
    assert response.status_code == 422 and error_code(response) == "INVALID_DEADLINE"
    assert await wallet(client, poster) == (600, 0)


async def test_posting_to_an_unknown_category_is_404_category_not_found(client, poster):
    response = await client.post(TASKS, json={**TASK, "category_id": 9999}, headers=bearer(poster["api_key"]))
    assert response.status_code == 404 and error_code(response) == "CATEGORY_NOT_FOUND"
    assert await wallet(client, poster) == (600, 0)


async def test_a_past_deadline_is_reported_before_an_unknown_category(client, poster):
    body = {**TASK, "deadline": PAST, "category_id": 9999}
    response = await client.post(TASKS, json=body, headers=bearer(poster["api_key"]))
    assert error_code(response) == "INVALID_DEADLINE"


async def test_posting_beyond_the_wallet_is_422_insufficient_credits_and_moves_nothing(client, poster):
    await post_task(client, poster, budget_credits=100)
    response = await client.post(TASKS, json={**TASK, "budget_credits": 501}, headers=bearer(poster["api_key"]))
    assert response.status_code == 422 and error_code(response) == "INSUFFICIENT_CREDITS"
    assert await wallet(client, poster) == (500, 100)
    mine = await walk(client, poster, TASKS, min_budget=501, max_budget=501)
    assert [t for t in mine if t["poster"]["id"] == poster["operator"]["id"]] == []


async def test_posting_the_whole_wallet_is_allowed(client, poster):
    await post_task(client, poster, budget_credits=600)
    assert await wallet(client, poster) == (0, 600)


async def test_posting_needs_an_agent_key(client, poster):
    anonymous = await client.post(TASKS, json=TASK)
    assert anonymous.status_code == 401
    as_operator = await client.post(TASKS, json=TASK, headers=bearer(poster["operator"]["api_key"]))
    assert as_operator.status_code in (401, 403)


async def test_posting_replayed_with_an_idempotency_key_has_one_effect(client, poster):
    headers = {**bearer(poster["api_key"]), "Idempotency-Key": "post-task-once"}
    first = await client.post(TASKS, json=TASK, headers=headers)
    again = await client.post(TASKS, json=TASK, headers=headers)
    assert first.status_code == again.status_code == 201
    assert "idempotency-replayed" not in first.headers
    assert again.headers["idempotency-replayed"] == "true"
    assert again.json()["data"] == first.json()["data"]
    assert await wallet(client, poster) == (500, 100)


async def test_reusing_an_idempotency_key_for_another_task_is_422_mismatch(client, poster):
    headers = {**bearer(poster["api_key"]), "Idempotency-Key": "post-task-mismatch"}
    assert (await client.post(TASKS, json=TASK, headers=headers)).status_code == 201
    other = await client.post(TASKS, json={**TASK, "budget_credits": 11}, headers=headers)
    assert other.status_code == 422 and error_code(other) == "IDEMPOTENCY_KEY_MISMATCH"
    assert await wallet(client, poster) == (500, 100)


@pytest.mark.parametrize("deadline", ["2999-01-01T00:00:00", "2000-01-01T00:00:00"])
async def test_a_deadline_without_a_timezone_is_never_a_500(client, poster, deadline):
    response = await client.post(TASKS, json={**TASK, "deadline": deadline}, headers=bearer(poster["api_key"]))
    assert response.status_code in (201, 422), response.text
    if deadline.startswith("2000"):
        assert response.status_code == 422 and error_code(response) in ("VALIDATION_ERROR", "INVALID_DEADLINE")


async def test_a_deadline_with_an_offset_is_accepted(client, poster):
    task = await post_task(client, poster, deadline="2999-01-01T05:00:00+05:00")
    assert task["deadline"].startswith("2999-01-01T00:00:00")


# GET /tasks/{id} ----------------------------------------------------------------------------------------------------


async def test_reading_a_task_returns_its_detail_to_any_agent(client, poster, worker):
    posted = await post_task(client, poster, category_id=4, requirements="JSON", max_revisions=1)
    response = await client.get(f"{TASKS}/{posted['id']}", headers=bearer(worker["api_key"]))
    assert response.status_code == 200, response.text
    task = response.json()["data"]
    # POST's answer is GET's plus the callback's secret, which only it shows (issue 13; null without a callback).
    assert posted.pop("callback_secret") is None
    assert task == posted
    assert set(task) >= {
        "id",
        "title",
        "description",
        "requirements",
        "budget_credits",
        "category",
        "status",
        "poster",
        "claimed_by_agent_id",
        "price_credits",
        "claims_count",
        "deliverables_count",
        "deadline",
        "max_revisions",
        "auto_review_enabled",
        "created_at",
    }


async def test_reading_an_unknown_task_is_404_task_not_found(client, poster):
    response = await client.get(f"{TASKS}/999999999", headers=bearer(poster["api_key"]))
    assert response.status_code == 404 and error_code(response) == "TASK_NOT_FOUND"


@pytest.mark.parametrize("bad_id", ["abc", "0", "-1", "1.5", "9" * 19])
async def test_reading_a_task_by_a_malformed_id_is_400_invalid_parameter(client, poster, bad_id):
    response = await client.get(f"{TASKS}/{bad_id}", headers=bearer(poster["api_key"]))
    assert response.status_code == 400 and error_code(response) == "INVALID_PARAMETER"


async def test_claims_count_counts_bids_of_every_status(client, admin_key, poster, worker):
    other = await new_agent(client, admin_key, "other")
    task = await post_task(client, poster)
    first = await bid(client, worker, task["id"], 50)
    await bid(client, other, task["id"], 60)
    withdrawn = await client.post(
        f"{TASKS}/{task['id']}/claims/{first['id']}/withdraw", headers=bearer(worker["api_key"])
    )
    assert withdrawn.status_code == 200
    detail = (await client.get(f"{TASKS}/{task['id']}", headers=bearer(poster["api_key"]))).json()["data"]
    assert detail["claims_count"] == 2
    listed = await walk(client, poster, TASKS, min_budget=100, max_budget=100)
    assert next(t for t in listed if t["id"] == task["id"])["claims_count"] == 2


# GET /tasks (browse) ------------------------------------------------------------------------------------------------

# A budget band nobody else posts in; the funds come from an admin grant.
BAND = 731_000
TIED_BUDGETS = [BAND + 30, BAND + 10, BAND + 20, BAND + 20, BAND + 40, BAND + 10, BAND + 20]


async def post_band(client, admin_key, poster, budgets=TIED_BUDGETS) -> list[dict]:
    await grant(client, admin_key, poster, sum(budgets))
    return [await post_task(client, poster, title=f"Band task {i}", budget_credits=b) for i, b in enumerate(budgets)]


def band(**params) -> dict:
    return {"min_budget": BAND, "max_budget": BAND + 1000, **params}


async def test_browse_lists_open_tasks_with_the_list_fields(client, poster):
    task = await post_task(client, poster, category_id=2, deadline=FUTURE)
    body = await get_list(client, poster, TASKS, min_budget=100, max_budget=100)
    item = next(t for t in body["data"] if t["id"] == task["id"])
    assert set(item) == {
        "id",
        "title",
        "description",
        "budget_credits",
        "category",
        "status",
        "poster",
        "claims_count",
        "deadline",
        "max_revisions",
        "created_at",
        # the seed systems' options (issue 13)
        "claim_mode",
        "priority",
        "tags",
        "expires_at",
    }
    assert item["category"] == {"id": 2, "name": "Writing", "slug": "writing"}
    assert item["status"] == "open" and item["poster"] == task["poster"]
    assert set(body["meta"]) >= {"cursor", "has_more", "count", "timestamp", "request_id"}


async def test_browse_defaults_to_open_and_filters_by_status(client, admin_key, poster, worker):
    tasks = await post_band(client, admin_key, poster, [BAND + 1, BAND + 2])
    accepted = await bid(client, worker, tasks[0]["id"], 10)
    response = await client.post(
        f"{TASKS}/{tasks[0]['id']}/claims/{accepted['id']}/accept", headers=bearer(poster["api_key"])
    )
    assert response.status_code == 200, response.text
    assert [t["id"] for t in await walk(client, poster, TASKS, **band())] == [tasks[1]["id"]]
    claimed = await walk(client, poster, TASKS, **band(status="claimed"))
    assert [(t["id"], t["status"]) for t in claimed] == [(tasks[0]["id"], "claimed")]


@pytest.mark.parametrize("status", ["bogus", "OPEN", ""])
async def test_browse_with_an_unknown_status_is_400_invalid_parameter(client, poster, status):
    response = await client.get(TASKS, params={"status": status}, headers=bearer(poster["api_key"]))
    assert response.status_code == 400 and error_code(response) == "INVALID_PARAMETER"


async def test_browse_filters_by_category_and_budget_bounds_inclusively(client, admin_key, poster):
    await grant(client, admin_key, poster, 4 * BAND + 1000)
    coding = await post_task(client, poster, budget_credits=BAND + 100, category_id=1)
    writing = await post_task(client, poster, budget_credits=BAND + 200, category_id=2)
    low = await post_task(client, poster, budget_credits=BAND + 300, category_id=1)
    high = await post_task(client, poster, budget_credits=BAND + 400, category_id=1)
    ids = lambda items: {t["id"] for t in items}  # noqa: E731
    assert ids(await walk(client, poster, TASKS, **band(category=2))) == {writing["id"]}
    assert ids(await walk(client, poster, TASKS, **band(category=1))) == {coding["id"], low["id"], high["id"]}
    bounded = await walk(client, poster, TASKS, min_budget=BAND + 200, max_budget=BAND + 300)
    assert ids(bounded) == {writing["id"], low["id"]}
    above = await walk(client, poster, TASKS, min_budget=BAND + 400)
    assert high["id"] in ids(above) and low["id"] not in ids(above)


@pytest.mark.parametrize("sort", ["cheapest", "NEWEST", ""])
async def test_browse_with_an_unknown_sort_is_400_invalid_parameter(client, poster, sort):
    response = await client.get(TASKS, params={"sort": sort}, headers=bearer(poster["api_key"]))
    assert response.status_code == 400 and error_code(response) == "INVALID_PARAMETER"
    assert "sort" in response.json()["error"]["message"]


@pytest.mark.parametrize("limit", ["0", "101", "-5", "many"])
async def test_browse_with_a_limit_outside_1_to_100_is_400(client, poster, limit):
    response = await client.get(TASKS, params={"limit": limit}, headers=bearer(poster["api_key"]))
    assert response.status_code == 400 and error_code(response) == "INVALID_PARAMETER"


@pytest.mark.parametrize("limit", [1, 100])
async def test_browse_accepts_limits_1_and_100(client, poster, limit):
    response = await client.get(TASKS, params={"limit": limit}, headers=bearer(poster["api_key"]))
    assert response.status_code == 200 and len(response.json()["data"]) <= limit


async def test_browse_with_a_garbage_cursor_is_400(client, poster):
    response = await client.get(TASKS, params={"cursor": "not-a-cursor!"}, headers=bearer(poster["api_key"]))
    assert response.status_code == 400 and error_code(response) == "INVALID_PARAMETER"


def sort_key(sort: str):
    return {
        "newest": lambda t: -t["id"],
        "oldest": lambda t: t["id"],
        "budget_high": lambda t: (-t["budget_credits"], -t["id"]),
        "budget_low": lambda t: (t["budget_credits"], t["id"]),
    }[sort]


@pytest.mark.parametrize("sort", ["newest", "oldest", "budget_high", "budget_low"])
async def test_browse_pages_of_two_concatenate_to_the_full_ordered_list(client, admin_key, poster, sort):
    posted = await post_band(client, admin_key, poster)
    paged = await walk(client, poster, TASKS, **band(sort=sort, limit=2))
    whole = (await get_list(client, poster, TASKS, **band(sort=sort, limit=100)))["data"]
    ids = [t["id"] for t in paged]
    assert len(ids) == len(set(ids)) == len(posted)
    assert ids == [t["id"] for t in whole]
    assert ids == [t["id"] for t in sorted(posted, key=sort_key(sort))]
    budgets = [t["budget_credits"] for t in paged]
    if sort == "budget_high":
        assert budgets == sorted(budgets, reverse=True)
    if sort == "budget_low":
        assert budgets == sorted(budgets)


async def test_browse_default_sort_is_newest_first(client, admin_key, poster):
    posted = await post_band(client, admin_key, poster, [BAND + 5, BAND + 1, BAND + 9])
    listed = await walk(client, poster, TASKS, **band())
    assert [t["id"] for t in listed] == [t["id"] for t in reversed(posted)]


async def test_browse_last_page_has_a_null_cursor(client, admin_key, poster):
    await post_band(client, admin_key, poster, [BAND + 1, BAND + 2, BAND + 3])
    first = await get_list(client, poster, TASKS, **band(limit=2))
    assert first["meta"]["has_more"] is True and first["meta"]["cursor"]
    last = await get_list(client, poster, TASKS, **band(limit=2, cursor=first["meta"]["cursor"]))
    assert last["meta"]["count"] == 1
    assert last["meta"]["cursor"] is None and last["meta"]["has_more"] is False
    exact = await get_list(client, poster, TASKS, **band(limit=3))
    assert exact["meta"]["count"] == 3 and exact["meta"]["cursor"] is None


@pytest.mark.parametrize(
    ("made_with", "used_with"),
    [
        ("newest", "oldest"),
        ("oldest", "newest"),
        ("newest", "budget_high"),
        ("budget_high", "budget_low"),
        ("budget_low", "oldest"),
    ],
)
async def test_a_cursor_from_one_sort_is_refused_by_another(client, admin_key, poster, made_with, used_with):
    await post_band(client, admin_key, poster, [BAND + 1, BAND + 2, BAND + 3])
    cursor = (await get_list(client, poster, TASKS, **band(sort=made_with, limit=1)))["meta"]["cursor"]
    assert cursor
    response = await client.get(
        TASKS, params=band(sort=used_with, limit=1, cursor=cursor), headers=bearer(poster["api_key"])
    )
    assert response.status_code == 400 and error_code(response) == "INVALID_PARAMETER"


# GET /tasks/search --------------------------------------------------------------------------------------------------

SEARCH = f"{TASKS}/search"


async def search(client, agent, **params) -> dict:
    return await get_list(client, agent, SEARCH, **params)


async def test_search_finds_parser_and_parsing_for_parse(client, poster):
    parser = await post_task(client, poster, title="Write a parser for zanzibarian logs")
    parsing = await post_task(client, poster, title="Parsing zanzibarian CSV files")
    other = await post_task(client, poster, title="Translate a zanzibarian brochure")
    found = await walk(client, poster, SEARCH, q="parse zanzibarian")
    ids = {t["id"] for t in found}
    assert {parser["id"], parsing["id"]} <= ids and other["id"] not in ids


async def test_search_ranks_title_matches_above_description_only_matches(client, poster):
    in_description = await post_task(
        client, poster, title="Some unrelated chore", description="The quillwort inventory needs a cleanup pass."
    )
    in_title = await post_task(client, poster, title="Quillwort inventory", description="d" * 25)
    found = (await search(client, poster, q="quillwort"))["data"]
    assert [t["id"] for t in found] == [in_title["id"], in_description["id"]]
    assert found[0]["relevance"] > found[1]["relevance"] > 0


async def test_search_items_carry_the_browse_fields_and_relevance(client, poster):
    await post_task(client, poster, title="Catalogue the glimmerfish")
    item = (await search(client, poster, q="glimmerfish"))["data"][0]
    assert set(item) == {
        "id",
        "title",
        "description",
        "budget_credits",
        "category",
        "status",
        "poster",
        "claims_count",
        "deadline",
        "max_revisions",
        "created_at",
        "claim_mode",
        "priority",
        "tags",
        "expires_at",
        "relevance",
    }
    assert isinstance(item["relevance"], float)


async def test_search_requires_every_word(client, poster):
    both = await post_task(client, poster, title="Glimmerfish and moonwort survey")
    await post_task(client, poster, title="Glimmerfish census only")
    found = (await search(client, poster, q="glimmerfish moonwort"))["data"]
    assert [t["id"] for t in found] == [both["id"]]


async def test_search_only_lists_open_tasks_by_default_and_filters_by_budget(client, poster):
    cheap = await post_task(client, poster, title="Brindlewood audit", budget_credits=20)
    pricey = await post_task(client, poster, title="Brindlewood audit", budget_credits=90)
    found = (await search(client, poster, q="brindlewood", min_budget=50))["data"]
    assert [t["id"] for t in found] == [pricey["id"]]
    await client.post(f"{TASKS}/{cheap['id']}/cancel", headers=bearer(poster["api_key"]))
    assert [t["id"] for t in (await search(client, poster, q="brindlewood"))["data"]] == [pricey["id"]]
    cancelled = (await search(client, poster, q="brindlewood", status="cancelled"))["data"]
    assert [t["id"] for t in cancelled] == [cheap["id"]]


@pytest.mark.parametrize("params", [{}, {"q": ""}, {"q": "x" * 201}])
async def test_search_without_a_usable_q_is_400_invalid_parameter(client, poster, params):
    response = await client.get(SEARCH, params=params, headers=bearer(poster["api_key"]))
    assert response.status_code == 400 and error_code(response) == "INVALID_PARAMETER"


async def test_search_accepts_a_q_of_200_characters(client, poster):
    response = await client.get(SEARCH, params={"q": "q" * 200}, headers=bearer(poster["api_key"]))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("q", ["the", "the and of", "!!! ???"])
async def test_search_with_no_usable_terms_is_400_invalid_parameter(client, poster, q):
    response = await client.get(SEARCH, params={"q": q}, headers=bearer(poster["api_key"]))
    assert response.status_code == 400 and error_code(response) == "INVALID_PARAMETER"


async def test_search_with_a_bad_limit_or_cursor_is_400(client, poster):
    for params in ({"q": "parse", "limit": 0}, {"q": "parse", "limit": 101}, {"q": "parse", "cursor": "%%%"}):
        response = await client.get(SEARCH, params=params, headers=bearer(poster["api_key"]))
        assert response.status_code == 400 and error_code(response) == "INVALID_PARAMETER", params


async def test_search_pages_of_two_concatenate_to_the_full_ranked_list(client, poster):
    titles = [
        "Sproutling ledger",
        "Sproutling ledger sproutling",
        "Tidy the ledger",
        "Sproutling",
        "Sproutling ledger",
        "Ledger of sproutling sproutling sproutling",
    ]
    posted = []
    for i, title in enumerate(titles):
        description = f"Mentions sproutling only here, number {i}." if "Sproutling" not in title else "d" * 25
        posted.append(await post_task(client, poster, title=title, description=description))
    paged = await walk(client, poster, SEARCH, q="sproutling", limit=2)
    whole = (await search(client, poster, q="sproutling", limit=100))["data"]
    ids = [t["id"] for t in paged]
    assert ids == [t["id"] for t in whole]
    assert len(ids) == len(set(ids))
    expected = {t["id"] for t in posted if "sproutling" in (t["title"] + t["description"]).lower()}
    assert set(ids) == expected
    ranks = [t["relevance"] for t in paged]
    assert ranks == sorted(ranks, reverse=True)
