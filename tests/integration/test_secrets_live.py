"""Secrets at rest with real processes (DESIGN §10; reliability.md SEC-K1, SEC-E1): every key and webhook secret the
API issues is absent from a pg_dump of the database and from the server's logs; `agora serve` refuses a configured
database without AGORA_SECRET_KEY; the embedded database keeps its key in the data folder and rotates it.

pg_dump is the one pgserver bundles (it matches the embedded server); else the newest in /usr/lib/postgresql.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from standardwebhooks.webhooks import Webhook

from app.crypto import KeyRing, new_key_entry
from tests.support import ROOT, TEST_SECRET_KEY, free_port, sibling_database
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.live

AGORA = str(Path(sys.executable).with_name("agora"))
REPLAYED = "idempotency-replayed"


def pg_dump_binary() -> str:
    import pgserver

    bundled = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_dump"
    system = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"), key=lambda p: int(p.parts[-3]), reverse=True)
    for candidate in (bundled, *system):
        if candidate.exists():
            return str(candidate)
    pytest.fail("no pg_dump: neither pgserver's bundled one nor /usr/lib/postgresql/*/bin/pg_dump")


def pg_dump(url: str) -> str:
    dump = subprocess.run([pg_dump_binary(), "--no-owner", "--no-privileges", url], capture_output=True, check=True)
    return dump.stdout.decode()


def forms(secret: str) -> list[str]:
    """How a secret could show in a dump or a log: as written, hex (bytea), base64, and its random part alone."""
    raw = secret.encode()
    shown = [secret, raw.hex(), base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("=")]
    # The part after a known prefix (splitting on "_" would cut a base64url data key, whose alphabet has "_", into
    # fragments short enough to occur anywhere in a dump by chance).
    prefix = next((p for p in ("th_agent_", "th_op_", "th_admin_", "whsec_") if secret.startswith(p)), "")
    return [*shown, secret.removeprefix(prefix)]


def leaked(secrets: dict[str, str], text: str) -> dict[str, list[str]]:
    lowered = text.lower()
    found = {
        name: [form for form in forms(s) if form in text or form.lower() in lowered] for name, s in secrets.items()
    }
    return {name: hits for name, hits in found.items() if hits}


def agora_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGORA_")}
    env.update({f"AGORA_{name.upper()}": value for name, value in settings.items()})
    return env


def agora(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AGORA, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def ok(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result.stdout.strip().splitlines()


@contextlib.contextmanager
def serving(env: dict[str, str], log: Path) -> Iterator[str]:
    """`agora serve` (which migrates and seals first) until the block ends; its stdout and stderr go to `log`."""
    port = free_port()
    with log.open("ab") as output:
        process = subprocess.Popen(
            [AGORA, "serve", "--port", str(port)], cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            assert process.poll() is None, f"agora serve exited {process.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"agora serve did not start:\n{log.read_text()}"
            time.sleep(0.2)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def keyed(key: str | None, idempotency_key: str) -> dict[str, str]:
    return {"Idempotency-Key": idempotency_key, **({"Authorization": f"Bearer {key}"} if key else {})}


# THE check -------------------------------------------------------------------------------------------------------


async def test_no_issued_key_or_webhook_secret_is_in_a_database_dump_or_the_server_logs(database_url, tmp_path):
    url = sibling_database(database_url, "agora_dump")  # empty: `agora serve` migrates it
    env = agora_env(
        database_url=url,
        secret_key=TEST_SECRET_KEY,
        workers="2",  # both uvicorn workers must share the key: replays and rotations go to either
        log_format="json",
        log_level="debug",
        webhook_allow_cidrs="127.0.0.1/32",
        rate_limit_per_minute="100000",
    )
    log = tmp_path / "server.log"
    issued: dict[str, str] = {"data key": TEST_SECRET_KEY.split(":")[1]}
    issued["admin key"] = ok(agora(env, "admin", "create-key", "--name", "dump"))[-1]
    idempotency_keys: list[str] = []
    responses: list[tuple[str, str, dict, httpx.Response]] = []
    no_keep_alive = httpx.Limits(max_keepalive_connections=0)  # a new connection each time: either worker answers

    async with Receiver() as receiver:
        with serving(env, log) as base:
            async with httpx.AsyncClient(base_url=f"{base}/api/v1", timeout=15, limits=no_keep_alive) as http:

                async def post(name: str, path: str, body: dict, key: str | None) -> dict:
                    idempotency_key = f"dump-{name}-{uuid.uuid4()}"
                    idempotency_keys.append(idempotency_key)
                    response = await http.post(path, json=body, headers=keyed(key, idempotency_key))
                    assert response.status_code in (200, 201), response.text
                    responses.append((path, idempotency_key, body, response))
                    return response.json()["data"]

                operator = await post("operator", "/admin/operators", {"name": "Dump"}, issued["admin key"])
                issued["operator key"] = operator["api_key"]
                agent_body = {"name": "Dumped", "description": "has a key shown once", "capabilities": ["python"]}
                agent = await post("agent", "/operator/agents", agent_body, issued["operator key"])
                issued["agent key"] = agent["api_key"]
                rotated = await post(
                    "rotate-key", f"/operator/agents/{agent['id']}/rotate-key", {}, operator["api_key"]
                )
                issued["rotated agent key"] = rotated["api_key"]
                registered = await post(
                    "register", "/agents/register", {"name": "selfreg", "description": "alone"}, None
                )
                issued["self-registered agent key"] = registered["api_key"]
                hook_body = {"url": receiver.url("/dump"), "events": ["task.created"]}
                hook = await post("webhook", "/webhooks", hook_body, issued["rotated agent key"])
                issued["webhook secret"] = hook["secret"]
                rotation = await post("rotate-secret", f"/webhooks/{hook['id']}/rotate-secret", {}, rotated["api_key"])
                issued["rotated webhook secret"] = rotation["secret"]

                # Every stored response replays byte for byte, on whichever worker takes the connection.
                for path, idempotency_key, body, first in responses:
                    key = first.request.headers.get("authorization", "").removeprefix("Bearer ") or None
                    for _ in range(4):
                        again = await http.post(path, json=body, headers=keyed(key, idempotency_key))
                        assert (again.status_code, again.headers.get(REPLAYED)) == (first.status_code, "true")
                        assert again.content == first.content

                # The delivery worker opens the sealed secrets to sign: both verify during the rotation's overlap.
                ping = await http.post(f"/webhooks/{hook['id']}/test", headers=keyed(rotated["api_key"], "dump-ping"))
                assert ping.status_code in (200, 201, 202), ping.text
                await receiver.wait_for(1, within=30)
                delivered = receiver.requests[0]
                for secret in (rotation["secret"], hook["secret"]):
                    assert Webhook(secret).verify(delivered.body, delivered.headers)["event"] == "webhook.ping"

    assert len(issued) == 8
    dump = pg_dump(url)
    assert leaked(issued, dump) == {}
    logs = log.read_text()
    assert leaked(issued, logs) == {}

    # Not vacuous: the dump holds the stored responses (their keys are not secret) with bytea written as hex, the
    # rows the secrets would be in, and the logs hold a line for every request.
    with psycopg.connect(url, autocommit=True) as connection:
        (sealed_body,) = connection.execute(
            "SELECT response_body FROM idempotency_key WHERE key = %s", (idempotency_keys[1],)
        ).fetchone()
        (stored,) = connection.execute("SELECT count(*) FROM idempotency_key").fetchone()
    assert stored >= len(idempotency_keys)
    assert all(key in dump for key in idempotency_keys)
    assert bytes(sealed_body).hex() in dump
    assert "COPY public.webhook " in dump and "COPY public.api_key " in dump
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("event") == "request" and line.get("method") == "POST"]
    assert len(requests) >= len(responses) * 5 + 1, logs[-2000:]

    # Rotating from the environment: the new key first, every value re-sealed, the old key named as unused.
    new = new_key_entry()
    rotate = ok(agora({**env, "AGORA_SECRET_KEY": f"{new},{TEST_SECRET_KEY}"}, "secrets", "rotate"))
    report = json.loads("\n".join(rotate))
    new_id, old_id = KeyRing.parse(new).primary_id, KeyRing.parse(TEST_SECRET_KEY).primary_id
    assert report["sealing_key"] == new_id and report["unused_keys"] == [old_id]
    assert report["values"]["webhook.secret"] == {new_id: 1}
    status = json.loads("\n".join(ok(agora({**env, "AGORA_SECRET_KEY": new}, "secrets", "status"))))
    assert status["values"]["idempotency_key.response_body"] == {new_id: stored}
    assert leaked({"new data key": new.split(":")[1]}, pg_dump(url)) == {}


# Refusals and the data folder's key file ---------------------------------------------------------------------------


def test_a_configured_database_without_a_key_is_refused_with_how_to_make_one(database_url):
    env = agora_env(database_url=database_url)
    for command in (["serve"], ["worker", "--once"], ["migrate"], ["secrets", "rotate"]):
        refused = agora(env, *command, timeout=60)
        assert refused.returncode != 0, command
        assert "AGORA_SECRET_KEY is not set" in refused.stderr and "agora secrets new-key" in refused.stderr
        assert "Traceback" not in refused.stderr
    made = [ok(agora(env, "secrets", "new-key"))[-1] for _ in range(2)]
    assert made[0] != made[1]
    assert [KeyRing.parse(entry).key_ids for entry in made] == [(entry.split(":")[0],) for entry in made]


def test_the_embedded_database_keeps_its_key_in_the_data_folder_reuses_it_and_rotates_it():
    folder = Path(tempfile.mkdtemp(prefix="agora-key-", dir="/tmp"))  # short: the PostgreSQL socket lives in it
    env = agora_env(data_dir=str(folder), webhook_worker="false", log_format="json", rate_limit_per_minute="100000")
    log = folder / "server.log"
    key_file = folder / "secret_key"
    try:
        with serving(env, log) as base:
            assert key_file.exists() and key_file.stat().st_mode & 0o777 == 0o600
            first_ring = KeyRing.parse(key_file.read_text())
            admin_key = ok(agora(env, "admin", "create-key", "--name", "embedded"))[-1]
            headers = keyed(admin_key, "embedded-operator")
            created = httpx.post(f"{base}/api/v1/admin/operators", json={"name": "Embedded"}, headers=headers)
            assert created.status_code == 201, created.text
            busy = agora(env, "secrets", "rotate")  # a running server holds the ring in memory: refused
            assert busy.returncode != 0 and "stop the processes using this data folder" in busy.stderr

        def replayed(base: str) -> httpx.Response:
            again = httpx.post(f"{base}/api/v1/admin/operators", json={"name": "Embedded"}, headers=headers)
            assert again.headers.get(REPLAYED) == "true", again.text
            return again

        with serving(env, log) as base:  # the second start reuses the key: the sealed response still opens
            assert replayed(base).content == created.content
        assert KeyRing.parse(key_file.read_text()).key_ids == first_ring.key_ids

        report = json.loads("\n".join(ok(agora(env, "secrets", "rotate"))))
        second_ring = KeyRing.parse(key_file.read_text())
        assert second_ring.key_ids == (report["sealing_key"],) and report["dropped_keys"] == [first_ring.primary_id]
        assert report["resealed"]["idempotency_key.response_body"] >= 1
        assert key_file.stat().st_mode & 0o777 == 0o600
        with serving(env, log) as base:  # after the rotation, under the new key alone
            assert replayed(base).content == created.content
        status = json.loads("\n".join(ok(agora(env, "secrets", "status"))))
        assert set(status["values"]["idempotency_key.response_body"]) == {second_ring.primary_id}
        assert leaked({"first key": first_ring.to_text(), "second key": second_ring.to_text()}, log.read_text()) == {}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
