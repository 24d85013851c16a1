"""Migration 0006 and the seal pass: plaintext stored before it is kept, marked, sealed by the pass that runs with the
key, and never lost (a stored response that went would let its retry run twice). On a database of its own, walked
from revision 0005 up."""

from __future__ import annotations

import json

import psycopg
import pytest
from alembic import command
from litestar.testing import AsyncTestClient

from app.crypto import KeyRing, SealError, sealed_key_id
from app.http.security import _fingerprint
from app.main import create_app
from app.repo import migrate
from app.repo.connections import SharedConnectionSource
from app.services import operators, sealing
from app.services.agents import AgentProfile
from tests.conftest import TEST_SETTINGS, bearer
from tests.support import run_committed, run_committed_async, sibling_database

RING = KeyRing.parse(TEST_SETTINGS.secret_key)
LEGACY_SECRET = "whsec_" + "1" * 48
LEGACY_PREVIOUS = "whsec_" + "2" * 48
HOOK_REQUEST = {"url": "https://93.184.216.34/legacy", "events": ["task.created"]}
PATH = "/api/v1/webhooks"


def stored_values(url: str) -> dict[str, bytes]:
    with psycopg.connect(url, autocommit=True) as connection:
        (body,) = connection.execute("SELECT response_body FROM idempotency_key WHERE key = 'legacy'").fetchone()
        secret, previous = connection.execute("SELECT secret, previous_secret FROM webhook").fetchone()
    return {"body": bytes(body), "secret": bytes(secret), "previous": bytes(previous)}


@pytest.fixture(scope="module")
def legacy(database_url: str) -> dict:
    """A database at 0005 holding a webhook with both secrets and a stored response in plaintext, as before 0006."""
    url = sibling_database(database_url, "agora_legacy")
    # Today's services make the operator and agent, so they run on today's schema; the walk back to 0005 keeps them.
    migrate.upgrade(url)
    operator = run_committed(url, lambda uow: operators.create_operator(uow, name="Legacy"))
    profile = AgentProfile("Legacy", "has a webhook from before 0006")
    created = run_committed(
        url, lambda uow: operators.create_agent(uow, operator_id=operator.operator.id, profile=profile)
    )
    command.downgrade(migrate.alembic_config(url), "0005")
    response = json.dumps({"ok": True, "data": {"id": 1, "secret": LEGACY_SECRET}}, separators=(",", ":")).encode()
    with psycopg.connect(url, autocommit=True) as connection:
        (webhook_id,) = connection.execute(
            """INSERT INTO webhook (agent_id, url, events, secret, previous_secret, previous_secret_expires_at)
               VALUES (%s, %s, %s, %s, %s, now() + interval '1 day') RETURNING id""",
            (created.agent.id, HOOK_REQUEST["url"], HOOK_REQUEST["events"], LEGACY_SECRET, LEGACY_PREVIOUS),
        ).fetchone()
        connection.execute(
            """INSERT INTO idempotency_key (principal, key, fingerprint, method, path, response_status,
                                            response_content_type, response_body, expires_at)
               VALUES (%s, 'legacy', %s, 'POST', %s, 201, 'application/json', %s, now() + interval '1 day')""",
            (
                f"agent:{created.agent.id}",
                _fingerprint("POST", PATH, json.dumps(HOOK_REQUEST).encode()),
                PATH,
                response,
            ),
        )
    return {
        "url": url,
        "agent_id": created.agent.id,
        "key": created.api_key,
        "webhook_id": webhook_id,
        "response": response,
    }


async def seal_pass(url: str) -> sealing.ResealReport:
    return await run_committed_async(url, lambda uow: sealing.seal_unsealed(uow.lease, RING))


async def replay_legacy_request(url: str, api_key: str) -> tuple[int, str | None, bytes]:
    # Run as in production, committing: a replay writes nothing but the caller's rate-limit count and last use.
    connection = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:
        app = create_app(TEST_SETTINGS, source=SharedConnectionSource(connection))
        async with AsyncTestClient(app=app) as client:
            headers = {**bearer(api_key), "Idempotency-Key": "legacy"}
            response = await client.post(PATH, content=json.dumps(HOOK_REQUEST), headers=headers)
        return response.status_code, response.headers.get("idempotency-replayed"), response.content
    finally:
        await connection.close()


def test_the_migration_keeps_plaintext_marked_unsealed_and_a_downgrade_gives_it_back(legacy):
    url = legacy["url"]
    migrate.upgrade(url)
    marked = stored_values(url)
    assert marked == {
        "body": b"\x00" + legacy["response"],
        "secret": b"\x00" + LEGACY_SECRET.encode(),
        "previous": b"\x00" + LEGACY_PREVIOUS.encode(),
    }
    for value in marked.values():  # never taken for a sealed value, so never served as it is
        assert sealed_key_id(value) is None
        with pytest.raises(SealError, match="not a sealed value"):
            RING.open(value, sealing.webhook_context(legacy["webhook_id"]))
    command.downgrade(migrate.alembic_config(url), "0005")  # nothing sealed yet: the way back is open
    with psycopg.connect(url, autocommit=True) as connection:
        assert connection.execute("SELECT secret, previous_secret FROM webhook").fetchone() == (
            LEGACY_SECRET,
            LEGACY_PREVIOUS,
        )
        (body,) = connection.execute("SELECT response_body FROM idempotency_key WHERE key = 'legacy'").fetchone()
    assert bytes(body) == legacy["response"]


async def test_the_seal_pass_seals_each_marked_value_once_and_the_old_retry_still_replays(legacy):
    url = legacy["url"]
    migrate.upgrade(url)
    assert (await seal_pass(url)).resealed == {
        "idempotency_key.response_body": 1,
        "webhook.secret": 1,
        "webhook.previous_secret": 1,
    }
    assert (await seal_pass(url)).total == 0  # what every start runs costs nothing once done
    sealed = stored_values(url)
    for name, plain in (("secret", LEGACY_SECRET), ("previous", LEGACY_PREVIOUS)):
        assert plain.encode() not in sealed[name] and sealed_key_id(sealed[name]) == RING.primary_id
        assert RING.open(sealed[name], sealing.webhook_context(legacy["webhook_id"])).decode() == plain
    assert LEGACY_SECRET.encode() not in sealed["body"] and sealed_key_id(sealed["body"]) == RING.primary_id

    # The retry of a request stored before the migration is still replayed, byte for byte.
    assert await replay_legacy_request(url, legacy["key"]) == (201, "true", legacy["response"])

    with pytest.raises(RuntimeError, match="cannot downgrade below 0006"):  # only the key could open them
        command.downgrade(migrate.alembic_config(url), "0005")
    assert stored_values(url) == sealed  # the refused downgrade changed nothing
    assert migrate.current_revision(url) == migrate.head_revision()
