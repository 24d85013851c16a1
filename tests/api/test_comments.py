"""A task's conversation (GET/POST /tasks/{id}/comments): who takes part, the content's bounds, the keyset pages and
the `comment.created` events, read from the outbox as tests/api/test_outbox_events.py reads them."""

from __future__ import annotations

from collections import Counter

import psycopg
import pytest

from tests.api.test_outbox_events import bid, call, error_code, mark, post_task, recipients, scalar, since
from tests.conftest import add_agent, bearer, new_agent

TASKS = "/api/v1/tasks"
FIELDS = {"id", "task_id", "agent_id", "agent_name", "content", "created_at"}


def comments_of(task_id: int) -> str:
    return f"{TASKS}/{task_id}/comments"


async def comment(client, agent: dict, task_id: int, content: str = "Any questions?", **headers):
    return await client.post(
        comments_of(task_id), json={"content": content}, headers=bearer(agent["api_key"]) | headers
    )


async def posted(client, agent: dict, task_id: int, content: str = "Any questions?") -> dict:
    response = await comment(client, agent, task_id, content)
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def read(client, agent: dict, task_id: int, **params):
    return await client.get(comments_of(task_id), params=params, headers=bearer(agent["api_key"]))


async def thread(client, agent: dict, task_id: int) -> list[dict]:
    response = await read(client, agent, task_id, limit=100)
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def stored(conn: psycopg.AsyncConnection, task_id: int) -> int:
    return await scalar(conn, "SELECT count(*) FROM task_comment WHERE task_id = %s", task_id)


@pytest.fixture
async def rival(client, admin_key) -> dict:
    return await new_agent(client, admin_key, "rival")


@pytest.fixture
async def stranger(client, admin_key) -> dict:
    return await new_agent(client, admin_key, "stranger")


@pytest.fixture
async def sibling(client, poster) -> dict:
    """Another agent of the poster's operator."""
    return await add_agent(client, poster["operator"], "sibling")


# Who takes part ----------------------------------------------------------------------------------------------------


async def test_the_poster_its_operators_other_agent_the_bidders_and_the_worker_converse(
    client, poster, sibling, worker, rival
):
    task = await post_task(client, poster)
    await bid(client, rival, task["id"], 120)
    claim = await bid(client, worker, task["id"], 150)
    await call(client, poster, f"{TASKS}/{task['id']}/claims/{claim['id']}/accept")  # the rival's bid is rejected
    authors = (poster, sibling, worker, rival)
    written = [await posted(client, agent, task["id"], f"from {agent['name']}") for agent in authors]
    first = written[0]
    assert set(first) == FIELDS
    assert first["task_id"] == task["id"] and first["agent_id"] == poster["id"]
    assert first["agent_name"] == poster["name"] and first["content"] == f"from {poster['name']}"
    for agent in authors:
        assert await thread(client, agent, task["id"]) == written, agent["name"]


async def test_a_bidder_who_withdrew_still_takes_part(client, poster, worker):
    task = await post_task(client, poster)
    claim = await bid(client, worker, task["id"])
    await call(client, worker, f"{TASKS}/{task['id']}/claims/{claim['id']}/withdraw")
    written = await posted(client, worker, task["id"], "Withdrawn, but curious: was it done?")
    assert await thread(client, worker, task["id"]) == [written]


async def test_the_thread_stays_open_after_the_task_is_finished_or_rolled_back(client, poster, worker):
    task = await post_task(client, poster)
    claim = await bid(client, worker, task["id"])
    await call(client, poster, f"{TASKS}/{task['id']}/claims/{claim['id']}/accept")
    await call(client, poster, f"{TASKS}/{task['id']}/rollback")  # the displaced worker keeps its (rejected) bid
    await posted(client, worker, task["id"], "Why the rollback?")
    await call(client, poster, f"{TASKS}/{task['id']}/cancel")
    await posted(client, poster, task["id"], "Cancelled: the client withdrew.")
    assert [c["agent_id"] for c in await thread(client, worker, task["id"])] == [worker["id"], poster["id"]]


async def test_an_agent_that_took_no_part_is_403_forbidden_and_nothing_is_written(
    client, conn, poster, worker, stranger
):
    task = await post_task(client, poster)
    await posted(client, poster, task["id"], "Ask here.")
    before = await mark(conn)
    response = await read(client, stranger, task["id"])
    assert response.status_code == 403 and error_code(response) == "FORBIDDEN"
    assert "comments" in response.json()["error"]["message"]
    response = await comment(client, stranger, task["id"], "Let me in")
    assert response.status_code == 403 and error_code(response) == "FORBIDDEN"
    assert await stored(conn, task["id"]) == 1
    assert await since(conn, before) == []


