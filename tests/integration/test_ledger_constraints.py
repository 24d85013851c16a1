"""The ledger's invariants as PostgreSQL enforces them (reliability.md §3.2, L1/L3/L4/L5/L8/L10).

Each test runs its statements in one transaction on its own database (the `conn` below), rolled back at its end.
The balance check of a transfer is a deferred constraint trigger that fires at COMMIT; here `SET CONSTRAINTS ALL
IMMEDIATE` fires it inside a savepoint, so that a rejection can be rolled back to the savepoint and the test's
transaction survives.
"""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

from app.repo import ledger
from domain.ledger import REVENUE_SHARDS, Posting, TransferKind, TransferRequest

TASKHIVE_CATEGORIES = [
    (1, "Coding", "coding"),
    (2, "Writing", "writing"),
    (3, "Research", "research"),
    (4, "Data Processing", "data-processing"),
    (5, "Design", "design"),
    (6, "Translation", "translation"),
    (7, "General", "general"),
]


async def scalar(conn: psycopg.AsyncConnection, query: str, params: tuple = ()) -> object:
    cursor = await conn.execute(query, params)
    row = await cursor.fetchone()
    assert row is not None
    return row[0]


async def platform(conn: psycopg.AsyncConnection, kind: str) -> int:
    """The platform account of that kind (platform revenue: its first sub-account)."""
    return await scalar(conn, "SELECT id FROM account WHERE kind = %s ORDER BY shard NULLS FIRST LIMIT 1", (kind,))


async def new_wallet(conn: psycopg.AsyncConnection, name: str = "Ledger test") -> int:
    operator_id = await scalar(conn, "INSERT INTO operator (name) VALUES (%s) RETURNING id", (name,))
    return await scalar(
        conn, "INSERT INTO account (kind, operator_id) VALUES ('operator_wallet', %s) RETURNING id", (operator_id,)
    )


async def new_transfer(conn: psycopg.AsyncConnection, reason: str = "test") -> int:
    return await scalar(conn, "INSERT INTO transfer (kind, reason) VALUES ('admin_grant', %s) RETURNING id", (reason,))


async def add_entry(conn: psycopg.AsyncConnection, transfer_id: int, account_id: int, amount: int) -> tuple[int, int]:
    """Insert an entry; returns the (balance_after, account_version) the trigger gave it."""
    cursor = await conn.execute(
        "INSERT INTO entry (transfer_id, account_id, amount) VALUES (%s, %s, %s)"
        " RETURNING balance_after, account_version",
        (transfer_id, account_id, amount),
    )
    row = await cursor.fetchone()
    assert row is not None
    return row[0], row[1]


async def account_state(conn: psycopg.AsyncConnection, account_id: int) -> tuple[int, int]:
    cursor = await conn.execute("SELECT balance, version FROM account WHERE id = %s", (account_id,))
    row = await cursor.fetchone()
    assert row is not None
    return row[0], row[1]


async def check_now(conn: psycopg.AsyncConnection) -> None:
    """Fire the deferred (commit-time) constraint triggers now."""
    await conn.execute("SET CONSTRAINTS ALL IMMEDIATE")


async def expect_rejected_at_commit(conn: psycopg.AsyncConnection) -> errors.CheckViolation:
    with pytest.raises(errors.CheckViolation) as info:
        await check_now(conn)
    assert info.value.diag.constraint_name == "transfer_balanced"
    return info.value


@pytest.fixture
async def conn(conn: psycopg.AsyncConnection):
    """The test's own database, inside a transaction that is rolled back after the test."""
    await conn.execute("BEGIN")
    yield conn
    if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        await conn.execute("ROLLBACK")


@pytest.fixture
async def savepoint(conn: psycopg.AsyncConnection):
    """A savepoint the test may break; rolled back afterwards, with constraints deferred again."""
    await conn.execute("SAVEPOINT x")
    yield conn
    await conn.execute("ROLLBACK TO SAVEPOINT x")
    await conn.execute("RELEASE SAVEPOINT x")
    await conn.execute("SET CONSTRAINTS ALL DEFERRED")


# --- L1: a transfer balances and has at least two entries, checked at commit -----------------------------------


