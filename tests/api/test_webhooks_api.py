"""Contract tests for /api/v1/webhooks: register, list, get, update, delete, rotate secret, test ping, delivery log,
redelivery, and the SSRF guard as seen through the API.

Registrations use public IP literals (no DNS lookup happens for them, and nothing is ever connected to). Delivery
states other than pending are set up directly in the database, since no delivery worker runs in process.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from litestar.testing import AsyncTestClient

from app.config import load_settings
from app.crypto import KeyRing
from app.main import create_app
from app.repo.connections import SharedConnectionSource
from app.services import sealing
from tests.conftest import TEST_SETTINGS, bearer, new_agent

WEBHOOKS = "/api/v1/webhooks"
PUBLIC_URL = "https://93.184.216.34/hook"
OTHER_PUBLIC_URL = "https://93.184.216.35/other"
SECRET = re.compile(r"whsec_[0-9a-f]{48}")
MISSING = 999999999

# SSRF-1: every one of these must be refused at registration (and in an update).
FORBIDDEN_URLS = [
    "http://127.0.0.1/",
    "http://[::1]/",
    "http://0.0.0.0/",
    "http://127.1/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://017700000001/",
    "http://[::ffff:127.0.0.1]/",
    "http://169.254.169.254/latest/meta-data",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://[fd00::1]/",
    "http://[fe80::1]/",
    "http://user@93.184.216.34/",
    "file:///etc/passwd",
    "gopher://93.184.216.34/",
    "ftp://93.184.216.34/",
]


# Helpers -----------------------------------------------------------------------------------------------------------


async def create(client, agent: dict, url: str = PUBLIC_URL, events=("claim.accepted",), **headers):
    return await client.post(
        WEBHOOKS, json={"url": url, "events": list(events)}, headers={**bearer(agent["api_key"]), **headers}
    )


async def register(client, agent: dict, url: str = PUBLIC_URL, events=("claim.accepted",)) -> dict:
    response = await create(client, agent, url, events)
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def get(client, agent: dict, path: str, **params):
    return await client.get(path, params=params, headers=bearer(agent["api_key"]))


async def patch(client, agent: dict, webhook_id, body: dict):
    return await client.patch(f"{WEBHOOKS}/{webhook_id}", json=body, headers=bearer(agent["api_key"]))


async def rotate(client, agent: dict, webhook_id, body: dict | None = None):
    return await client.post(
        f"{WEBHOOKS}/{webhook_id}/rotate-secret", json={} if body is None else body, headers=bearer(agent["api_key"])
    )


async def ping(client, agent: dict, webhook_id):
    return await client.post(f"{WEBHOOKS}/{webhook_id}/test", headers=bearer(agent["api_key"]))


async def queued_ping(client, agent: dict, webhook_id) -> dict:
    response = await ping(client, agent, webhook_id)
    assert response.status_code == 202, response.text
    return response.json()["data"]


async def redeliver(client, agent: dict, webhook_id, delivery_id):
    return await client.post(
        f"{WEBHOOKS}/{webhook_id}/deliveries/{delivery_id}/redeliver", headers=bearer(agent["api_key"])
    )


async def deliveries(client, agent: dict, webhook_id, **params):
    return await get(client, agent, f"{WEBHOOKS}/{webhook_id}/deliveries", **params)


async def finish(conn: psycopg.AsyncConnection, delivery_id: int, status: str, attempts: int = 1) -> None:
    """Test setup: mark a delivery as a worker would once it is done."""
    await conn.execute(
        """UPDATE webhook_delivery SET status = %s, attempt_count = %s, next_attempt_at = NULL,
                  completed_at = now() WHERE id = %s""",
        (status, attempts, delivery_id),
    )


async def scalar(conn: psycopg.AsyncConnection, sql: str, *params: object) -> object:
    cursor = await conn.execute(sql, params)
    return (await cursor.fetchone())[0]


async def webhook_rows(conn: psycopg.AsyncConnection) -> int:
    return await scalar(conn, "SELECT count(*) FROM webhook")


def error_code(response) -> str:
    body = response.json()
    assert body["ok"] is False, response.text
    assert body["error"]["message"] and body["error"]["suggestion"], response.text
    return body["error"]["code"]


def opened(stored: object, webhook_id: int) -> str | None:
    """A webhook secret as stored (sealed to its row), opened with the test session's key."""
    if stored is None:
        return None
    return KeyRing.parse(TEST_SETTINGS.secret_key).open(bytes(stored), sealing.webhook_context(webhook_id)).decode()  # type: ignore[arg-type]


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.fixture
async def other(client, admin_key) -> dict:
    """An agent of another operator."""
    return await new_agent(client, admin_key, "other")


@pytest.fixture
async def hook(client, agent) -> dict:
    return await register(client, agent)


# POST /webhooks ----------------------------------------------------------------------------------------------------