async def test_a_directed_task_is_404_to_the_agents_it_is_not_directed_at(client, conn, poster, worker, stranger):
    task = await post_task(client, poster, eligible_agent_ids=[worker["id"]])
    for response in (await read(client, stranger, task["id"]), await comment(client, stranger, task["id"])):
        assert response.status_code == 404 and error_code(response) == "TASK_NOT_FOUND"
    # An agent it is directed at sees it, but takes part only once it has bid.
    for response in (await read(client, worker, task["id"]), await comment(client, worker, task["id"])):
        assert response.status_code == 403 and error_code(response) == "FORBIDDEN"
    await bid(client, worker, task["id"])
    await posted(client, worker, task["id"], "Directed at me: glad to.")
    assert len(await thread(client, poster, task["id"])) == 1
    assert await stored(conn, task["id"]) == 1


async def test_an_unknown_task_is_404_task_not_found(client, poster):
    for response in (await read(client, poster, 999_999), await comment(client, poster, 999_999)):
        assert response.status_code == 404 and error_code(response) == "TASK_NOT_FOUND"


@pytest.mark.parametrize("bad_id", ["0", "abc", "-3"])
async def test_a_malformed_task_id_is_400_invalid_parameter(client, poster, bad_id):
    for response in (
        await client.get(f"{TASKS}/{bad_id}/comments", headers=bearer(poster["api_key"])),
        await client.post(f"{TASKS}/{bad_id}/comments", json={"content": "x"}, headers=bearer(poster["api_key"])),
    ):
        assert response.status_code == 400 and error_code(response) == "INVALID_PARAMETER"


async def test_comments_need_an_agent_key(client, poster, operator):
    task = await post_task(client, poster)
    assert (await client.get(comments_of(task["id"]))).status_code == 401
    response = await client.get(comments_of(task["id"]), headers=bearer(operator["api_key"]))
    assert response.status_code == 401 and error_code(response) == "UNAUTHORIZED"


# Content -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "status"),
    [
        ("", 422),
        ("x", 201),
        ("x" * 5000, 201),
        ("x" * 5001, 422),
        ("é" * 5000, 201),  # characters, not bytes
        ("€" * 5001, 422),
        (" \n\t ", 422),  # nothing but white space
    ],
)
async def test_content_is_1_to_5000_characters_not_blank(client, conn, poster, content, status):
    task = await post_task(client, poster)
    response = await comment(client, poster, task["id"], content)
    assert response.status_code == status, response.text
    if status == 201:
        assert response.json()["data"]["content"] == content
        assert (await thread(client, poster, task["id"]))[0]["content"] == content
    else:
        assert error_code(response) == "VALIDATION_ERROR" and "content" in response.json()["error"]["message"]
    assert await stored(conn, task["id"]) == (1 if status == 201 else 0)


@pytest.mark.parametrize("body", [{}, {"content": 7}, {"content": "hi", "author": 3}])
async def test_a_body_that_is_not_a_comment_is_422(client, poster, body):
    task = await post_task(client, poster)
    response = await client.post(comments_of(task["id"]), json=body, headers=bearer(poster["api_key"]))
    assert response.status_code == 422 and error_code(response) == "VALIDATION_ERROR"


async def test_content_is_stored_as_sent(client, poster):
    task = await post_task(client, poster)
    text = "  indented code:\n    x = 1\n"
    assert (await posted(client, poster, task["id"], text))["content"] == text


# Pages -------------------------------------------------------------------------------------------------------------


async def test_pages_concatenate_exactly_to_the_thread_oldest_first(client, poster, worker):
    task = await post_task(client, poster)
    await bid(client, worker, task["id"])
    written = [await posted(client, (poster, worker)[n % 2], task["id"], f"message {n}") for n in range(7)]
    seen, cursor, pages = [], None, []
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        response = await read(client, worker, task["id"], **params)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append((body["meta"]["count"], body["meta"]["has_more"]))
        seen += body["data"]
        cursor = body["meta"]["cursor"]
        if cursor is None:
            break
        if len(pages) == 1:  # a comment posted mid-way comes last, after the ones already there
            written.append(await posted(client, poster, task["id"], "late"))
    assert seen == written
    assert pages == [(3, True), (3, True), (2, False)]
    assert [c["id"] for c in seen] == sorted(c["id"] for c in seen)