async def test_unbalanced_transfer_is_rejected_at_commit(savepoint):
    conn = savepoint
    wallet = await new_wallet(conn)
    issuance = await platform(conn, "platform_issuance")
    transfer_id = await new_transfer(conn)
    await add_entry(conn, transfer_id, issuance, -9)
    await add_entry(conn, transfer_id, wallet, 10)  # accepted for now: the check is deferred to commit
    error = await expect_rejected_at_commit(conn)
    assert f"transfer {transfer_id} is unbalanced: 2 entries summing to 1" in str(error)


async def test_transfer_with_a_single_entry_is_rejected_at_commit(savepoint):
    conn = savepoint
    issuance = await platform(conn, "platform_issuance")
    transfer_id = await new_transfer(conn)
    await add_entry(conn, transfer_id, issuance, -5)
    error = await expect_rejected_at_commit(conn)
    assert "1 entries" in str(error)


async def test_transfer_without_entries_is_rejected_at_commit(savepoint):
    conn = savepoint
    await new_transfer(conn)
    error = await expect_rejected_at_commit(conn)
    assert "0 entries summing to 0" in str(error)


async def test_the_balance_check_really_runs_at_commit(database_url):
    """Outside the test harness: COMMIT itself refuses an unbalanced transfer and nothing of it persists."""
    async with await psycopg.AsyncConnection.connect(database_url) as other:
        cursor = await other.execute("SELECT id FROM account WHERE kind = 'platform_issuance'")
        (issuance,) = await cursor.fetchone()
        before = await (
            await other.execute("SELECT balance, version FROM account WHERE id = %s", (issuance,))
        ).fetchone()
        cursor = await other.execute(
            "INSERT INTO transfer (kind, reason) VALUES ('admin_grant', 'never committed') RETURNING id"
        )
        (transfer_id,) = await cursor.fetchone()
        await other.execute(
            "INSERT INTO entry (transfer_id, account_id, amount) VALUES (%s, %s, -7)", (transfer_id, issuance)
        )
        with pytest.raises(errors.CheckViolation) as info:
            await other.commit()
        assert info.value.diag.constraint_name == "transfer_balanced"
        await other.rollback()
        cursor = await other.execute("SELECT count(*) FROM transfer WHERE id = %s", (transfer_id,))
        assert (await cursor.fetchone())[0] == 0
        after = await (
            await other.execute("SELECT balance, version FROM account WHERE id = %s", (issuance,))
        ).fetchone()
        await other.rollback()
    assert after == before


async def test_repository_post_of_an_unbalanced_request_is_rejected_at_commit(savepoint):
    """`ledger.post` trusts `domain.ledger.balanced`; if a caller bypasses it, the database still refuses."""
    conn = savepoint
    wallet = await new_wallet(conn)
    issuance = await platform(conn, "platform_issuance")
    request = TransferRequest(
        kind=TransferKind.ADMIN_GRANT, reason="bypass", postings=(Posting(issuance, -10), Posting(wallet, 11))
    )
    await ledger.post(conn, request)
    await expect_rejected_at_commit(conn)


async def test_balanced_transfer_is_accepted_and_moves_balances(savepoint):
    conn = savepoint
    wallet = await new_wallet(conn)
    issuance = await platform(conn, "platform_issuance")
    revenue = await platform(conn, "platform_revenue")
    issuance_before = await account_state(conn, issuance)
    revenue_before = await account_state(conn, revenue)

    grant = await new_transfer(conn, "grant")
    assert await add_entry(conn, grant, issuance, -10) == (issuance_before[0] - 10, issuance_before[1] + 1)
    assert await add_entry(conn, grant, wallet, 10) == (10, 1)
    fee = await new_transfer(conn, "fee")
    assert await add_entry(conn, fee, wallet, -4) == (6, 2)
    assert await add_entry(conn, fee, revenue, 4) == (revenue_before[0] + 4, revenue_before[1] + 1)
    await check_now(conn)  # both transfers balance: no error

    assert await account_state(conn, wallet) == (6, 2)
    assert await account_state(conn, issuance) == (issuance_before[0] - 10, issuance_before[1] + 1)
    assert await account_state(conn, revenue) == (revenue_before[0] + 4, revenue_before[1] + 1)
    cursor = await conn.execute(
        "SELECT amount, balance_after, account_version FROM entry WHERE account_id = %s ORDER BY account_version",
        (wallet,),
    )
    assert await cursor.fetchall() == [(10, 10, 1), (-4, 6, 2)]


