"""The authentication statement commits asynchronously, and only itself: it writes bookkeeping (the rate limit's
counter, a key's last_used_at), while everything after it on the connection commits durably."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.repo import auth
from domain.keys import hash_key


def _check(key: str) -> auth.KeyCheck:
    return auth.KeyCheck(hash_key(key), "admin", timedelta(milliseconds=1), timedelta(minutes=1))


async def _setting(conn) -> str:
    cursor = await conn.execute("SHOW synchronous_commit")
    (value,) = await cursor.fetchone()
    return value


async def test_the_statement_relaxes_its_own_commit_and_no_later_one(conn, admin_key):
    await conn.execute("UPDATE api_key SET last_used_at = NULL")
    assert await _setting(conn) == "on"
    found = await auth.authenticate(conn, _check(admin_key))
    assert found is not None and found.decision.admitted_tat is not None
    cursor = await conn.execute("SELECT count(*) FROM api_key WHERE last_used_at IS NOT NULL")
    assert (await cursor.fetchone())[0] == 1  # the touch ran (and `relaxed` with it)
    assert await _setting(conn) == "on"
    async with conn.transaction():
        assert await _setting(conn) == "on"


async def test_it_refuses_to_run_inside_a_transaction(conn, admin_key):
    async with conn.transaction():
        with pytest.raises(RuntimeError, match="no transaction open"):
            await auth.authenticate(conn, _check(admin_key))
