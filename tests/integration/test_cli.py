"""The real `agora` command line, run as subprocesses on the test database, then its keys used over HTTP.

These commit: every operator they create is new, so the assertions hold whatever else the database holds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import httpx
import pytest

from app.repo import migrate
from tests.support import ROOT, start_servers

pytestmark = pytest.mark.live


def agora(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGORA_DATABASE_URL": database_url, "AGORA_LOG_LEVEL": "warning"}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result.stdout.strip().splitlines()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_cli_end_to_end(database_url):
    suffix = uuid.uuid4().hex[:8]

    lines = ok(agora(database_url, "migrate"))
    assert lines[-1] == f"database at revision {migrate.head_revision()}"

    lines = ok(agora(database_url, "admin", "create-key", "--name", "ci"))
    admin_key = lines[-1]
    assert admin_key.startswith("th_admin_")
    assert len(admin_key) == len("th_admin_") + 64

    lines = ok(agora(database_url, "operators", "create", "--name", f"CLI operator {suffix}"))
    operator = json.loads(lines[0])
    operator_key = lines[-1]
    assert operator_key.startswith("th_op_")
    assert operator["api_key"] == operator_key
    assert operator["name"] == f"CLI operator {suffix}"
    assert operator["credit_balance"] == 500
    operator_id = operator["id"]

    lines = ok(
        agora(
            database_url,
            "agents",
            "create",
            "--operator",
            str(operator_id),
            "--name",
            "cli-agent",
            "--capability",
            "python",
            "--category",
            "1",
        )
    )
    agent = json.loads(lines[0])
    agent_key = lines[-1]
    assert agent_key.startswith("th_agent_")
    assert agent["operator_id"] == operator_id
    assert agent["api_key"] == agent_key

    lines = ok(agora(database_url, "credits", "grant", "--operator", str(operator_id), "--amount", "250"))
    granted = json.loads(lines[-1])
    assert granted["operator_id"] == operator_id
    assert granted["amount"] == 250
    assert granted["balance_after"] == 850  # 500 welcome + 100 agent bonus + 250

    refused = agora(database_url, "credits", "grant", "--operator", str(operator_id), "--amount=-10000")
    assert refused.returncode != 0
    assert "INSUFFICIENT_CREDITS" in refused.stderr
    assert "Traceback" not in refused.stderr

    missing = agora(database_url, "credits", "grant", "--operator", "999999999", "--amount", "5")
    assert missing.returncode != 0
    assert "OPERATOR_NOT_FOUND" in missing.stderr

    servers = start_servers(database_url, count=1)
    try:
        base = servers.urls[0]
        with httpx.Client(base_url=base, timeout=10) as http:
            me = http.get("/api/v1/agents/me", headers=bearer(agent_key))
            assert me.status_code == 200, me.text
            assert me.json()["data"]["id"] == agent["id"]
            assert me.json()["data"]["operator"] == {"id": operator_id, "name": f"CLI operator {suffix}"}
            assert me.json()["data"]["capabilities"] == ["python"]
            assert me.json()["data"]["category_ids"] == [1]

            credits = http.get("/api/v1/agents/me/credits", headers=bearer(agent_key))
            assert credits.status_code == 200, credits.text
            assert credits.json()["data"]["credit_balance"] == 850  # the refused debit changed nothing
            assert [t["amount"] for t in credits.json()["data"]["recent_transactions"]] == [250, 100, 500]

            accounts = http.get("/api/v1/admin/accounts", headers=bearer(admin_key))
            assert accounts.status_code == 200, accounts.text
            assert accounts.json()["ok"] is True
            wallets = []
            cursor = None
            while True:
                params = {"kind": "operator_wallet", "limit": 100, **({"cursor": cursor} if cursor else {})}
                response = http.get("/api/v1/admin/accounts", params=params, headers=bearer(admin_key))
                assert response.status_code == 200, response.text
                wallets += response.json()["data"]
                cursor = response.json()["meta"]["cursor"]
                if not response.json()["meta"]["has_more"]:
                    break
            mine = [w for w in wallets if w["operator_id"] == operator_id]
            assert len(mine) == 1
            assert (mine[0]["balance"], mine[0]["version"]) == (850, 3)

            # The keys are not interchangeable.
            assert http.get("/api/v1/admin/accounts", headers=bearer(agent_key)).status_code in (401, 403)
            assert http.get("/api/v1/agents/me", headers=bearer(admin_key)).status_code in (401, 403)
    finally:
        servers.stop()


def test_cli_grant_of_zero_is_a_clean_error(database_url):
    lines = ok(agora(database_url, "operators", "create", "--name", f"Zero {uuid.uuid4().hex[:8]}"))
    operator_id = json.loads(lines[0])["id"]
    result = agora(database_url, "credits", "grant", "--operator", str(operator_id), "--amount", "0")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("agora: ")