async def test_repository_post_writes_a_balanced_transfer(savepoint):
    conn = savepoint
    wallet = await new_wallet(conn)
    issuance = await platform(conn, "platform_issuance")
    issuance_balance, _ = await account_state(conn, issuance)
    request = TransferRequest(
        kind=TransferKind.ADMIN_GRANT,
        reason="post",
        postings=tuple(sorted([Posting(issuance, -25), Posting(wallet, 25)], key=lambda p: p.account_id)),
    )
    transfer_id, balances = await ledger.post(conn, request)
    await check_now(conn)
    assert balances == {issuance: issuance_balance - 25, wallet: 25}
    assert await scalar(conn, "SELECT count(*) FROM entry WHERE transfer_id = %s", (transfer_id,)) == 2


async def test_writer_supplied_balance_after_and_version_are_overridden(savepoint):
    conn = savepoint
    wallet = await new_wallet(conn)
    issuance = await platform(conn, "platform_issuance")
    transfer_id = await new_transfer(conn)
    await add_entry(conn, transfer_id, issuance, -8)
    cursor = await conn.execute(
        "INSERT INTO entry (transfer_id, account_id, amount, balance_after, account_version)"
        " VALUES (%s, %s, 8, 1000000, 42) RETURNING balance_after, account_version",
        (transfer_id, wallet),
    )
    assert await cursor.fetchone() == (8, 1)
    await check_now(conn)


async def test_entry_of_zero_is_refused(savepoint):
    conn = savepoint
    wallet = await new_wallet(conn)
    transfer_id = await new_transfer(conn)
    with pytest.raises(errors.CheckViolation) as info:
        await add_entry(conn, transfer_id, wallet, 0)
    assert info.value.diag.constraint_name == "ck_entry_amount_non_zero"


async def test_entry_on_a_missing_account_is_refused(savepoint):
    conn = savepoint
    transfer_id = await new_transfer(conn)
    with pytest.raises(errors.ForeignKeyViolation):
        await add_entry(conn, transfer_id, 9_000_000_000, 5)


# --- L5: no overdraft, except platform issuance -------------------------------------------------------------------


async def test_entry_taking_a_wallet_below_zero_is_refused(savepoint):
    conn = savepoint
    wallet = await new_wallet(conn)
    issuance = await platform(conn, "platform_issuance")
    funding = await new_transfer(conn)
    await add_entry(conn, funding, issuance, -5)
    await add_entry(conn, funding, wallet, 5)
    await check_now(conn)
    await conn.execute("SET CONSTRAINTS ALL DEFERRED")

    debit = await new_transfer(conn)
    await conn.execute("SAVEPOINT overdraft")
    with pytest.raises(errors.CheckViolation) as info:
        await add_entry(conn, debit, wallet, -6)
    assert info.value.diag.constraint_name == "ck_account_no_overdraft"
    await conn.execute("ROLLBACK TO SAVEPOINT overdraft")
    assert await account_state(conn, wallet) == (5, 1)
    # Down to exactly zero is fine.
    assert await add_entry(conn, debit, wallet, -5) == (0, 2)
    await add_entry(conn, debit, issuance, 5)
    await check_now(conn)


@pytest.mark.parametrize("kind", ["platform_revenue", "task_escrow"])
async def test_other_non_issuance_accounts_cannot_go_negative(savepoint, kind):
    conn = savepoint
    if kind == "task_escrow":
        # An escrow account belongs to a real task (fk_account_task_id_task).
        operator = await scalar(conn, "INSERT INTO operator (name) VALUES ('escrow test') RETURNING id")
        agent = await scalar(
            conn,
            "INSERT INTO agent (operator_id, name, description) VALUES (%s, 'poster', 'posts') RETURNING id",
            (operator,),
        )
        task = await scalar(
            conn,
            "INSERT INTO task (poster_operator_id, poster_agent_id, title, description, budget_credits)"
            " VALUES (%s, %s, 'Escrow test', 'An escrow account needs a task to belong to.', 10) RETURNING id",
            (operator, agent),
        )
        account = await scalar(
            conn, "INSERT INTO account (kind, task_id) VALUES ('task_escrow', %s) RETURNING id", (task,)
        )
    else:
        account = await platform(conn, kind)
    balance, _ = await account_state(conn, account)
    transfer_id = await new_transfer(conn)
    with pytest.raises(errors.CheckViolation) as info:
        await add_entry(conn, transfer_id, account, -(balance + 1))
    assert info.value.diag.constraint_name == "ck_account_no_overdraft"