async def test_registering_returns_201_with_the_secret_shown_once(client, conn, agent):
    response = await create(client, agent, events=["claim.accepted", "task.created"])
    assert response.status_code == 201, response.text
    body = response.json()
    data = body["data"]
    assert set(data) == {"id", "url", "secret", "events", "is_active", "created_at"}
    assert isinstance(data["id"], int)
    assert data["url"] == PUBLIC_URL
    assert SECRET.fullmatch(data["secret"]), data["secret"]
    assert data["events"] == ["claim.accepted", "task.created"]
    assert data["is_active"] is True
    assert abs(moment(data["created_at"]) - datetime.now(UTC)) < timedelta(hours=1)
    assert body["meta"]["note"] and "secret" in body["meta"]["note"]
    assert body["meta"]["request_id"] and body["meta"]["timestamp"]
    stored = await scalar(conn, "SELECT secret FROM webhook WHERE id = %s AND agent_id = %s", data["id"], agent["id"])
    assert data["secret"].encode() not in stored  # sealed at rest (DESIGN §10)
    assert opened(stored, data["id"]) == data["secret"]


async def test_two_registrations_get_different_secrets(client, agent):
    assert (await register(client, agent))["secret"] != (await register(client, agent))["secret"]


async def test_the_secret_never_appears_in_get_or_list(client, agent):
    created = await register(client, agent)
    rotated = (await rotate(client, agent, created["id"])).json()["data"]["secret"]
    for response in (await get(client, agent, f"{WEBHOOKS}/{created['id']}"), await get(client, agent, WEBHOOKS)):
        assert response.status_code == 200, response.text
        assert created["secret"] not in response.text and rotated not in response.text
        assert "whsec_" not in response.text
        data = response.json()["data"]
        for item in data if isinstance(data, list) else [data]:
            assert {k for k in item if "secret" in k} == {"previous_secret_expires_at"}


async def test_get_returns_the_endpoint_state(client, agent, hook):
    response = await get(client, agent, f"{WEBHOOKS}/{hook['id']}")
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data == {
        "id": hook["id"],
        "url": PUBLIC_URL,
        "events": ["claim.accepted"],
        "is_active": True,
        "failure_count": 0,
        "last_triggered_at": None,
        "disabled_reason": None,
        "previous_secret_expires_at": None,
        "created_at": hook["created_at"],
    }


async def test_repeated_event_names_subscribe_once(client, agent):
    created = await register(client, agent, events=["claim.accepted", "task.created", "claim.accepted"])
    assert created["events"] == ["claim.accepted", "task.created"]


async def test_plain_http_to_a_public_ip_is_accepted(client, agent):
    created = await register(client, agent, url="http://93.184.216.34/agora?x=1")
    assert created["url"] == "http://93.184.216.34/agora?x=1"


async def test_every_subscribable_event_can_be_subscribed_to(client, agent):
    from domain.events import SUBSCRIBABLE

    created = await register(client, agent, events=list(SUBSCRIBABLE))
    assert created["events"] == list(SUBSCRIBABLE)


MALFORMED_BODIES = {
    "no events": {"url": PUBLIC_URL},
    "empty events": {"url": PUBLIC_URL, "events": []},
    "events not a list": {"url": PUBLIC_URL, "events": "claim.accepted"},
    "no url": {"events": ["claim.accepted"]},
    "empty url": {"url": "", "events": ["claim.accepted"]},
    "url not a string": {"url": 5, "events": ["claim.accepted"]},
    "unknown field": {"url": PUBLIC_URL, "events": ["claim.accepted"], "secret": "mine"},
    "url too long": {"url": PUBLIC_URL + "/" + "a" * 2048, "events": ["claim.accepted"]},
    "33 events": {"url": PUBLIC_URL, "events": ["claim.accepted"] * 33},
    "not an object": ["claim.accepted"],
}


async def test_a_malformed_body_is_422_validation_error_and_writes_nothing(client, conn, agent):
    before = await webhook_rows(conn)
    answers = {}
    for name, body in MALFORMED_BODIES.items():
        response = await client.post(WEBHOOKS, json=body, headers=bearer(agent["api_key"]))
        answers[name] = (response.status_code, error_code(response))
    assert {name: a for name, a in answers.items() if a != (422, "VALIDATION_ERROR")} == {}
    assert await webhook_rows(conn) == before


async def test_an_unknown_field_is_named(client, agent):
    body = {"url": PUBLIC_URL, "events": ["claim.accepted"], "secret": "mine"}
    response = await client.post(WEBHOOKS, json=body, headers=bearer(agent["api_key"]))
    assert "secret" in response.json()["error"]["message"]


async def test_a_url_of_2048_characters_is_accepted(client, agent):
    url = PUBLIC_URL + "/" + "a" * (2048 - len(PUBLIC_URL) - 1)
    assert len(url) == 2048
    assert (await register(client, agent, url=url))["url"] == url


async def test_an_unknown_or_unsubscribable_event_is_422_naming_it(client, conn, agent):
    before = await webhook_rows(conn)
    cases = [
        (["claim.accepted", "task.exploded"], "task.exploded"),
        (["nope", "claim.accepted", "also.nope"], "nope, also.nope"),
        (["Claim.Accepted"], "Claim.Accepted"),
        (["webhook.ping"], "webhook.ping"),
        (["claim.accepted", "webhook.ping"], "webhook.ping"),
    ]
    for events, named in cases:
        response = await create(client, agent, events=events)
        assert response.status_code == 422, (events, response.text)
        assert error_code(response) == "VALIDATION_ERROR"
        error = response.json()["error"]
        assert error["message"] == f"Invalid event(s): {named}"
        assert "claim.accepted" in error["suggestion"] and "webhook.ping" not in error["suggestion"]
    assert await webhook_rows(conn) == before


