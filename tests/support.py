"""Test helpers: a throwaway PostgreSQL, committed setup data, and real server processes."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar

import httpx

from app.crypto import new_key_entry
from app.repo.database import embedded_server_url
from app.services.uow import UnitOfWork, on_own_connection
from tests import fault_server

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]

# This test session's data key: made now (no fixed key anywhere), and put in the environment so that every process
# a test starts (servers, `agora` commands, workers) seals and opens with the same key as the in-process app.
TEST_SECRET_KEY = new_key_entry()
os.environ["AGORA_SECRET_KEY"] = TEST_SECRET_KEY


def test_database_url() -> str:
    """AGORA_TEST_DATABASE_URL when set, else a fresh embedded PostgreSQL in a temporary folder."""
    configured = os.environ.get("AGORA_TEST_DATABASE_URL")
    if configured:
        return configured
    # A short path: PostgreSQL's socket path must stay under ~100 characters.
    folder = Path(tempfile.mkdtemp(prefix="agora-test-", dir="/tmp"))
    url = embedded_server_url(folder / "pg", database="agora_test", delete_on_exit=True)
    _skip_disk_flushes(url)
    return url


def _skip_disk_flushes(url: str) -> None:
    """A throwaway server needs no data that survives the machine losing power: fsync off spares the in-process
    tests a disk flush at each of their thousands of commits. Everything PostgreSQL does for a COMMIT but that
    flush is unchanged (WAL written, locks, deferred constraints, isolation), and a server or worker killed by a
    crash test loses nothing that the operating system already holds."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("ALTER SYSTEM SET fsync = off")
        connection.execute("SELECT pg_reload_conf()")


def database_named(database_url: str, name: str) -> str:
    """The URL of database `name` on the server of `database_url`."""
    import urllib.parse

    return urllib.parse.urlunsplit(urllib.parse.urlsplit(database_url)._replace(path=f"/{name}"))


def sibling_database(database_url: str, name: str) -> str:
    """A new, empty database on the same server (dropped first if a previous run left it), as a URL."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return database_named(database_url, name)


async def run_committed_async(database_url: str, use_case: Callable[[UnitOfWork], Awaitable[T]]) -> T:
    """Run a service use case on its own connection so that its effects really commit."""
    return await on_own_connection(database_url, use_case, name="agora-test-setup", statement_timeout_ms=30_000)


def run_committed(database_url: str, use_case: Callable[[UnitOfWork], Awaitable[T]]) -> T:
    return asyncio.run(run_committed_async(database_url, use_case))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class ServerProcesses:
    """Real `uvicorn` processes serving the app on the test database, on free ports."""

    urls: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen] = field(default_factory=list)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def start_servers(
    database_url: str,
    count: int = 2,
    *,
    ports: Sequence[int] | None = None,
    output: int | IO[bytes] | None = None,
    fault_point: str | None = None,
    **settings: str,
) -> ServerProcesses:
    """`count` servers on free ports, or one on each of `ports` (a server restarted where it was); their stdout
    and stderr go to `output` (a file, or subprocess.DEVNULL) when given, else to this process's. With
    `fault_point`, each is the crash tests' server (tests/fault_server.py), which dies at that point of a commit."""
    env = {
        **os.environ,
        "AGORA_DATABASE_URL": database_url,
        "AGORA_SECRET_KEY": TEST_SECRET_KEY,
        "AGORA_LOG_LEVEL": "warning",
        "AGORA_DB_POOL_MIN": "1",
        "AGORA_DB_POOL_MAX": "20",
    }
    env.update({f"AGORA_{name.upper()}": value for name, value in settings.items()})
    factory = "app.main:app_from_environment"
    if fault_point is not None:
        env[fault_server.ENVIRONMENT] = fault_point
        factory = "tests.fault_server:app_from_environment"
    servers = ServerProcesses()
    for port in ports if ports is not None else [free_port() for _ in range(count)]:
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            factory,
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--no-proxy-headers",  # as `agora serve`: only AGORA_TRUSTED_PROXIES are believed about X-Forwarded-For
            # Idle keep-alive connections outlive the pauses between a test's bursts: uvicorn's default (5 s) can
            # close one just as the client reuses it, which surfaces as a ReadError that has nothing to do with us.
            "--timeout-keep-alive",
            "75",
        ]
        servers.processes.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=output))
        servers.urls.append(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 30
    for url in servers.urls:
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                servers.stop()
                raise RuntimeError(f"server at {url} did not start")
            time.sleep(0.1)
    return servers


async def asgi_post(
    app,
    path: str,
    chunks: list[bytes],
    headers: list[tuple[bytes, bytes]],
    *,
    complete: bool = True,
    client: tuple[str, int] = ("127.0.0.1", 50000),
) -> tuple[int, dict | None]:
    """POST straight through the ASGI interface, so the body can arrive in chunks with no Content-Length, or stop
    short (`complete=False`: the client disconnects after the last chunk). Returns the status and the JSON body
    (None when the response has no body)."""
    messages = [
        {"type": "http.request", "body": chunk, "more_body": not complete or index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": client,
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body) if body else None