async def test_repository_post_reports_an_overdraft(savepoint):
    conn = savepoint
    wallet = await new_wallet(conn)
    issuance = await platform(conn, "platform_issuance")
    request = TransferRequest(
        kind=TransferKind.ADMIN_DEBIT, reason="too much", postings=(Posting(issuance, 1), Posting(wallet, -1))
    )
    with pytest.raises(ledger.Overdraft):
        await ledger.post(conn, request)


async def test_platform_issuance_may_go_negative(savepoint):
    conn = savepoint
    wallet = await new_wallet(conn)
    issuance = await platform(conn, "platform_issuance")
    balance, _ = await account_state(conn, issuance)
    amount = abs(balance) + 1_000
    transfer_id = await new_transfer(conn)
    assert (await add_entry(conn, transfer_id, issuance, -amount))[0] == balance - amount < 0
    await add_entry(conn, transfer_id, wallet, amount)
    await check_now(conn)
    assert (await account_state(conn, issuance))[0] < 0
    assert (await account_state(conn, wallet))[0] == amount


# --- L8: append-only ----------------------------------------------------------------------------------------------


@pytest.fixture
async def posted(savepoint) -> tuple[int, int]:
    """A balanced transfer; returns (transfer id, one of its entry ids)."""
    conn = savepoint
    wallet = await new_wallet(conn)
    issuance = await platform(conn, "platform_issuance")
    transfer_id = await new_transfer(conn)
    await add_entry(conn, transfer_id, issuance, -20)
    await add_entry(conn, transfer_id, wallet, 20)
    await check_now(conn)
    entry_id = await scalar(conn, "SELECT id FROM entry WHERE transfer_id = %s ORDER BY id LIMIT 1", (transfer_id,))
    await conn.execute("SAVEPOINT y")
    return transfer_id, entry_id


APPEND_ONLY_STATEMENTS = {
    "update entry": ("UPDATE entry SET amount = amount * 2 WHERE id = %(entry)s", "entry is append-only: UPDATE"),
    "update entry balance_after": (
        "UPDATE entry SET balance_after = 0 WHERE id = %(entry)s",
        "entry is append-only: UPDATE",
    ),
    "delete entry": ("DELETE FROM entry WHERE id = %(entry)s", "entry is append-only: DELETE"),
    "update transfer": (
        "UPDATE transfer SET reason = 'rewritten' WHERE id = %(transfer)s",
        "transfer is append-only: UPDATE",
    ),
    "delete transfer": ("DELETE FROM transfer WHERE id = %(transfer)s", "transfer is append-only: DELETE"),
    "truncate entry": ("TRUNCATE entry", "entry is append-only: TRUNCATE"),
    "truncate transfer cascade": ("TRUNCATE transfer CASCADE", "is append-only: TRUNCATE"),
    "truncate both": ("TRUNCATE entry, transfer", "is append-only: TRUNCATE"),
}


@pytest.mark.parametrize("statement", APPEND_ONLY_STATEMENTS, ids=list(APPEND_ONLY_STATEMENTS))
async def test_ledger_rows_are_append_only(conn, posted, statement):
    transfer_id, entry_id = posted
    sql, message = APPEND_ONLY_STATEMENTS[statement]
    with pytest.raises(errors.InsufficientPrivilege) as info:
        await conn.execute(sql, {"entry": entry_id, "transfer": transfer_id})
    assert message in str(info.value)
    await conn.execute("ROLLBACK TO SAVEPOINT y")
    assert await scalar(conn, "SELECT count(*) FROM entry WHERE transfer_id = %s", (transfer_id,)) == 2
    assert await scalar(conn, "SELECT reason FROM transfer WHERE id = %s", (transfer_id,)) == "test"


