"""Secrets at rest, in process (DESIGN §10; reliability.md §6.3 SEC-E1..E3): stored idempotent responses and webhook
secrets are sealed to their row, replays and signatures still work, and a key rotation leaves nothing under the old
key. Each test runs in a rolled-back transaction; the rotation runs on a database of its own, so that it counts
exactly what it created."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import psycopg
import pytest
from litestar.testing import AsyncTestClient
from standardwebhooks.webhooks import Webhook

from app.config import Settings, SettingsError
from app.crypto import KeyRing, SealError, sealed_key_id
from app.main import create_app
from app.repo import migrate
from app.repo.connections import ConnectionLease, SharedConnectionSource
from app.repo.database import key_file, load_keyring, resolve_secret_key, uses_key_file
from app.repo.deliveries import DueDelivery
from app.repo.sealed import SEALED_COLUMNS
from app.services import admin, sealing
from app.services.uow import UnitOfWork
from app.workers.webhook_dispatcher import DeliveryWorker, delivery_body, signed_headers
from tests.conftest import TEST_SETTINGS, bearer
from tests.support import sibling_database

AGENT_BODY = {"name": "Sealed", "description": "has a key shown once", "capabilities": ["python"]}
HOOK_BODY = {"url": "https://93.184.216.34/agora", "events": ["task.created"]}  # a public address: no DNS
REPLAYED = "idempotency-replayed"
SESSION_RING = KeyRing.parse(TEST_SETTINGS.secret_key)


def keyed(api_key: str, key: str) -> dict[str, str]:
    return {**bearer(api_key), "Idempotency-Key": key}


async def scalar(conn: psycopg.AsyncConnection, sql: str, *params: object) -> object:
    return (await (await conn.execute(sql, params)).fetchone())[0]


def readable(secret: str, stored: bytes) -> bool:
    """Whether a stored value shows the secret, as text or as the hex a dump writes bytea in."""
    return secret.encode() in stored or secret.encode().hex().encode() in stored.hex().encode()


@contextlib.asynccontextmanager
async def app_client(conn: psycopg.AsyncConnection, keyring: KeyRing) -> AsyncIterator[AsyncTestClient]:
    app = create_app(TEST_SETTINGS.with_overrides(secret_key=keyring.to_text()), source=SharedConnectionSource(conn))
    async with AsyncTestClient(app=app) as client:
        yield client


def worker_with(keyring: KeyRing) -> DeliveryWorker:
    return DeliveryWorker(SharedConnectionSource(None), None, TEST_SETTINGS, keyring=keyring)  # type: ignore[arg-type]


def due(webhook_id: int, sealed_secrets: tuple[bytes, ...]) -> DueDelivery:
    return DueDelivery(
        id=1,
        webhook_id=webhook_id,
        attempt_number=1,
        attempts_in_round=1,
        url=HOOK_BODY["url"],
        sealed_secrets=sealed_secrets,
        event_id=7,
        event_type="webhook.ping",
        event_data=b'{"message":"hi"}',
        event_created_at=datetime.now(UTC),
    )


# SEC-E1 and replay ----------------------------------------------------------------------------------------------


async def test_a_replay_returns_the_original_response_byte_for_byte_from_a_sealed_record(client, conn, operator):
    headers = keyed(operator["api_key"], "sealed-create-agent")
    first = await client.post("/api/v1/operator/agents", json=AGENT_BODY, headers=headers)
    assert first.status_code == 201, first.text
    api_key = first.json()["data"]["api_key"]
    replays = [await client.post("/api/v1/operator/agents", json=AGENT_BODY, headers=headers) for _ in range(3)]
    for replay in replays:
        assert replay.content == first.content
        assert (replay.status_code, replay.headers[REPLAYED]) == (201, "true")
        assert replay.headers["content-type"] == first.headers["content-type"]
    assert REPLAYED not in first.headers

    stored = await scalar(
        conn,
        "SELECT response_body FROM idempotency_key WHERE principal = %s AND key = %s",
        f"operator:{operator['id']}",
        "sealed-create-agent",
    )
    assert not readable(api_key, stored) and b"Sealed" not in stored
    assert sealed_key_id(stored) == SESSION_RING.primary_id
    context = sealing.idempotency_context(f"operator:{operator['id']}", "sealed-create-agent")
    assert SESSION_RING.open(stored, context) == first.content


async def test_a_stored_response_copied_into_another_record_does_not_replay(client, conn, operator):
    """SEC-E2: the response of key A written into key B's row is refused, not replayed to B's caller."""
    principal = f"operator:{operator['id']}"
    a = await client.post("/api/v1/operator/agents", json=AGENT_BODY, headers=keyed(operator["api_key"], "copy-a"))
    b = await client.post("/api/v1/operator/agents", json=AGENT_BODY, headers=keyed(operator["api_key"], "copy-b"))
    assert a.status_code == b.status_code == 201
    await conn.execute(
        """UPDATE idempotency_key SET response_body = (SELECT response_body FROM idempotency_key
                                                        WHERE principal = %(p)s AND key = 'copy-a')
            WHERE principal = %(p)s AND key = 'copy-b'""",
        {"p": principal},
    )
    with pytest.raises(SealError):  # the service refuses it ...
        SESSION_RING.open(
            await scalar(conn, "SELECT response_body FROM idempotency_key WHERE key = 'copy-b'"),
            sealing.idempotency_context(principal, "copy-b"),
        )
    moved = await client.post("/api/v1/operator/agents", json=AGENT_BODY, headers=keyed(operator["api_key"], "copy-b"))
    assert moved.status_code == 500 and moved.json()["error"]["code"] == "INTERNAL_ERROR"  # ... and so does the API
    assert a.json()["data"]["api_key"] not in moved.text
    again = await client.post("/api/v1/operator/agents", json=AGENT_BODY, headers=keyed(operator["api_key"], "copy-a"))
    assert again.content == a.content and again.headers[REPLAYED] == "true"


async def test_webhook_secrets_are_sealed_to_their_row_and_open_for_signing(client, conn, agent):
    hook = (await client.post("/api/v1/webhooks", json=HOOK_BODY, headers=bearer(agent["api_key"]))).json()["data"]
    other = (await client.post("/api/v1/webhooks", json=HOOK_BODY, headers=bearer(agent["api_key"]))).json()["data"]
    rotated = await client.post(
        f"/api/v1/webhooks/{hook['id']}/rotate-secret", json={}, headers=bearer(agent["api_key"])
    )
    new_secret = rotated.json()["data"]["secret"]
    secret, previous = await (
        await conn.execute("SELECT secret, previous_secret FROM webhook WHERE id = %s", (hook["id"],))
    ).fetchone()
    for stored, plain in ((secret, new_secret), (previous, hook["secret"])):
        assert not readable(plain, stored)
        assert SESSION_RING.open(stored, sealing.webhook_context(hook["id"])).decode() == plain
    with pytest.raises(SealError):  # SEC-E2: the secret copied to another endpoint's row does not open there
        SESSION_RING.open(secret, sealing.webhook_context(other["id"]))

    # The delivery worker opens both (current first) and signs so that a receiver with either secret verifies.
    delivery = due(hook["id"], (secret, previous))
    body = delivery_body(delivery)
    secrets = worker_with(SESSION_RING)._open_secrets(delivery)
    assert secrets == (new_secret, hook["secret"])
    headers = signed_headers(delivery, body, int(datetime.now(UTC).timestamp()), secrets)
    for receiver_secret in secrets:
        assert Webhook(receiver_secret).verify(body, headers) == json.loads(body)
    with pytest.raises(SealError):
        worker_with(SESSION_RING)._open_secrets(due(other["id"], (secret,)))


# SEC-E3: rotation -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rotation_database_url(database_url: str) -> str:
    url = sibling_database(database_url, "agora_rotation")
    migrate.upgrade(url)
    return url


@pytest.fixture
async def rotation_conn(rotation_database_url: str) -> AsyncIterator[psycopg.AsyncConnection]:
    connection = await psycopg.AsyncConnection.connect(rotation_database_url, autocommit=True)
    await connection.execute("BEGIN")
    try:
        yield connection
    finally:
        await connection.execute("ROLLBACK")
        await connection.close()


async def all_sealed(conn: psycopg.AsyncConnection) -> list[tuple[str, str, bytes]]:
    """(column, context, stored value) for every sealed value in the database."""
    found = []
    for column in SEALED_COLUMNS:
        context = ", ".join(f"{name}::text" for name in column.context_columns)
        cursor = await conn.execute(
            f"SELECT {column.column}, {context} FROM {column.table} WHERE {column.column} IS NOT NULL"
        )
        for stored, *parts in await cursor.fetchall():
            found.append((column.name, sealing.context(column.purpose, *parts), bytes(stored)))
    return found


async def test_rotation_reseals_everything_then_the_old_key_can_go(rotation_conn):
    conn, old = rotation_conn, SESSION_RING
    admin_key = await admin.create_admin_key(UnitOfWork(ConnectionLease(SharedConnectionSource(conn))), name="rot")
    async with app_client(conn, old) as client:
        operator = (
            await client.post("/api/v1/admin/operators", json={"name": "Rot"}, headers=keyed(admin_key, "rot-op"))
        ).json()["data"]
        create_agent = await client.post(
            "/api/v1/operator/agents", json=AGENT_BODY, headers=keyed(operator["api_key"], "rot-agent")
        )
        agent = create_agent.json()["data"]
        hook = await client.post("/api/v1/webhooks", json=HOOK_BODY, headers=keyed(agent["api_key"], "rot-hook"))
        rotate = await client.post(
            f"/api/v1/webhooks/{hook.json()['data']['id']}/rotate-secret",
            json={},
            headers=keyed(agent["api_key"], "rot-rotate"),
        )
        assert rotate.status_code == 200, rotate.text
    before = await all_sealed(conn)
    assert len(before) == 6  # four stored responses, a secret and the previous one
    assert {sealed_key_id(stored) for _, _, stored in before} == {old.primary_id}

    rotating = old.with_new_key()
    new_only = rotating.only_primary()
    async with app_client(conn, new_only) as client:  # the new key alone cannot read them yet (not vacuous)
        refused = await client.post(
            "/api/v1/operator/agents", json=AGENT_BODY, headers=keyed(operator["api_key"], "rot-agent")
        )
        assert refused.status_code == 500

    lease = ConnectionLease(SharedConnectionSource(conn))
    report = await sealing.reseal_all(lease, rotating)
    assert report.total == 6 and report.resealed["idempotency_key.response_body"] == 4
    assert report.census == {
        "idempotency_key.response_body": {rotating.primary_id: 4},
        "webhook.secret": {rotating.primary_id: 1},
        "webhook.previous_secret": {rotating.primary_id: 1},
    }
    assert old.primary_id not in report.key_ids_in_use()  # 0 rows under the old key id: it may be dropped
    assert (await sealing.reseal_all(lease, rotating)).total == 0  # nothing left to do

    after = await all_sealed(conn)
    plaintexts = {(name, context): old.open(stored, context) for name, context, stored in before}
    assert {(name, context): new_only.open(stored, context) for name, context, stored in after} == plaintexts
    async with app_client(conn, new_only) as client:
        replay = await client.post(
            "/api/v1/operator/agents", json=AGENT_BODY, headers=keyed(operator["api_key"], "rot-agent")
        )
    assert replay.content == create_agent.content and replay.headers[REPLAYED] == "true"
    hook_id = hook.json()["data"]["id"]
    row = await (await conn.execute("SELECT secret, previous_secret FROM webhook WHERE id = %s", (hook_id,))).fetchone()
    opened = worker_with(new_only)._open_secrets(due(hook_id, (row[0], row[1])))
    assert opened == (rotate.json()["data"]["secret"], hook.json()["data"]["secret"])


# Where the key comes from -----------------------------------------------------------------------------------------


def test_the_embedded_databases_key_file_is_made_once_private_and_reused(tmp_path):
    settings = Settings(data_dir=str(tmp_path / "data"))
    assert uses_key_file(settings)
    made = resolve_secret_key(settings)
    path = key_file(settings)
    assert path.stat().st_mode & 0o777 == 0o600
    assert resolve_secret_key(settings) == made == path.read_text()
    assert load_keyring(settings).key_ids == KeyRing.parse(made).key_ids
    assert not list(path.parent.glob(".secret_key.*"))  # no staged copy left behind
    path.chmod(0o640)
    with pytest.raises(SettingsError, match="chmod 600"):
        resolve_secret_key(settings)
    path.chmod(0o600)
    path.write_text("\n")
    with pytest.raises(SettingsError, match="holds no key"):
        load_keyring(settings)


def test_a_configured_database_needs_the_key_in_the_environment(tmp_path):
    configured = Settings(data_dir=str(tmp_path), database_url="postgresql://agora@db.internal/agora")
    with pytest.raises(SettingsError, match=r"AGORA_SECRET_KEY is not set.*agora secrets new-key"):
        load_keyring(configured)
    given = configured.with_overrides(secret_key=TEST_SETTINGS.secret_key)
    assert load_keyring(given).key_ids == SESSION_RING.key_ids
    assert not key_file(given).exists()  # never a key made up for a configured database
    assert load_keyring(Settings(data_dir=str(tmp_path), secret_key=TEST_SETTINGS.secret_key)).key_ids == (
        SESSION_RING.key_ids
    )
    assert not key_file(given).exists()  # AGORA_SECRET_KEY wins over the key file
