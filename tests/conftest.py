"""Fixtures: one PostgreSQL per run; each in-process test gets a database of its own, cloned from a migrated
template, so that requests commit for real (deferred constraints, isolation levels and COMMIT itself behave as in
production) and nothing one test does is seen by another."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.config import Settings
from app.main import create_app
from app.repo import migrate
from app.repo.connections import SharedConnectionSource
from app.services import admin
from app.services.uow import UnitOfWork
from tests import database_pool
from tests.support import TEST_SECRET_KEY, sibling_database, test_database_url

# In-process tests make many calls per test; the rate limit has tests of its own.
TEST_SETTINGS = Settings(
    rate_limit_per_minute=100_000, log_format="console", log_level="warning", secret_key=TEST_SECRET_KEY
)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    url = test_database_url()
    migrate.upgrade(url)
    yield url


@pytest.fixture(scope="session")
def own_database_url(database_url: str) -> str:
    """A migrated database of its own, for tests whose cost grows with everything other tests committed (the
    model-based test audits the whole ledger after every step)."""
    url = sibling_database(database_url, "agora_model")
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def test_databases(database_url: str) -> Iterator[database_pool.TestDatabases]:
    databases = database_pool.TestDatabases(database_url)
    yield databases
    databases.close()


@pytest.fixture
def test_database(test_databases: database_pool.TestDatabases) -> Iterator[str]:
    """This test's own migrated database (dropped after the test)."""
    url = test_databases.take()
    yield url
    test_databases.give_back(url)


@pytest.fixture
async def conn(test_database: str) -> AsyncIterator[psycopg.AsyncConnection]:
    """An autocommit connection to this test's own database; the app's requests in this test run on it too."""
    connection = await psycopg.AsyncConnection.connect(test_database, autocommit=True)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
def settings() -> Settings:
    return TEST_SETTINGS


# Building the application takes ~0.3 s (Litestar inspects every handler): one per distinct settings, shared by
# the tests, each of which points it at its own rolled-back connection.
_APPS: dict[Settings, Litestar] = {}


@pytest.fixture
async def client(conn: psycopg.AsyncConnection, settings: Settings) -> AsyncIterator[AsyncTestClient]:
    source = SharedConnectionSource(conn)
    app = _APPS.get(settings)
    if app is None:
        app = _APPS[settings] = create_app(settings, source=source)
    app.state.source = source
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


@pytest.fixture
def uow(conn: psycopg.AsyncConnection) -> UnitOfWork:
    from app.repo.connections import ConnectionLease

    return UnitOfWork(ConnectionLease(SharedConnectionSource(conn)))


@pytest.fixture
async def admin_key(conn: psycopg.AsyncConnection) -> str:
    from app.repo.connections import ConnectionLease

    return await admin.create_admin_key(UnitOfWork(ConnectionLease(SharedConnectionSource(conn))), name="test")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def operator(client: AsyncTestClient, admin_key: str) -> dict:
    """A fresh operator (with its key in `api_key`), created through the admin API."""
    response = await client.post("/api/v1/admin/operators", json={"name": "Acme"}, headers=bearer(admin_key))
    assert response.status_code == 201, response.text
    return response.json()["data"]


@pytest.fixture
async def agent(client: AsyncTestClient, operator: dict) -> dict:
    """An active agent of `operator` (with its key in `api_key`)."""
    response = await client.post(
        "/api/v1/operator/agents",
        json={"name": "Worker", "description": "Writes Python", "capabilities": ["python"]},
        headers=bearer(operator["api_key"]),
    )
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def add_agent(client, operator: dict, name: str, **fields) -> dict:
    """An agent of `operator` (its dict carries the operator under `operator`)."""
    response = await client.post(
        "/api/v1/operator/agents",
        json={"name": name, "description": "bot", **fields},
        headers=bearer(operator["api_key"]),
    )
    assert response.status_code == 201, response.text
    return {**response.json()["data"], "operator": operator}


async def new_agent(client, admin_key: str, name: str, **fields) -> dict:
    """A new operator (500 credits) with one agent (+100); the agent dict carries its operator under `operator`."""
    response = await client.post("/api/v1/admin/operators", json={"name": name}, headers=bearer(admin_key))
    assert response.status_code == 201, response.text
    return await add_agent(client, response.json()["data"], f"{name}-bot", **fields)


@pytest.fixture
async def poster(client: AsyncTestClient, admin_key: str) -> dict:
    """An agent of an operator of its own, that posts."""
    return await new_agent(client, admin_key, "poster")


@pytest.fixture
async def worker(client: AsyncTestClient, admin_key: str) -> dict:
    """An agent of another operator, that bids and delivers."""
    return await new_agent(client, admin_key, "worker")