async def test_truncating_transfer_alone_is_refused_too(conn, posted):
    """Without CASCADE the foreign key from entry refuses it before the append-only trigger gets a say."""
    with pytest.raises((errors.FeatureNotSupported, errors.InsufficientPrivilege)):
        await conn.execute("TRUNCATE transfer")
    await conn.execute("ROLLBACK TO SAVEPOINT y")


# --- L3/L10: balances change only through entries -----------------------------------------------------------------


@pytest.mark.parametrize(
    "assignment",
    [
        "balance = 1000",
        "balance = balance + 1",
        "version = version + 1",
        "balance = balance + 1, version = version + 1",
    ],
)
async def test_direct_balance_update_is_refused(savepoint, assignment):
    conn = savepoint
    wallet = await new_wallet(conn)
    with pytest.raises(errors.InsufficientPrivilege) as info:
        await conn.execute(f"UPDATE account SET {assignment} WHERE id = %s", (wallet,))
    assert "balance changes only through ledger entries" in str(info.value)


async def test_direct_balance_update_of_a_platform_account_is_refused(savepoint):
    conn = savepoint
    with pytest.raises(errors.InsufficientPrivilege):
        await conn.execute("UPDATE account SET balance = balance - 1 WHERE kind = 'platform_issuance'")


async def test_updates_that_leave_balance_and_version_alone_are_allowed(savepoint):
    conn = savepoint
    wallet = await new_wallet(conn)
    await conn.execute("UPDATE account SET created_at = created_at - interval '1 day' WHERE id = %s", (wallet,))
    await conn.execute("UPDATE account SET balance = balance WHERE id = %s", (wallet,))
    assert await account_state(conn, wallet) == (0, 0)


# --- Platform accounts and seed data ------------------------------------------------------------------------------


async def test_platform_accounts_exist_once_each(conn):
    cursor = await conn.execute(
        "SELECT kind, count(*) FROM account WHERE kind IN ('platform_issuance', 'platform_revenue')"
        " GROUP BY kind ORDER BY kind"
    )
    assert await cursor.fetchall() == [("platform_issuance", 1), ("platform_revenue", REVENUE_SHARDS)]
    cursor = await conn.execute("SELECT array_agg(shard ORDER BY shard) FROM account WHERE kind = 'platform_revenue'")
    assert await cursor.fetchone() == (list(range(REVENUE_SHARDS)),)


@pytest.mark.parametrize(
    ("kind", "shard", "error", "constraint"),
    [
        ("platform_issuance", None, errors.UniqueViolation, "uq_account_platform_kind_shard"),
        ("platform_revenue", 0, errors.UniqueViolation, "uq_account_platform_kind_shard"),
        ("platform_revenue", REVENUE_SHARDS - 1, errors.UniqueViolation, "uq_account_platform_kind_shard"),
        ("platform_revenue", None, errors.CheckViolation, "ck_account_revenue_has_shard"),
        ("platform_revenue", REVENUE_SHARDS, errors.CheckViolation, "ck_account_shard_range"),
        ("platform_issuance", 3, errors.CheckViolation, "ck_account_revenue_has_shard"),
    ],
)
async def test_a_second_platform_account_or_a_misplaced_shard_is_refused(savepoint, kind, shard, error, constraint):
    conn = savepoint
    with pytest.raises(error) as info:
        await conn.execute("INSERT INTO account (kind, shard) VALUES (%s, %s)", (kind, shard))
    assert info.value.diag.constraint_name == constraint


async def test_an_operator_has_one_wallet(savepoint):
    conn = savepoint
    wallet = await new_wallet(conn)
    operator_id = await scalar(conn, "SELECT operator_id FROM account WHERE id = %s", (wallet,))
    with pytest.raises(errors.UniqueViolation) as info:
        await conn.execute("INSERT INTO account (kind, operator_id) VALUES ('operator_wallet', %s)", (operator_id,))
    assert info.value.diag.constraint_name == "uq_account_operator_id"


async def test_seeded_categories_are_taskhives_seven(conn):
    cursor = await conn.execute("SELECT id, name, slug FROM category ORDER BY id")
    assert await cursor.fetchall() == TASKHIVE_CATEGORIES
    cursor = await conn.execute("SELECT id FROM category ORDER BY sort_order")
    assert [row[0] for row in await cursor.fetchall()] == [1, 2, 3, 4, 5, 6, 7]