async def test_invalid_json_is_422_validation_error(client, agent):
    response = await client.post(
        WEBHOOKS, content=b"{nope", headers={**bearer(agent["api_key"]), "Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert error_code(response) == "VALIDATION_ERROR"


async def test_a_body_that_is_not_json_is_an_envelope_error(client, conn, agent):
    """Every body is read as JSON whatever its Content-Type (a client that forgets the header still works), so a
    body that is not JSON is the 422 VALIDATION_ERROR that docs/errors.md lists, and changes nothing."""
    before = await webhook_rows(conn)
    response = await client.post(
        WEBHOOKS, content=b"url=x", headers={**bearer(agent["api_key"]), "Content-Type": "text/plain"}
    )
    assert (response.status_code, error_code(response)) == (422, "VALIDATION_ERROR"), response.text
    assert await webhook_rows(conn) == before


# SSRF --------------------------------------------------------------------------------------------------------------


MORE_FORBIDDEN_URLS = [
    "HTTP://127.0.0.1/",
    "http://127.0.0.1./",
    "http://127.0.0.1:22/",
    "http://0/",
    "http://[::]/",
    "http://[::ffff:7f00:1]/",
    "http://[64:ff9b::a00:1]/",
    "http://[2002:7f00:1::]/",
    "http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/",
    "http://224.0.0.1/",
    "http://255.255.255.255/",
    "http://198.18.0.1/",
    "http://192.0.2.1/",
    "http://[2001:db8::1]/",
    "http://127.0.0.1:80@93.184.216.34/",
    "http://93.184.216.34%2f@127.0.0.1/",
    "http://93.184.216.34/\nx",
    " http://93.184.216.34/",
    "http://93.184.216.34:0/",
    "javascript:alert(1)",
    "//93.184.216.34/",
]


async def refusals(client, agent, urls: list[str]) -> dict[str, tuple[int, str, str]]:
    """Each URL's (status, code, message) when registering it; one request per URL."""
    answers = {}
    for url in urls:
        response = await create(client, agent, url=url)
        body = response.json()
        error = body.get("error") or {}
        answers[url] = (response.status_code, error.get("code"), error.get("message", ""))
    return answers


async def test_ssrf1_every_non_public_url_is_422_webhook_url_forbidden_and_nothing_is_written(client, conn, agent):
    before = await webhook_rows(conn)
    answers = await refusals(client, agent, FORBIDDEN_URLS)
    wrong = {url: a for url, a in answers.items() if a[:2] != (422, "WEBHOOK_URL_FORBIDDEN")}
    assert wrong == {}
    for url, (_, _, message) in answers.items():
        assert message.startswith("Webhook URL refused: "), (url, message)
        # Refused for what the URL is, not because a lookup failed (no DNS is needed for any of these): every IP
        # spelling (127.1, 2130706433, 0x7f000001, ...) is read as the address it stands for.
        assert "does not resolve" not in message, (url, message)
        if url.startswith("http://") and "@" not in url:
            assert message.endswith("is not public"), (url, message)
    assert await webhook_rows(conn) == before


async def test_more_non_public_or_odd_urls_are_refused(client, conn, agent):
    before = await webhook_rows(conn)
    answers = await refusals(client, agent, MORE_FORBIDDEN_URLS)
    wrong = {
        url: a for url, a in answers.items() if a[:2] != (422, "WEBHOOK_URL_FORBIDDEN") or "does not resolve" in a[2]
    }
    assert wrong == {}
    assert await webhook_rows(conn) == before


async def test_other_public_literals_are_accepted(client, agent):
    for url in [
        "https://[2606:2800:220:1:248:1893:25c8:1946]/hook",
        "https://93.184.216.34:8443/a/b?c=d",
        "http://1.1.1.1",
    ]:
        assert (await register(client, agent, url=url))["url"] == url


async def test_a_forbidden_url_in_an_update_is_422_and_changes_nothing(client, agent, hook):
    for url in ("http://127.0.0.1/", "http://169.254.169.254/latest/meta-data", "file:///etc/passwd"):
        response = await patch(client, agent, hook["id"], {"url": url})
        assert response.status_code == 422, response.text
        assert error_code(response) == "WEBHOOK_URL_FORBIDDEN"
    assert (await get(client, agent, f"{WEBHOOKS}/{hook['id']}")).json()["data"]["url"] == PUBLIC_URL


async def test_ssrf4_the_allow_list_is_empty_by_default_and_loopback_is_refused(client, conn, settings, agent):
    defaults = load_settings({})
    assert defaults.webhook_allow_cidrs == ""
    assert settings.webhook_allow_cidrs == ""  # the `client` fixture's app
    refused = await create(client, agent, url="http://127.0.0.1:8080/hook")
    assert refused.status_code == 422 and error_code(refused) == "WEBHOOK_URL_FORBIDDEN"
    # An app built from nothing but the defaults refuses it too (given the data key, which has no default: it signs
    # cursors and seals secrets).
    app = create_app(defaults.with_overrides(secret_key=TEST_SETTINGS.secret_key), source=SharedConnectionSource(conn))
    async with AsyncTestClient(app=app) as default_client:
        response = await create(default_client, agent, url="http://127.0.0.1:8080/hook")
    assert response.status_code == 422 and error_code(response) == "WEBHOOK_URL_FORBIDDEN"


# The limit of 5 ----------------------------------------------------------------------------------------------------


async def test_the_sixth_webhook_is_409_limit_reached_until_one_is_deleted(client, conn, agent, other):
    created = [await register(client, agent, url=f"https://93.184.216.34/{n}") for n in range(5)]
    response = await create(client, agent)
    assert response.status_code == 409, response.text
    assert error_code(response) == "LIMIT_REACHED"
    assert "5" in response.json()["error"]["message"]
    assert await scalar(conn, "SELECT count(*) FROM webhook WHERE agent_id = %s", agent["id"]) == 5
    # Another agent's limit is its own.
    await register(client, other)
    deleted = await client.delete(f"{WEBHOOKS}/{created[2]['id']}", headers=bearer(agent["api_key"]))
    assert deleted.status_code == 200, deleted.text
    again = await register(client, agent)
    assert again["id"] not in {c["id"] for c in created}
    assert error_code(await create(client, agent)) == "LIMIT_REACHED"


async def test_disabled_webhooks_count_towards_the_limit(client, agent):
    created = [await register(client, agent) for _ in range(5)]
    for webhook in created:
        assert (await patch(client, agent, webhook["id"], {"is_active": False})).status_code == 200
    assert error_code(await create(client, agent)) == "LIMIT_REACHED"


# GET /webhooks -----------------------------------------------------------------------------------------------------


async def test_the_list_is_paginated_oldest_first_and_only_the_callers(client, agent, other):
    mine = [(await register(client, agent, url=f"https://93.184.216.34/{n}"))["id"] for n in range(5)]
    await register(client, other)
    seen, cursor, pages = [], None, []
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = await get(client, agent, WEBHOOKS, **params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["meta"]["count"] == len(body["data"])
        assert body["meta"]["has_more"] is (body["meta"]["cursor"] is not None)
        pages.append(len(body["data"]))
        seen += body["data"]
        cursor = body["meta"]["cursor"]
        if cursor is None:
            break
    assert pages == [2, 2, 1]
    assert [w["id"] for w in seen] == sorted(mine) == mine
    assert [w["url"] for w in seen] == [f"https://93.184.216.34/{n}" for n in range(5)]
    full = (await get(client, agent, WEBHOOKS)).json()
    assert [w["id"] for w in full["data"]] == mine and full["meta"]["has_more"] is False


async def test_an_agent_without_webhooks_gets_an_empty_list(client, agent, other):
    await register(client, other)
    body = (await get(client, agent, WEBHOOKS)).json()
    assert body["data"] == [] and body["meta"]["has_more"] is False and body["meta"]["cursor"] is None


async def test_bad_list_parameters_are_400(client, agent):
    for params in ({"limit": 0}, {"limit": 101}, {"limit": "x"}, {"cursor": "garbage!"}):
        response = await get(client, agent, WEBHOOKS, **params)
        assert response.status_code == 400, (params, response.text)
        assert error_code(response) == "INVALID_PARAMETER"


# Ownership ---------------------------------------------------------------------------------------------------------


def _requests(webhook_id):
    return [
        ("GET", f"{WEBHOOKS}/{webhook_id}", None),
        ("PATCH", f"{WEBHOOKS}/{webhook_id}", {"events": ["task.created"]}),
        ("DELETE", f"{WEBHOOKS}/{webhook_id}", None),
        ("POST", f"{WEBHOOKS}/{webhook_id}/rotate-secret", {}),
        ("POST", f"{WEBHOOKS}/{webhook_id}/test", None),
        ("GET", f"{WEBHOOKS}/{webhook_id}/deliveries", None),
        ("POST", f"{WEBHOOKS}/{webhook_id}/deliveries/1/redeliver", None),
    ]


async def _send(client, agent, method, path, body):
    return await client.request(method, path, json=body, headers=bearer(agent["api_key"]))


async def test_another_agents_webhook_is_404_exactly_like_a_missing_one(client, conn, agent, other):
    theirs = await register(client, other)
    await queued_ping(client, other, theirs["id"])
    before = await scalar(conn, "SELECT row_to_json(w)::text FROM webhook w WHERE id = %s", theirs["id"])
    for (method, path, body), (_, missing_path, _) in zip(_requests(theirs["id"]), _requests(MISSING), strict=True):
        foreign = await _send(client, agent, method, path, body)
        absent = await _send(client, agent, method, missing_path, body)
        assert foreign.status_code == absent.status_code == 404, (method, path, foreign.text)
        assert error_code(foreign) == error_code(absent) == "WEBHOOK_NOT_FOUND", (method, path)
        normalised = foreign.json()["error"] | {
            "message": foreign.json()["error"]["message"].replace(str(theirs["id"]), str(MISSING))
        }
        assert normalised == absent.json()["error"], (method, path)
    # Nothing of theirs changed, and no delivery was added by the refused test ping.
    assert await scalar(conn, "SELECT row_to_json(w)::text FROM webhook w WHERE id = %s", theirs["id"]) == before
    assert await scalar(conn, "SELECT count(*) FROM webhook_delivery WHERE webhook_id = %s", theirs["id"]) == 1


async def test_a_malformed_webhook_id_is_400_invalid_parameter(client, agent):
    for bad in ("abc", "0", "-1", "1.5", "99999999999999999999"):
        for method, path, body in _requests(bad):
            response = await _send(client, agent, method, path, body)
            assert response.status_code == 400, (method, path, response.text)
            assert error_code(response) == "INVALID_PARAMETER"


async def test_a_malformed_delivery_id_is_400_invalid_parameter(client, agent, hook):
    response = await redeliver(client, agent, hook["id"], "abc")
    assert response.status_code == 400, response.text
    assert error_code(response) == "INVALID_PARAMETER"


# DELETE ------------------------------------------------------------------------------------------------------------


async def test_delete_returns_the_id_and_a_second_delete_is_404(client, conn, agent, hook):
    await queued_ping(client, agent, hook["id"])
    response = await client.delete(f"{WEBHOOKS}/{hook['id']}", headers=bearer(agent["api_key"]))
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {"id": hook["id"], "deleted": True}
    assert await scalar(conn, "SELECT count(*) FROM webhook WHERE id = %s", hook["id"]) == 0
    assert await scalar(conn, "SELECT count(*) FROM webhook_delivery WHERE webhook_id = %s", hook["id"]) == 0
    again = await client.delete(f"{WEBHOOKS}/{hook['id']}", headers=bearer(agent["api_key"]))
    assert again.status_code == 404 and error_code(again) == "WEBHOOK_NOT_FOUND"
    gone = await get(client, agent, f"{WEBHOOKS}/{hook['id']}")
    assert gone.status_code == 404 and error_code(gone) == "WEBHOOK_NOT_FOUND"


# PATCH -------------------------------------------------------------------------------------------------------------


async def test_patch_changes_events_and_url(client, agent, hook):
    response = await patch(client, agent, hook["id"], {"events": ["task.created", "claim.created"]})
    assert response.status_code == 200, response.text
    assert response.json()["data"]["events"] == ["task.created", "claim.created"]
    assert response.json()["data"]["url"] == PUBLIC_URL
    response = await patch(client, agent, hook["id"], {"url": OTHER_PUBLIC_URL})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["url"] == OTHER_PUBLIC_URL and data["events"] == ["task.created", "claim.created"]
    assert "secret" not in data
    assert (await get(client, agent, f"{WEBHOOKS}/{hook['id']}")).json()["data"] == data


async def test_patch_false_disables_and_true_re_enables_with_a_clean_streak(client, conn, agent, hook):
    await conn.execute("UPDATE webhook SET failure_count = 7, failing_since = now() WHERE id = %s", (hook["id"],))
    off = await patch(client, agent, hook["id"], {"is_active": False})
    assert off.status_code == 200, off.text
    data = off.json()["data"]
    assert data["is_active"] is False and data["disabled_reason"]
    assert await scalar(conn, "SELECT disabled_at IS NOT NULL FROM webhook WHERE id = %s", hook["id"])
    on = await patch(client, agent, hook["id"], {"is_active": True})
    assert on.status_code == 200, on.text
    data = on.json()["data"]
    assert data["is_active"] is True and data["disabled_reason"] is None and data["failure_count"] == 0
    row = await (
        await conn.execute("SELECT disabled_at, failing_since, failure_count FROM webhook WHERE id = %s", (hook["id"],))
    ).fetchone()
    assert row == (None, None, 0)


async def test_patch_keeps_the_reason_of_an_endpoint_the_worker_disabled(client, conn, agent, hook):
    await conn.execute(
        """UPDATE webhook SET is_active = false, disabled_at = now(), disabled_reason = 'the endpoint answered 410 Gone'
            WHERE id = %s""",
        (hook["id"],),
    )
    response = await patch(client, agent, hook["id"], {"is_active": False})
    assert response.json()["data"]["disabled_reason"] == "the endpoint answered 410 Gone"


async def test_patch_without_any_change_is_422_validation_error(client, agent, hook):
    for body in ({}, {"url": None}, {"events": None, "is_active": None}):
        response = await patch(client, agent, hook["id"], body)
        assert response.status_code == 422, (body, response.text)
        assert error_code(response) == "VALIDATION_ERROR"


async def test_patch_with_a_bad_field_is_422_validation_error(client, agent, hook):
    bodies = [{"events": []}, {"events": ["nope"]}, {"events": ["webhook.ping"]}, {"secret": "x"}, {"is_active": "yes"}]
    for body in bodies:
        response = await patch(client, agent, hook["id"], body)
        assert response.status_code == 422, (body, response.text)
        assert error_code(response) == "VALIDATION_ERROR"
    unchanged = (await get(client, agent, f"{WEBHOOKS}/{hook['id']}")).json()["data"]
    assert unchanged["events"] == ["claim.accepted"] and unchanged["is_active"] is True


# POST /webhooks/{id}/rotate-secret ---------------------------------------------------------------------------------


async def test_rotation_keeps_the_old_secret_signing_for_24_hours_by_default(client, conn, agent, hook):
    response = await rotate(client, agent, hook["id"])
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert set(data) == {"id", "secret", "previous_secret_expires_at"}
    assert data["id"] == hook["id"]
    assert SECRET.fullmatch(data["secret"]) and data["secret"] != hook["secret"]
    expires = moment(data["previous_secret_expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(hours=24))) < timedelta(minutes=5)
    row = await (
        await conn.execute(
            "SELECT secret, previous_secret, previous_secret_expires_at FROM webhook WHERE id = %s", (hook["id"],)
        )
    ).fetchone()
    assert (opened(row[0], hook["id"]), opened(row[1], hook["id"]), row[2]) == (data["secret"], hook["secret"], expires)
    detail = (await get(client, agent, f"{WEBHOOKS}/{hook['id']}")).json()["data"]
    assert moment(detail["previous_secret_expires_at"]) == expires


async def test_rotation_with_no_overlap_drops_the_old_secret_at_once(client, conn, agent, hook):
    await rotate(client, agent, hook["id"])  # a previous overlap that the next rotation must end
    response = await rotate(client, agent, hook["id"], {"overlap_seconds": 0})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["previous_secret_expires_at"] is None
    row = await (
        await conn.execute(
            "SELECT secret, previous_secret, previous_secret_expires_at FROM webhook WHERE id = %s", (hook["id"],)
        )
    ).fetchone()
    assert (opened(row[0], hook["id"]), row[1], row[2]) == (data["secret"], None, None)


async def test_rotation_with_a_chosen_overlap(client, conn, agent, hook):
    data = (await rotate(client, agent, hook["id"], {"overlap_seconds": 3600})).json()["data"]
    expires = moment(data["previous_secret_expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(hours=1))) < timedelta(minutes=5)
    maximum = await rotate(client, agent, hook["id"], {"overlap_seconds": 7 * 86400})
    assert maximum.status_code == 200, maximum.text
    # The overlap keeps the secret that was current just before, not the first one.
    previous = await scalar(conn, "SELECT previous_secret FROM webhook WHERE id = %s", hook["id"])
    assert opened(previous, hook["id"]) == data["secret"]


async def test_rotation_with_a_bad_overlap_is_422(client, conn, agent, hook):
    for body in ({"overlap_seconds": -1}, {"overlap_seconds": 7 * 86400 + 1}, {"overlap_seconds": "60"}, {"x": 5}):
        response = await rotate(client, agent, hook["id"], body)
        assert response.status_code == 422, (body, response.text)
        assert error_code(response) == "VALIDATION_ERROR"
    stored = await scalar(conn, "SELECT secret FROM webhook WHERE id = %s", hook["id"])
    assert opened(stored, hook["id"]) == hook["secret"]


# POST /webhooks/{id}/test ------------------------------------------------------------------------------------------


async def test_a_test_ping_is_202_with_a_pending_delivery_shown_in_the_log(client, conn, agent, hook):
    response = await ping(client, agent, hook["id"])
    assert response.status_code == 202, response.text
    delivery = response.json()["data"]
    assert delivery["webhook_id"] == hook["id"] and delivery["event"] == "webhook.ping"
    assert delivery["status"] == "pending" and delivery["attempt_count"] == 0 and delivery["attempts"] == []
    assert delivery["next_attempt_at"] and delivery["completed_at"] is None
    listed = (await deliveries(client, agent, hook["id"])).json()["data"]
    assert listed == [delivery]
    event = await (
        await conn.execute("SELECT type, agent_id, task_id, data FROM event WHERE id = %s", (delivery["event_id"],))
    ).fetchone()
    assert event[0] == "webhook.ping" and event[1] is None and event[2] is None
    assert event[3]["webhook_id"] == hook["id"]


async def test_a_test_ping_goes_to_that_endpoint_only(client, conn, agent, hook):
    sibling = await register(client, agent, events=["webhook.disabled"])
    delivery = await queued_ping(client, agent, hook["id"])
    count = "SELECT count(*) FROM webhook_delivery WHERE event_id = %s"
    assert await scalar(conn, count, delivery["event_id"]) == 1
    assert (await deliveries(client, agent, sibling["id"])).json()["data"] == []


async def test_a_test_ping_to_a_disabled_webhook_is_409_webhook_disabled(client, conn, agent, hook):
    await patch(client, agent, hook["id"], {"is_active": False})
    response = await ping(client, agent, hook["id"])
    assert response.status_code == 409, response.text
    assert error_code(response) == "WEBHOOK_DISABLED"
    assert await scalar(conn, "SELECT count(*) FROM webhook_delivery WHERE webhook_id = %s", hook["id"]) == 0


# GET /webhooks/{id}/deliveries -------------------------------------------------------------------------------------


async def test_the_delivery_log_is_newest_first_filtered_and_paginated(client, conn, agent, hook):
    made = [await queued_ping(client, agent, hook["id"]) for _ in range(4)]
    ids = [d["id"] for d in made]
    await finish(conn, ids[0], "succeeded")
    await finish(conn, ids[2], "failed", attempts=8)
    everything = (await deliveries(client, agent, hook["id"])).json()
    assert [d["id"] for d in everything["data"]] == ids[::-1]
    assert everything["meta"]["has_more"] is False
    for status, wanted in (("pending", [ids[3], ids[1]]), ("succeeded", [ids[0]]), ("failed", [ids[2]])):
        body = (await deliveries(client, agent, hook["id"], status=status)).json()
        assert [d["id"] for d in body["data"]] == wanted, status
        assert {d["status"] for d in body["data"]} == {status}
    failed = (await deliveries(client, agent, hook["id"], status="failed")).json()["data"][0]
    assert failed["attempt_count"] == 8 and failed["next_attempt_at"] is None and failed["completed_at"]
    first = (await deliveries(client, agent, hook["id"], limit=3)).json()
    assert [d["id"] for d in first["data"]] == ids[:0:-1]
    assert first["meta"]["has_more"] is True and first["meta"]["count"] == 3
    rest = (await deliveries(client, agent, hook["id"], limit=3, cursor=first["meta"]["cursor"])).json()
    assert [d["id"] for d in rest["data"]] == [ids[0]]
    assert rest["meta"]["has_more"] is False and rest["meta"]["cursor"] is None
    paged_pending = (await deliveries(client, agent, hook["id"], status="pending", limit=1)).json()
    assert [d["id"] for d in paged_pending["data"]] == [ids[3]] and paged_pending["meta"]["has_more"] is True
    after = await deliveries(
        client, agent, hook["id"], status="pending", limit=1, cursor=paged_pending["meta"]["cursor"]
    )
    assert [d["id"] for d in after.json()["data"]] == [ids[1]]


async def test_the_delivery_log_lists_each_attempt_in_order(client, conn, agent, hook):
    delivery = await queued_ping(client, agent, hook["id"])
    await finish(conn, delivery["id"], "failed", attempts=2)
    await conn.execute(
        """INSERT INTO webhook_attempt (delivery_id, attempt_number, started_at, duration_ms, outcome,
                                        response_status, response_snippet, error, next_attempt_at)
           VALUES (%(d)s, 1, '2026-01-01 10:00:00.5+00', 120, 'failed', 500, 'oops', 'HTTP 500',
                   '2026-01-01 10:00:05+00'),
                  (%(d)s, 2, '2026-01-01 10:00:05.123456+00', 10000, 'timeout', NULL, NULL, 'timed out after 10.0 s',
                   NULL)""",
        {"d": delivery["id"]},
    )
    listed = (await deliveries(client, agent, hook["id"])).json()["data"]
    assert len(listed) == 1
    attempts = listed[0]["attempts"]
    assert [a["attempt_number"] for a in attempts] == [1, 2]
    assert attempts[0] | {"started_at": None, "next_attempt_at": None} == {
        "attempt_number": 1,
        "started_at": None,
        "duration_ms": 120,
        "outcome": "failed",
        "response_status": 500,
        "response_snippet": "oops",
        "error": "HTTP 500",
        "next_attempt_at": None,
    }
    assert moment(attempts[0]["started_at"]) == datetime(2026, 1, 1, 10, 0, 0, 500000, tzinfo=UTC)
    assert moment(attempts[0]["next_attempt_at"]) == datetime(2026, 1, 1, 10, 0, 5, tzinfo=UTC)
    assert attempts[1]["outcome"] == "timeout" and attempts[1]["response_status"] is None
    assert attempts[1]["next_attempt_at"] is None and attempts[1]["error"] == "timed out after 10.0 s"
    assert moment(attempts[1]["started_at"]) == datetime(2026, 1, 1, 10, 0, 5, 123456, tzinfo=UTC)


async def test_an_unknown_status_filter_or_bad_page_is_400_invalid_parameter(client, agent, hook):
    cases = [{"status": "bogus"}, {"status": "PENDING"}, {"status": ""}, {"limit": 0}, {"limit": 101}, {"cursor": "?!"}]
    for params in cases:
        response = await deliveries(client, agent, hook["id"], **params)
        assert response.status_code == 400, (params, response.text)
        assert error_code(response) == "INVALID_PARAMETER"


# POST /webhooks/{id}/deliveries/{delivery_id}/redeliver ------------------------------------------------------------


async def test_redelivering_a_pending_delivery_is_409_delivery_pending(client, agent, hook):
    delivery = await queued_ping(client, agent, hook["id"])
    response = await redeliver(client, agent, hook["id"], delivery["id"])
    assert response.status_code == 409, response.text
    assert error_code(response) == "DELIVERY_PENDING"


async def test_redelivering_an_unknown_delivery_is_404_delivery_not_found(client, agent, hook, other):
    response = await redeliver(client, agent, hook["id"], MISSING)
    assert response.status_code == 404 and error_code(response) == "DELIVERY_NOT_FOUND"
    # Another webhook's delivery (here: another agent's) is not this webhook's.
    theirs = await register(client, other)
    their_delivery = await queued_ping(client, other, theirs["id"])
    response = await redeliver(client, agent, hook["id"], their_delivery["id"])
    assert response.status_code == 404 and error_code(response) == "DELIVERY_NOT_FOUND"


@pytest.mark.parametrize("status", ["failed", "succeeded"])
async def test_redelivering_a_finished_delivery_schedules_it_again(client, conn, agent, hook, status):
    delivery = await queued_ping(client, agent, hook["id"])
    await finish(conn, delivery["id"], status, attempts=8)
    response = await redeliver(client, agent, hook["id"], delivery["id"])
    assert response.status_code == 202, response.text
    again = response.json()["data"]
    assert again["id"] == delivery["id"] and again["event_id"] == delivery["event_id"]
    assert again["status"] == "pending" and again["attempt_count"] == 8
    assert again["next_attempt_at"] and again["completed_at"] is None
    row = await (
        await conn.execute(
            """SELECT status, attempt_count, retry_base, event_id, next_attempt_at IS NOT NULL, completed_at
                 FROM webhook_delivery WHERE id = %s""",
            (delivery["id"],),
        )
    ).fetchone()
    assert row == ("pending", 8, 8, delivery["event_id"], True, None)
    assert await scalar(conn, "SELECT count(*) FROM webhook_delivery WHERE webhook_id = %s", hook["id"]) == 1
    # Now it is pending again: a second redelivery waits for it.
    assert error_code(await redeliver(client, agent, hook["id"], delivery["id"])) == "DELIVERY_PENDING"


async def test_redelivering_on_a_disabled_webhook_is_409_webhook_disabled(client, conn, agent, hook):
    delivery = await queued_ping(client, agent, hook["id"])
    await finish(conn, delivery["id"], "failed", attempts=3)
    await patch(client, agent, hook["id"], {"is_active": False})
    response = await redeliver(client, agent, hook["id"], delivery["id"])
    assert response.status_code == 409, response.text
    assert error_code(response) == "WEBHOOK_DISABLED"
    assert await scalar(conn, "SELECT status FROM webhook_delivery WHERE id = %s", delivery["id"]) == "failed"


# Idempotency-Key ---------------------------------------------------------------------------------------------------


async def test_an_idempotent_replay_returns_the_same_webhook_and_creates_one_row(client, conn, agent):
    key = {"Idempotency-Key": "webhook-create-1"}
    first = await create(client, agent, **key)
    second = await create(client, agent, **key)
    assert first.status_code == second.status_code == 201, second.text
    assert second.headers.get("idempotency-replayed") == "true"
    assert first.json()["data"] == second.json()["data"]
    assert first.json()["data"]["secret"] == second.json()["data"]["secret"]
    assert await scalar(conn, "SELECT count(*) FROM webhook WHERE agent_id = %s", agent["id"]) == 1


async def test_an_idempotent_test_ping_queues_one_delivery(client, conn, agent, hook):
    headers = {**bearer(agent["api_key"]), "Idempotency-Key": "ping-once"}
    first = await client.post(f"{WEBHOOKS}/{hook['id']}/test", headers=headers)
    second = await client.post(f"{WEBHOOKS}/{hook['id']}/test", headers=headers)
    assert first.status_code == second.status_code == 202, second.text
    assert first.json()["data"]["id"] == second.json()["data"]["id"]
    assert await scalar(conn, "SELECT count(*) FROM webhook_delivery WHERE webhook_id = %s", hook["id"]) == 1


async def test_an_idempotency_key_reused_with_another_body_is_422_mismatch(client, conn, agent):
    key = {"Idempotency-Key": "webhook-create-2"}
    assert (await create(client, agent, **key)).status_code == 201
    response = await create(client, agent, url=OTHER_PUBLIC_URL, **key)
    assert response.status_code == 422 and error_code(response) == "IDEMPOTENCY_KEY_MISMATCH"
    assert await scalar(conn, "SELECT count(*) FROM webhook WHERE agent_id = %s", agent["id"]) == 1


# Authentication ----------------------------------------------------------------------------------------------------


async def test_operator_and_admin_keys_are_401_like_on_other_agent_routes(client, operator, admin_key, agent):
    for key in (operator["api_key"], admin_key):
        for method, path, body in [("GET", WEBHOOKS, None), ("POST", WEBHOOKS, {"url": PUBLIC_URL, "events": ["x"]})]:
            response = await client.request(method, path, json=body, headers=bearer(key))
            reference = await client.get("/api/v1/agents/me", headers=bearer(key))
            assert response.status_code == reference.status_code == 401, response.text
            assert response.json()["error"] == reference.json()["error"]
            assert error_code(response) == "UNAUTHORIZED"
    anonymous = await client.get(WEBHOOKS)
    assert anonymous.status_code == 401 and error_code(anonymous) == "UNAUTHORIZED"


async def test_a_paused_agent_is_403_forbidden(client, conn, operator, agent, hook):
    paused = await client.post(f"/api/v1/operator/agents/{agent['id']}/pause", headers=bearer(operator["api_key"]))
    assert paused.status_code == 200, paused.text
    for response in (
        await get(client, agent, WEBHOOKS),
        await create(client, agent),
        await ping(client, agent, hook["id"]),
    ):
        assert response.status_code == 403, response.text
        assert error_code(response) == "FORBIDDEN"
    assert await scalar(conn, "SELECT count(*) FROM webhook WHERE agent_id = %s", agent["id"]) == 1