async def test_an_empty_thread_is_an_empty_last_page(client, poster):
    task = await post_task(client, poster)
    body = (await read(client, poster, task["id"])).json()
    assert body["data"] == []
    assert (body["meta"]["cursor"], body["meta"]["has_more"], body["meta"]["count"]) == (None, False, 0)


async def test_a_cursor_from_another_tasks_thread_or_a_bad_limit_is_400(client, poster):
    one, other = await post_task(client, poster), await post_task(client, poster)
    for _ in range(2):
        await posted(client, poster, one["id"])
    cursor = (await read(client, poster, one["id"], limit=1)).json()["meta"]["cursor"]
    assert cursor
    response = await read(client, poster, other["id"], cursor=cursor)
    assert response.status_code == 400 and error_code(response) == "INVALID_PARAMETER"
    assert "another list" in response.json()["error"]["message"]
    for limit in (0, 101):
        response = await read(client, poster, one["id"], limit=limit)
        assert response.status_code == 400 and error_code(response) == "INVALID_PARAMETER"


# Events ------------------------------------------------------------------------------------------------------------


async def test_comment_created_goes_to_every_other_participant_once(client, conn, poster, sibling, worker, rival):
    task = await post_task(client, poster)
    first = await bid(client, rival, task["id"], 120)
    await call(client, rival, f"{TASKS}/{task['id']}/claims/{first['id']}/withdraw")
    await bid(client, rival, task["id"], 110)  # two bids, one participant
    claim = await bid(client, worker, task["id"], 150)
    await call(client, poster, f"{TASKS}/{task['id']}/claims/{claim['id']}/accept")
    expected = {
        # The author hears nothing; the worker is a bidder too, and hears once.
        poster["id"]: Counter({rival["id"]: 1, worker["id"]: 1}),
        # An agent of the poster's operator other than the poster's: the poster's agent hears of it.
        sibling["id"]: Counter({poster["id"]: 1, rival["id"]: 1, worker["id"]: 1}),
        worker["id"]: Counter({poster["id"]: 1, rival["id"]: 1}),
        rival["id"]: Counter({poster["id"]: 1, worker["id"]: 1}),
    }
    for author in (poster, sibling, worker, rival):
        before = await mark(conn)
        written = await posted(client, author, task["id"], f"from {author['name']}")
        rows = await since(conn, before)
        assert recipients(rows, "comment.created") == expected[author["id"]], author["name"]
        assert {r.type for r in rows} == {"comment.created"}  # and nothing on the task's public stream
        for row in rows:
            assert row.task_id == task["id"]
            assert row.data == {
                "task_id": task["id"],
                "comment_id": written["id"],
                "agent_id": author["id"],
                "agent_name": author["name"],
                "content": f"from {author['name']}",
            }


async def test_the_posters_agent_gets_the_tasks_metadata_echoed(client, conn, poster, worker):
    task = await post_task(client, poster, metadata={"ticket": "INV-7"})
    await bid(client, worker, task["id"])
    before = await mark(conn)
    await posted(client, worker, task["id"], "Question about INV-7")
    (row,) = await since(conn, before)
    assert row.agent_id == poster["id"] and row.data["metadata"] == {"ticket": "INV-7"}
    before = await mark(conn)
    await posted(client, poster, task["id"], "Answer")
    (row,) = await since(conn, before)
    assert row.agent_id == worker["id"] and "metadata" not in row.data


async def test_a_comment_replayed_with_its_idempotency_key_is_written_once(client, conn, poster, worker):
    task = await post_task(client, poster)
    await bid(client, worker, task["id"])
    before = await mark(conn)
    key = {"Idempotency-Key": "comment-once"}
    first = await comment(client, worker, task["id"], "Only once", **key)
    again = await comment(client, worker, task["id"], "Only once", **key)
    assert first.status_code == again.status_code == 201
    assert again.json()["data"] == first.json()["data"]
    assert again.headers.get("idempotency-replayed") == "true"
    assert await stored(conn, task["id"]) == 1
    assert recipients(await since(conn, before), "comment.created") == Counter({poster["id"]: 1})
    other = await comment(client, worker, task["id"], "Something else", **key)
    assert other.status_code == 422 and error_code(other) == "IDEMPOTENCY_KEY_MISMATCH"
